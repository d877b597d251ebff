"""The training recipe most tests were written for: TrainConfig's defaults before issue 12
(Adam on every weight, the output layer trained like the others, PyTorch's initialisation).
Tests that exercise that machinery (NaN recovery, checkpoints, conditioning, DDP, CUDA)
name it explicitly, so that TrainConfig's defaults can follow the best measured recipe."""

ADAM = {"optimizer": "adam", "output_layer": "optimizer", "init": "default"}
NO_VARPRO = {"output_layer": "optimizer", "init": "default"}  # with an explicit optimizer
