"""Every bad input raises a clear error, and leaves the model and optimizer untouched."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch_helpers import (
    NUM_CLASSES,
    Setup,
    assert_restored,
    batches,
    capture,
    cross_entropy,
    make_setup,
    tiny_mlp,
)

from lrfind_torch import Settings, TorchOptions, lr_find

SWEEP = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 12, "options": TorchOptions(progress=False)}


@pytest.fixture
def setup() -> Setup:
    """Adam with state, a scheduler, some grads, the model in eval mode."""
    return make_setup("adam", "mlp", "param_groups")


def call(setup: Setup, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {"loss_fn": cross_entropy, **SWEEP, **overrides}
    data = arguments.pop("train_data", setup.data)
    return lr_find(setup.model, setup.optimizer, data, **arguments)


def expect_error(setup: Setup, error: type[BaseException], match: str, **overrides: Any) -> None:
    before = capture(setup.model, setup.optimizer)
    with pytest.raises(error, match=match):
        call(setup, **overrides)
    assert_restored(before, setup.model, setup.optimizer)


# ---------------------------------------------------------------- the sweep's range


@pytest.mark.parametrize(
    ("name", "value"),
    [("start_lr", 0.0), ("start_lr", -1e-3), ("start_lr", math.nan), ("start_lr", math.inf),
     ("end_lr", 0.0), ("end_lr", math.nan), ("end_lr", -2.0)],
)
def test_non_positive_or_non_finite_lr(setup: Setup, name: str, value: float) -> None:
    expect_error(setup, ValueError, f"{name} must be a finite number > 0", **{name: value})


@pytest.mark.parametrize(("start", "end"), [(1.0, 1e-3), (0.1, 0.1)])
def test_start_lr_not_below_end_lr(setup: Setup, start: float, end: float) -> None:
    expect_error(setup, ValueError, "start_lr must be < end_lr", start_lr=start, end_lr=end)


def test_lr_of_the_wrong_type(setup: Setup) -> None:
    expect_error(setup, TypeError, "start_lr must be a real number", start_lr="1e-4")


@pytest.mark.parametrize("steps", [1, 0, -5])
def test_too_few_steps(setup: Setup, steps: int) -> None:
    expect_error(setup, ValueError, "num_steps must be an int >= 2", num_steps=steps)


def test_non_int_steps(setup: Setup) -> None:
    expect_error(setup, TypeError, "num_steps must be an int", num_steps=12.5)


def test_unknown_schedule() -> None:
    with pytest.raises(ValueError, match=re.escape("unknown schedule 'cosine'")):
        Settings(schedule="cosine")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param("keras", "unknown preset 'keras'", id="preset"),
        pytest.param(Settings(method="best"), "unknown suggestion method 'best'", id="method"),
        pytest.param(
            Settings(methods=("valley", "nope")), "unknown suggestion method 'nope'", id="methods"
        ),
    ],
)
def test_unknown_names(setup: Setup, settings: Any, message: str) -> None:
    """Method names are checked against the registry when lr_find starts."""
    expect_error(setup, ValueError, re.escape(message), settings=settings)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("beta", 1.0, "beta must be in"), ("diverge_factor", 1.0, "diverge_factor must be > 1")],
)
def test_bad_smoothing_and_stop_settings(option: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**{option: value})


# ---------------------------------------------------------------- data and loss


def test_empty_list(setup: Setup) -> None:
    expect_error(setup, ValueError, "train_data is empty", train_data=[])


def test_empty_loader(setup: Setup) -> None:
    empty = DataLoader(TensorDataset(torch.zeros(0, 6), torch.zeros(0, dtype=torch.long)))
    expect_error(setup, ValueError, "train_data is empty", train_data=empty)


def test_train_data_not_iterable(setup: Setup) -> None:
    expect_error(setup, TypeError, "train_data must be an iterable", train_data=12)
    expect_error(setup, TypeError, "train_data must be an iterable of batches, got str",
                 train_data="abc")


def test_val_data_that_is_a_string_is_refused_before_any_step(setup: Setup) -> None:
    expect_error(setup, TypeError, "val_data must be an iterable of batches, got str",
                 val_data="abc", mode="search", training_steps=60, budget_steps=150)


def test_dict_batch_without_step_fn(setup: Setup) -> None:
    data = [{"x": x, "y": y} for x, y in setup.data]
    expect_error(
        setup, TypeError, r"without step_fn each batch must be an \(inputs, target\) tuple or "
        r"list, got dict.*pass step_fn", train_data=data,
    )


def test_non_scalar_loss(setup: Setup) -> None:
    def per_sample(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(output, target, reduction="none")

    expect_error(
        setup, ValueError, r"loss_fn must return a scalar loss, got shape \(8,\)",
        loss_fn=per_sample,
    )


def test_loss_computed_under_no_grad(setup: Setup) -> None:
    def no_grad_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return cross_entropy(output, target)

    expect_error(setup, ValueError, "does not require grad", loss_fn=no_grad_loss)


def test_detached_loss_from_step_fn(setup: Setup) -> None:
    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        inputs, target = batch
        return cross_entropy(model(inputs), target).detach()

    expect_error(
        setup, ValueError, "step_fn returned a loss that does not require grad",
        loss_fn=None, step_fn=step_fn,
    )


def test_loss_that_is_not_a_tensor(setup: Setup) -> None:
    def float_loss(output: torch.Tensor, target: torch.Tensor) -> float:
        return cross_entropy(output, target).item()

    expect_error(setup, TypeError, "loss_fn must return a torch.Tensor loss", loss_fn=float_loss)


def test_empty_val_data(setup: Setup) -> None:
    expect_error(setup, ValueError, "val_data is empty", val_data=[])


def test_val_every_beyond_the_sweep_is_rejected_up_front(setup: Setup) -> None:
    """With val_every > num_steps no point can ever be recorded: say so before sweeping."""
    expect_error(
        setup, ValueError, "val_every", val_data=setup.data[:2], settings=Settings(val_every=13)
    )


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("option", "value", "error", "message"),
    [
        ("accumulation_steps", 0, ValueError, "accumulation_steps must be an int >= 1"),
        ("accumulation_steps", -1, ValueError, "accumulation_steps must be an int >= 1"),
        ("accumulation_steps", 1.5, TypeError, "accumulation_steps must be an int"),
        ("accumulation_steps", 2.0, TypeError, "accumulation_steps must be an int"),
        ("accumulation_steps", True, TypeError, "accumulation_steps must be an int"),
        ("val_every", 0, ValueError, "val_every must be an int >= 1"),
        ("val_batches", 0, ValueError, "val_batches must be an int >= 1"),
    ],
)
def test_bad_settings(option: str, value: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Settings(**{option: value})


@pytest.mark.parametrize(
    ("option", "value", "error", "message"),
    [
        ("sync_every", 0, ValueError, "sync_every must be an int >= 1"),
        ("max_grad_norm", -1.0, ValueError, "max_grad_norm must be a finite number > 0"),
        ("snapshot", "cloud", ValueError, "unknown snapshot 'cloud'"),
    ],
)
def test_bad_options(option: str, value: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        TorchOptions(**{option: value})


def test_options_of_the_wrong_type(setup: Setup) -> None:
    expect_error(
        setup, TypeError, "options must be lrfind_torch.TorchOptions", options={"progress": False}
    )


def test_num_steps_is_rejected_in_independent_mode(setup: Setup) -> None:
    """Independent mode's grid is Settings(independent_lrs=..., steps_per_lr=...)."""
    expect_error(
        setup, ValueError, "num_steps is the length of a classic sweep", mode="independent",
        num_steps=12,
    )


@pytest.mark.parametrize("which", ["both", "neither"])
def test_exactly_one_of_loss_fn_and_step_fn(setup: Setup, which: str) -> None:
    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        return cross_entropy(model(batch[0]), batch[1])

    functions = (
        {"loss_fn": cross_entropy, "step_fn": step_fn}
        if which == "both"
        else {"loss_fn": None, "step_fn": None}
    )
    expect_error(setup, TypeError, "pass exactly one of loss_fn", **functions)


def test_loss_fn_not_callable(setup: Setup) -> None:
    expect_error(setup, TypeError, "loss_fn must be callable", loss_fn="cross_entropy")


def test_loss_fn_given_as_a_class(setup: Setup) -> None:
    expect_error(
        setup, TypeError, r"loss_fn is the class CrossEntropyLoss.*CrossEntropyLoss\(\)",
        loss_fn=nn.CrossEntropyLoss,
    )


def test_plot_path_in_a_missing_folder_is_rejected_before_any_step(
    setup: Setup, tmp_path: Any
) -> None:
    calls = []

    def counting_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return cross_entropy(output, target)

    expect_error(
        setup, ValueError, "plot_path .*does not exist", loss_fn=counting_loss,
        plot_path=tmp_path / "missing" / "lr_find.png",
    )
    assert calls == []
    expect_error(setup, ValueError, "plot_path .*is a folder; give a file path in it",
                 loss_fn=counting_loss, plot_path=tmp_path)
    assert calls == []
    assert list(tmp_path.iterdir()) == []


def test_device_mismatch(setup: Setup) -> None:
    expect_error(
        setup, ValueError, "device=cuda but the model is on cpu",
        options=TorchOptions(progress=False, device="cuda"),
    )


# ---------------------------------------------------------------- model and optimizer


def refused_untouched(model: nn.Module, optimizer: Any, message: str) -> None:
    """lr_find raises a ValueError matching ``message`` and changes nothing."""
    before = capture(model, optimizer)
    with pytest.raises(ValueError, match=message):
        lr_find(model, optimizer, batches(4), loss_fn=cross_entropy, **SWEEP)
    assert_restored(before, model, optimizer)


def test_model_without_trainable_parameters() -> None:
    torch.manual_seed(0)
    model = tiny_mlp().requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = capture(model, optimizer)
    with pytest.raises(ValueError, match="model has no trainable parameters"):
        lr_find(model, optimizer, batches(4), loss_fn=cross_entropy, **SWEEP)
    assert_restored(before, model, optimizer)


def test_optimizer_on_frozen_parameters_only() -> None:
    torch.manual_seed(0)
    model = tiny_mlp()
    frozen = list(model.parameters())[:2]
    for param in frozen:
        param.requires_grad_(False)
    optimizer = torch.optim.SGD(frozen, lr=0.1)
    refused_untouched(model, optimizer, "none of the optimizer's parameters has requires_grad")


class UnusedHead(nn.Module):
    """A model whose ``head`` the forward pass never uses."""

    def __init__(self) -> None:
        super().__init__()
        self.body = tiny_mlp()
        self.head = nn.Linear(NUM_CLASSES, NUM_CLASSES)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.body(inputs)


def test_an_optimizer_whose_parameters_get_no_gradient_is_an_error_and_restores() -> None:
    torch.manual_seed(0)
    model = UnusedHead()
    optimizer = torch.optim.SGD(model.head.parameters(), lr=0.1)
    refused_untouched(model, optimizer, "after the first backward no parameter of the "
                                        "optimizer has a gradient")


@pytest.mark.parametrize(
    ("keywords", "error", "message"),
    [
        ({"pct_startt": 0.3}, TypeError, "not OneCycleLR keywords"),
        ({"pct_start": 2.0}, ValueError, "OneCycleLR refused them: .*pct_start"),
        ({"anneal_strategy": "bogus"}, ValueError, "refused them: anneal_strategy"),
        ({"max_lr": 1.0}, ValueError, "may not set"),
    ],
)
def test_one_cycle_options_are_tried_when_the_options_are_built(
    keywords: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        TorchOptions(one_cycle_options=keywords)
    assert TorchOptions(one_cycle_options={"pct_start": 0.4}).one_cycle_options == {
        "pct_start": 0.4}


@pytest.mark.parametrize("dtype", [torch.float32, torch.int8, torch.float64])
def test_autocast_dtype_other_than_half_precision(dtype: torch.dtype) -> None:
    with pytest.raises(ValueError, match=f"torch.float16 or torch.bfloat16 .*got {dtype}"):
        TorchOptions(autocast_dtype=dtype)


def test_model_without_parameters() -> None:
    other = tiny_mlp()
    optimizer = torch.optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="model has no trainable parameters"):
        lr_find(nn.ReLU(), optimizer, batches(4), loss_fn=cross_entropy, **SWEEP)


def test_optimizer_parameters_not_in_the_model(setup: Setup) -> None:
    stranger = nn.Linear(3, 3)
    setup.optimizer.add_param_group({"params": stranger.parameters(), "lr": 0.01})
    expect_error(setup, ValueError, r"optimizer updates 2 parameter\(s\) that are not in model")


def test_first_group_lr_must_be_positive() -> None:
    torch.manual_seed(0)
    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    refused_untouched(model, optimizer, "first param group has lr=0.0;")


@pytest.mark.parametrize(("first", "second", "message"), [
    (math.nan, 0.1, "first param group has lr=nan; .*finite number > 0"),
    (math.inf, 0.1, "first param group has lr=inf"),
    (0.1, -0.01, "param group 1 has lr=-0.01; every group's lr must be a finite number >= 0"),
    (0.1, math.nan, "param group 1 has lr=nan"),
])
def test_every_groups_lr_is_checked(first: float, second: float, message: str) -> None:
    torch.manual_seed(0)
    model = tiny_mlp()
    layers = [module for module in model.modules() if isinstance(module, nn.Linear)]
    optimizer = torch.optim.SGD([{"params": layers[0].parameters(), "lr": first},
                                 {"params": layers[1].parameters(), "lr": second}], lr=0.1)
    refused_untouched(model, optimizer, message)


@pytest.mark.parametrize(
    ("model", "optimizer", "message"),
    [
        ("not a model", None, "model must be a torch.nn.Module"),
        (None, "not an optimizer", "optimizer must be a torch.optim.Optimizer"),
    ],
)
def test_wrong_model_or_optimizer_type(model: Any, optimizer: Any, message: str) -> None:
    torch.manual_seed(0)
    real_model = tiny_mlp()
    real_optimizer = torch.optim.SGD(real_model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match=message):
        lr_find(
            real_model if model is None else model,
            real_optimizer if optimizer is None else optimizer,
            batches(4), loss_fn=cross_entropy, **SWEEP,
        )


@pytest.mark.parametrize("accumulation_steps", [1, 2])
def test_loss_errors_found_mid_sweep_restore_batchnorm_statistics(
    accumulation_steps: int,
) -> None:
    """The loss checks need a forward pass, which moves BatchNorm's running
    statistics in train mode: the restore puts them back, bit for bit."""
    cnn = make_setup("sgd", "cnn", "plain")

    def per_sample(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(output, target, reduction="none")

    assert any("running_mean" in name for name, _ in cnn.model.named_buffers())
    expect_error(cnn, ValueError, "loss_fn must return a scalar loss", loss_fn=per_sample,
                 settings=Settings(accumulation_steps=accumulation_steps))


def test_an_optimizer_that_needs_a_closure_is_refused_before_any_step() -> None:
    model = tiny_mlp()
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0)
    before = capture(model, optimizer)
    with pytest.raises(TypeError, match=r"LBFGS.step needs a closure"):
        lr_find(model, optimizer, batches(4), cross_entropy, options=TorchOptions(progress=False))
    assert_restored(before, model, optimizer)


@pytest.mark.parametrize(("package", "name", "says"), [
    ("prodigyopt", "Prodigy", "its lr is a multiplier of that estimate, best left near 1"),
    ("dadaptation", "DAdaptAdam", "best left at 1"),
    ("schedulefree", "AdamWScheduleFree", "needs optimizer.train() and optimizer.eval()"),
])
def test_learning_rate_free_optimizers_are_refused_with_what_their_lr_means(
    package: str, name: str, says: str
) -> None:
    optimizer_class = type(name, (torch.optim.SGD,), {"__module__": f"{package}.{name.lower()}"})
    model = tiny_mlp()
    with pytest.raises(ValueError, match=rf"{name} is learning-rate-free: .*{re.escape(says)}"):
        lr_find(model, optimizer_class(model.parameters(), lr=1.0), batches(4), cross_entropy,
                options=TorchOptions(progress=False))


def test_a_huge_sweep_is_refused_and_a_long_one_stays_small_before_its_first_step() -> None:
    import tracemalloc

    model = tiny_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"lr_find allows at most 10,000,000 micro-batches"):
        lr_find(model, optimizer, batches(3), cross_entropy, num_steps=10**12)

    calls = [0]

    def stop_early(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt  # measure the set-up of a 10**6-step sweep, not its run
        return cross_entropy(output, target)

    tracemalloc.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            lr_find(model, optimizer, batches(3), stop_early, num_steps=10**6,
                    options=TorchOptions(progress=False))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # float64 arrays of the plan and the record, no per-step lists


def test_a_snapshot_folder_that_does_not_exist_is_named_before_any_work(tmp_path: Any) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=rf"snapshot_dir '{re.escape(str(missing))}' is not a "
                       r"folder"):
        TorchOptions(snapshot="disk", snapshot_dir=missing)
