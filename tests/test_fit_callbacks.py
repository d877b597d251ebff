"""fit's callback protocol, the optimizer registry, and the exact output layer solved once."""

import copy

import pytest
import torch
import torch.nn.functional as F

import sepneuron.solvers.training as training
from legacy_recipe import ADAM
from sepneuron import SeparatedMLP, TrainConfig, fit
from sepneuron.fitting.callbacks import HOOKS
from sepneuron.optimizers import REGISTRY, StepAdapter, get_optimizer, register_optimizer
from sepneuron.settings import DEFAULT_LR, OPTIMIZERS
from sepneuron.solvers import solve_output_layer
from sepneuron.train import Callback, Checkpoint

F64 = torch.float64


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, 2, generator=g, dtype=F64) * 2 - 1
    return X, (2 * X[:, :1]).sin() * X[:, 1:]


def _mlp(kind="softplus"):
    return SeparatedMLP(2, [6], 1, kind=kind, dtype=F64, generator=torch.Generator().manual_seed(0))


class Recorder(Callback):
    """Records every hook with the steps done when it ran."""

    def __init__(self):
        self.calls = []


for _hook in HOOKS:
    setattr(Recorder, _hook, lambda self, run, _h=_hook: self.calls.append((_h, run.steps_done)))


# -- the protocol -------------------------------------------------------------------------

def test_a_user_callback_sees_each_hook_in_order():
    X, y = _data()
    rec = Recorder()
    cfg = TrainConfig(**ADAM, steps=2, eval_every=1, diagnostics=False)
    h = fit(_mlp(), X, y, cfg, callbacks=[rec])
    step = ["on_step_begin", "on_after_backward", "on_after_update", "on_evaluate", "on_step_end"]
    done = [0, 0, 0, 1, 1]  # the loss is recorded (and evaluated) before on_evaluate
    expected = [("setup", 0),
                ("on_evaluate", 0),  # fit's evaluation before the first step comes first
                ("on_train_begin", 0),
                *[(name, s + d) for s in (0, 1) for name, d in zip(step, done, strict=True)],
                ("on_train_end", 2), ("teardown", 2)]
    assert rec.calls == expected
    assert h.steps_done == 2 and h.stop_reason == "steps"


def test_lbfgs_calls_on_after_backward_once_per_loss_evaluation():
    X, y = _data()
    rec = Recorder()
    forwards = []
    model = _mlp()
    model.register_forward_hook(lambda m, a, o: forwards.append(1) if torch.is_grad_enabled()
                                else None)
    fit(model, X, y, TrainConfig(optimizer="lbfgs", steps=2, diagnostics=False), callbacks=[rec])
    backward = [c for c in rec.calls if c[0] == "on_after_backward"]
    assert len(backward) == len(forwards) > 2  # the line search evaluates more than once


def test_a_callback_can_stop_training():
    class StopAt(Callback):
        def on_step_end(self, run):
            if run.steps_done == 3:
                run.stop("enough")

    X, y = _data()
    h = fit(_mlp(), X, y, TrainConfig(**ADAM, steps=50, eval_every=10), callbacks=[StopAt()])
    assert h.steps_done == 3 and h.stop_reason == "enough"
    assert h.eval_step == [0, 3]  # the end of training is evaluated


def test_the_first_stop_reason_wins():
    class Stop(Callback):
        def __init__(self, reason):
            self.reason = reason

        def on_step_end(self, run):
            run.stop(self.reason)

    X, y = _data()
    h = fit(_mlp(), X, y, TrainConfig(**ADAM, steps=5), callbacks=[Stop("a"), Stop("b")])
    assert h.steps_done == 1 and h.stop_reason == "a"


def test_teardown_runs_after_an_error_and_train_end_does_not():
    class Boom(Callback):
        def on_step_end(self, run):
            raise RuntimeError("boom")

    X, y = _data()
    rec = Recorder()
    model = _mlp()
    with pytest.raises(RuntimeError, match="boom"):
        fit(model, X, y, TrainConfig(**ADAM, steps=5, rule="gauss_newton"),
            callbacks=[Boom(), rec])
    names = [n for n, _ in rec.calls]
    assert names[-1] == "teardown" and "on_train_end" not in names
    # the tuner's hooks were released: a forward and backward pass records nothing
    assert all(not act._forward_hooks for act in model.activations())


def test_callbacks_must_be_callback_objects():
    X, y = _data()
    with pytest.raises(ValueError, match="callbacks must be"):
        fit(_mlp(), X, y, TrainConfig(**ADAM, steps=1), callbacks=[lambda run: None])
    with pytest.raises(ValueError, match="use \\[callback\\]"):
        fit(_mlp(), X, y, TrainConfig(**ADAM, steps=1), callbacks=Callback())


def test_a_callbacks_state_goes_into_the_checkpoint_and_back(tmp_path):
    class Count(Callback):
        state_key = "count"

        def __init__(self):
            self.n = 0

        def on_step_end(self, run):
            self.n += 1

        def state_dict(self):
            return {"n": self.n}

        def load_state_dict(self, state):
            self.n = state["n"]

    X, y = _data()
    path = tmp_path / "ck.pt"
    first = Count()
    fit(_mlp(), X, y, TrainConfig(**ADAM, steps=4), callbacks=[first, Checkpoint(path)])
    again = Count()
    fit(_mlp(), X, y, TrainConfig(**ADAM, steps=7),
        callbacks=[again, Checkpoint(path, resume=True)])
    assert first.n == 4 and again.n == 7


# -- the Checkpoint callback ----------------------------------------------------------------

def test_the_checkpoint_callback_resumes_bit_for_bit(tmp_path):
    X, y = _data()
    cfg = TrainConfig(optimizer="adam", steps=12, eval_every=4, rule="gauss_newton")
    straight = _mlp()
    h = fit(straight, X, y, cfg)
    path = tmp_path / "ck.pt"
    half = TrainConfig(**{**cfg.__dict__, "steps": 6})
    fit(_mlp(), X, y, half, callbacks=[Checkpoint(path, every=3)])
    resumed = _mlp()
    h2 = fit(resumed, X, y, cfg, callbacks=[Checkpoint(str(path), resume=True)])
    assert [e["event"] for e in h2.events] == ["resumed"]
    assert h2.loss == h.loss
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


def test_checkpoint_path_and_a_checkpoint_callback_are_not_both_taken(tmp_path):
    X, y = _data()
    cfg = TrainConfig(**ADAM, steps=1, checkpoint_path=str(tmp_path / "a.pt"))
    with pytest.raises(ValueError, match="not both"):
        fit(_mlp(), X, y, cfg, callbacks=[Checkpoint(tmp_path / "b.pt")])


@pytest.mark.parametrize("kwargs, match", [({"path": ""}, "path"), ({"every": -1}, "every"),
                                           ({"every": 1.5}, "every"), ({"resume": 1}, "resume")])
def test_checkpoint_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Checkpoint(**{"path": "ck.pt", **kwargs})


# -- the optimizer registry -------------------------------------------------------------------

def test_an_unknown_optimizer_is_refused_listing_the_known_ones():
    with pytest.raises(ValueError, match="unknown optimizer 'nope'; known: adam, sgd, lbfgs, lm"):
        get_optimizer("nope")
    with pytest.raises(ValueError, match=r"optimizer must be one of \('adam', 'sgd', 'lbfgs'"):
        TrainConfig(optimizer="nope").validate()


def test_the_registry_is_the_source_of_names_and_step_sizes():
    assert tuple(OPTIMIZERS) == tuple(REGISTRY) == ("adam", "sgd", "lbfgs", "lm")
    assert dict(DEFAULT_LR) == {n: a.default_lr for n, a in REGISTRY.items()}
    assert DEFAULT_LR["lm"] == 1.0 and DEFAULT_LR["adam"] == 3e-3


class RMSpropStep(StepAdapter):
    default_lr = 1e-2

    def build(self, params, lr, cfg):
        return torch.optim.RMSprop(params, lr=lr)


def test_a_registered_optimizer_is_usable_by_name():
    register_optimizer("rmsprop", RMSpropStep)
    try:
        assert "rmsprop" in OPTIMIZERS and DEFAULT_LR["rmsprop"] == 1e-2
        cfg = TrainConfig(optimizer="rmsprop", steps=30, output_layer="optimizer",
                          init="default")
        assert cfg.lr == 1e-2  # its default_lr
        seen = []

        class Look(Callback):
            def setup(self, run):
                seen.append(run.optimizer)

        X, y = _data()
        h = fit(_mlp(), X, y, cfg, callbacks=[Look()])
    finally:
        del REGISTRY["rmsprop"]
    assert isinstance(seen[0], torch.optim.RMSprop)
    assert h.loss[-1] < 0.5 * h.loss[0]
    assert "rmsprop" not in OPTIMIZERS


def test_register_optimizer_checks_its_arguments():
    with pytest.raises(ValueError, match="registered already"):
        register_optimizer("adam", RMSpropStep)
    with pytest.raises(ValueError, match="StepAdapter subclass"):
        register_optimizer("x", torch.optim.Adam)
    with pytest.raises(ValueError, match="non-empty str"):
        register_optimizer("", RMSpropStep)
    assert "x" not in REGISTRY


# -- the exact output layer: one solve per set of weights ------------------------------------

def _count_solves(monkeypatch):
    count = [0]

    def counting(*args, **kwargs):
        count[0] += 1
        return solve_output_layer(*args, **kwargs)

    monkeypatch.setattr(training, "solve_output_layer", counting)
    return count


@pytest.mark.parametrize("optimizer, rule", [("adam", "gauss_newton"), ("sgd", None),
                                             ("lm", "gauss_newton")])
def test_the_output_layer_is_solved_once_per_step(monkeypatch, optimizer, rule):
    # One solve at the start, then one per step, after all of its updates; the next loss
    # evaluation is at the same weights and reuses it (it was solved twice per step).
    count = _count_solves(monkeypatch)
    X, y = _data()
    steps = 6
    h = fit(_mlp(), X, y, TrainConfig(optimizer=optimizer, steps=steps, rule=rule))
    assert h.steps_done == steps
    assert count[0] == steps + 1


def test_lm_without_a_tuner_leaves_the_solve_to_lm(monkeypatch):
    count = _count_solves(monkeypatch)
    X, y = _data()
    fit(_mlp(), X, y, TrainConfig(steps=4, rule=None))
    assert count[0] == 0  # NetworkLM solves the layer itself at every trial point


def test_lbfgs_solves_at_each_trial_point_but_not_twice_at_one(monkeypatch):
    count = _count_solves(monkeypatch)
    forwards = []
    model = _mlp()
    model.register_forward_hook(lambda m, a, o: forwards.append(1) if torch.is_grad_enabled()
                                else None)
    X, y = _data()
    fit(model, X, y, TrainConfig(optimizer="lbfgs", steps=3, rule=None))
    # every loss evaluation but each step's first (at the weights solved after the step
    # before) solves, plus one solve after each step and one at the start
    assert count[0] == len(forwards) - 3 + 3 + 1


def _is_solved(model, X, y):
    ref = copy.deepcopy(model)
    solve_output_layer(ref, X, y)
    return torch.allclose(model(X), ref(X), rtol=0, atol=1e-12)


class MoveWeights(Callback):
    """Shrinks the first hidden layer after each update (as a conditioning edit would)
    and checks at each evaluation that the output layer is solved for the weights."""

    def __init__(self, X, y):
        self.X, self.y, self.solved = X, y, []

    def on_after_update(self, run):
        run.model.linears()[0].weight.mul_(0.9)
        run.weights_moved()

    def on_evaluate(self, run):
        with torch.no_grad():
            self.solved.append(_is_solved(run.model, self.X, self.y))


@pytest.mark.parametrize("optimizer", ["adam", "lm"])
def test_evaluation_sees_the_layer_solved_after_the_weights_were_edited(optimizer):
    X, y = _data()
    cb = MoveWeights(X, y)
    model = _mlp()
    fit(model, X, y, TrainConfig(optimizer=optimizer, steps=4, eval_every=1, rule=None),
        callbacks=[cb])
    assert cb.solved[1:] == [True] * 4  # [0]: before any step, the layer as initialised
    loss = F.mse_loss(model(X), y)
    assert torch.isfinite(loss)
