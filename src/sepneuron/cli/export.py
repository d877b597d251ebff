"""``sepneuron export MODEL.pt OUT.onnx``: a trained model as an ONNX file.

    sepneuron export MODEL.pt OUT.onnx [--dtype float64|float32] [--input-name X]
                     [--output-name y]

``MODEL.pt`` is a file written by ``sepneuron train --out``. The ONNX graph (built by
:mod:`sepneuron.export`) maps raw inputs ``(batch, features)`` to outputs ``(batch,
outputs)`` in the units of the training data; the batch size is dynamic. Written atomically.
Bad input exits with status 2 and one line ``sepneuron export: ...``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..settings import PARAMS

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand to the subparsers ``sub``; returns its parser."""
    e = sub.add_parser(
        "export", help="write a trained model (sepneuron train --out) as an ONNX file",
        description="Write the model of MODEL.pt (from `sepneuron train --out`) as an ONNX graph "
        "of standard operators: raw inputs (batch, features) -> outputs (batch, outputs) in the "
        "data's units, dynamic batch size. Needs the onnx package (pip install sepneuron[onnx]).",
    )
    e.add_argument("model", metavar="MODEL.pt", help="a model written by `sepneuron train --out`")
    e.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write (atomically)")
    e.add_argument("--dtype", choices=PARAMS["dtype"].options(),
                   help="precision of the graph (default: the training dtype)")
    e.add_argument("--input-name", default="X", help="name of the graph input (default X)")
    e.add_argument("--output-name", default="y", help="name of the graph output (default y)")
    return e


def run(args: argparse.Namespace) -> int:
    """Run ``sepneuron export``; returns the exit status (2: bad input)."""
    from ..model_file import read_model

    try:
        from ..export import save_onnx, to_onnx

        trained = read_model(args.model)
        s = trained.standardization
        proto = to_onnx(trained.model, x_mean=s.get("x_mean"), x_scale=s.get("x_scale"),
                        y_mean=s.get("y_mean"), y_scale=s.get("y_scale"),
                        dtype=args.dtype or trained.dtype, input_name=args.input_name,
                        output_name=args.output_name, metadata=trained.metadata)
        path = save_onnx(proto, args.out)
    except (ValueError, ImportError, OSError) as e:
        print(f"sepneuron export: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({trained.n_features} features -> {trained.n_outputs} outputs, "
          f"{args.dtype or trained.dtype})")
    return 0
