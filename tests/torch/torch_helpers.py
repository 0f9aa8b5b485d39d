"""Shared pieces of the torch backend tests: tiny models and data, exact state capture.

:func:`capture` takes a deep, detached copy of everything ``lr_find`` promises to
restore (and the identity of the live objects); :func:`assert_restored` checks a
model, optimizer, scaler and the RNGs against it, bit for bit.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lrfind_torch import Settings, TorchOptions

NUM_CLASSES = 3
FEATURES = 6


def tiny_mlp(dropout: float = 0.0) -> nn.Sequential:
    """6 -> 16 -> 3 with ReLU (and optional dropout)."""
    layers: list[nn.Module] = [nn.Linear(FEATURES, 16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(16, NUM_CLASSES))
    return nn.Sequential(*layers)


def tiny_cnn() -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU -> Dropout -> Linear on 1x6x6 images."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, NUM_CLASSES),
    )


def batches(
    count: int, *, batch_size: int = 8, image: bool = False, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` fixed (inputs, target) classification batches from their own generator."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, 1, 6, 6) if image else (batch_size, FEATURES)
    return [
        (
            torch.randn(shape, generator=generator),
            torch.randint(0, NUM_CLASSES, (batch_size,), generator=generator),
        )
        for _ in range(count)
    ]


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(output, target)


def f32(value: float) -> float:
    """``value`` rounded to float32, as lrfind applies LRs."""
    return float(np.float32(value))


# lr_find's own keywords that are also Settings fields (they override settings=).
CALL_SETTINGS = ("mode", "for_schedule", "start_lr", "end_lr", "num_steps", "training_steps",
                 "budget_steps")
SETTINGS_FIELDS = {field.name for field in dataclasses.fields(Settings)} - set(CALL_SETTINGS)
OPTION_FIELDS = {field.name for field in dataclasses.fields(TorchOptions)}


def keywords(**flat: Any) -> dict[str, Any]:
    """``lr_find`` keywords from one flat dict: Settings fields (other than lr_find's
    own keywords) go into ``settings=Settings(...)``, TorchOptions fields into
    ``options=TorchOptions(...)`` (with ``progress=False`` unless given), the rest
    stay as they are."""
    settings = {key: flat.pop(key) for key in list(flat) if key in SETTINGS_FIELDS}
    options = {key: flat.pop(key) for key in list(flat) if key in OPTION_FIELDS}
    if settings:
        assert "settings" not in flat, "pass Settings fields or settings=, not both"
        flat["settings"] = Settings(**settings)
    assert "options" not in flat, "pass TorchOptions fields, not options="
    flat["options"] = TorchOptions(**{"progress": False, **options})
    return flat


# ---------------------------------------------------------------- a model mid-training


@dataclass
class Setup:
    """A model mid-training: optimizer with state, a scheduler, grads, mixed modes."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    data: list[Any]
    options: dict[str, Any] = field(default_factory=dict)
    scaler: Any = None


def make_setup(optimizer_name: str, model_name: str, variant: str, seed: int = 0) -> Setup:
    """The same setup, bit for bit, for the same arguments."""
    torch.manual_seed(seed)
    image = model_name == "cnn"
    model = tiny_cnn() if image else tiny_mlp()
    data = batches(24, image=image, seed=seed + 1)
    if variant == "param_groups":
        first, rest = list(model[0].parameters()), list(model[1:].parameters())
        params: Any = [{"params": first, "lr": 0.02}, {"params": rest, "lr": 0.005}]
    else:
        params = model.parameters()
    if optimizer_name == "sgd":
        optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    elif optimizer_name == "adam":
        optimizer = torch.optim.Adam(params, lr=0.01)
    else:
        optimizer = torch.optim.AdamW(params, lr=0.01, weight_decay=0.05)
    max_lrs = [group["lr"] for group in optimizer.param_groups]
    # StepLR only adds initial_lr; OneCycleLR also rewrites lr and momentum/betas.
    if optimizer_name == "sgd":
        scheduler: Any = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    else:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=40)
    model.train()
    for inputs, target in data[:3]:
        optimizer.zero_grad(set_to_none=True)
        cross_entropy(model(inputs), target).backward()
        optimizer.step()
        scheduler.step()
    # Leave gradients around, one of them None.
    optimizer.zero_grad(set_to_none=True)
    cross_entropy(model(data[3][0]), data[3][1]).backward()
    model[-1].bias.grad = None
    if image:
        model.eval()
        model[3].train()  # dropout on, BatchNorm in eval: a mix
    else:
        model.eval()
    options: dict[str, Any] = {}
    scaler = None
    if variant == "accumulation":
        options["accumulation_steps"] = 2
    elif variant == "grad_scaler":
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        options["grad_scaler"] = scaler
    return Setup(model, optimizer, scheduler, data, options, scaler)


# ---------------------------------------------------------------- state capture


def _clone(value: Any) -> Any:
    """A deep copy with every tensor detached and cloned."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clone(item) for item in value)
    return copy.deepcopy(value)


def assert_same(expected: Any, actual: Any, where: str = "value") -> None:
    """Recursive exact equality: tensors by dtype, shape and ``torch.equal``."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), f"{where}: expected a tensor, got {actual!r}"
        assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != {expected.dtype}"
        assert actual.shape == expected.shape, f"{where}: shape {actual.shape} != {expected.shape}"
        assert actual.device == expected.device, f"{where}: device changed"
        assert torch.equal(actual, expected), f"{where}: values differ"
        return
    if isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), f"{where}: expected an ndarray"
        assert np.array_equal(expected, actual), f"{where}: array values differ"
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected a dict, got {type(actual).__name__}"
        assert set(actual) == set(expected), (
            f"{where}: keys differ: missing {set(expected) - set(actual)}, "
            f"extra {set(actual) - set(expected)}"
        )
        for key in expected:
            assert_same(expected[key], actual[key], f"{where}[{key!r}]")
        return
    if isinstance(expected, list | tuple):
        assert type(actual) is type(expected), f"{where}: type {type(actual)} != {type(expected)}"
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            assert_same(left, right, f"{where}[{index}]")
        return
    if isinstance(expected, float) and math.isnan(expected):
        assert isinstance(actual, float) and math.isnan(actual), f"{where}: {actual!r} != nan"
        return
    assert type(actual) is type(expected), f"{where}: type {type(actual)} != {type(expected)}"
    assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def rng_states() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the global RNG lr_find must restore)
    }


def assert_rng_same(expected: dict[str, Any]) -> None:
    now = rng_states()
    assert torch.equal(now["torch"], expected["torch"]), "torch RNG state changed"
    assert now["python"] == expected["python"], "python random state changed"
    for index, (left, right) in enumerate(zip(expected["numpy"], now["numpy"], strict=True)):
        if isinstance(left, np.ndarray):
            assert np.array_equal(left, right), f"numpy RNG state [{index}] changed"
        else:
            assert left == right, f"numpy RNG state [{index}] changed"


@dataclass
class Captured:
    """Copies of the values lr_find restores, and the live objects it must keep."""

    values: dict[str, torch.Tensor]
    tensor_objects: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    grad_objects: dict[str, torch.Tensor | None]
    training: dict[str, bool]
    optimizer_state_dict: dict[str, Any]
    state_objects: dict[tuple[int, str], torch.Tensor]
    state_params: list[torch.Tensor]
    groups: list[dict[str, Any]]
    group_params: list[list[torch.Tensor]]
    optimizer_attributes: dict[str, Any]
    rng: dict[str, Any]
    scaler_state: dict[str, Any] | None = None
    scaler_scale: torch.Tensor | None = None
    scaler_scale_value: torch.Tensor | None = None
    extras: list[Any] = field(default_factory=list)


def capture(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any = None,
    extras: Sequence[Any] = (),
) -> Captured:
    """Deep copies (and object identities) of everything lr_find must put back."""
    tensors = {
        **{f"param:{name}": p for name, p in model.named_parameters(remove_duplicate=False)},
        **{f"buffer:{name}": b for name, b in model.named_buffers(remove_duplicate=False)},
    }
    params = dict(model.named_parameters(remove_duplicate=False))
    index_of = {id(p): i for i, p in enumerate(_optimizer_params(optimizer))}
    state_objects = {
        (index_of[id(p)], key): value
        for p, state in optimizer.state.items()
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
    }
    scale = None if scaler is None else getattr(scaler, "_scale", None)
    return Captured(
        values={name: t.detach().clone() for name, t in tensors.items()},
        tensor_objects=dict(tensors),
        grads={n: None if p.grad is None else p.grad.detach().clone() for n, p in params.items()},
        grad_objects={n: p.grad for n, p in params.items()},
        training={name: m.training for name, m in model.named_modules(remove_duplicate=False)},
        optimizer_state_dict=_clone(optimizer.state_dict()),
        state_objects=state_objects,
        state_params=list(optimizer.state),
        groups=list(optimizer.param_groups),
        group_params=[list(group["params"]) for group in optimizer.param_groups],
        optimizer_attributes={
            key: value if isinstance(value, bool | int | float | str | type(None)) else type(value)
            for key, value in vars(optimizer).items()
            if key not in ("state", "param_groups")
        },
        rng=rng_states(),
        scaler_state=None if scaler is None else _clone(scaler.state_dict()),
        scaler_scale=scale,
        scaler_scale_value=None if scale is None else scale.detach().clone(),
        extras=[_clone(extra.state_dict()) for extra in extras],
    )


def _optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def assert_restored(
    before: Captured,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any = None,
    extras: Sequence[Any] = (),
    *,
    check_rng: bool = True,
) -> None:
    """Everything in ``before`` is back: values bit for bit, and the same objects."""
    after = capture(model, optimizer, scaler, extras)
    assert set(after.values) == set(before.values)
    for name, value in before.values.items():
        assert after.tensor_objects[name] is before.tensor_objects[name], f"{name}: new object"
        assert_same(value, after.values[name], name)
    for name, grad in before.grads.items():
        if grad is None:
            assert after.grads[name] is None, f"{name}.grad: None became a tensor"
        else:
            assert after.grad_objects[name] is before.grad_objects[name], f"{name}.grad: new object"
            assert_same(grad, after.grads[name], f"{name}.grad")
    assert after.training == before.training, "training flags changed"
    assert_same(before.optimizer_state_dict, after.optimizer_state_dict, "optimizer.state_dict()")
    assert [id(p) for p in after.state_params] == [id(p) for p in before.state_params]
    assert set(after.state_objects) == set(before.state_objects)
    for key, tensor in before.state_objects.items():
        assert after.state_objects[key] is tensor, f"optimizer state {key}: new tensor object"
    assert len(after.groups) == len(before.groups)
    for index, (group, old) in enumerate(zip(after.groups, before.groups, strict=True)):
        assert group is old, f"param_groups[{index}] is a new dict"
    for old_params, group in zip(before.group_params, optimizer.param_groups, strict=True):
        assert len(group["params"]) == len(old_params)
        assert all(p is q for p, q in zip(group["params"], old_params, strict=True))
    # Plain attributes such as the _opt_called flag an LR scheduler reads, and no new ones.
    assert after.optimizer_attributes == before.optimizer_attributes
    if check_rng:
        assert_rng_same(before.rng)
    if scaler is not None:
        assert before.scaler_state is not None
        assert_same(before.scaler_state, after.scaler_state, "scaler.state_dict()")
        if before.scaler_scale is None:
            assert after.scaler_scale is None, "the scaler's _scale was None and is now set"
        else:
            assert after.scaler_scale is before.scaler_scale, "scaler._scale: new object"
            assert_same(before.scaler_scale_value, after.scaler_scale_value, "scaler._scale")
    for index, (old, new) in enumerate(zip(before.extras, after.extras, strict=True)):
        assert_same(old, new, f"restore_also[{index}].state_dict()")


def assert_models_equal(left: nn.Module, right: nn.Module) -> None:
    """Two models hold bitwise-equal parameters and buffers."""
    assert_same(_clone(left.state_dict()), _clone(right.state_dict()), "state_dict")


# ---------------------------------------------------------------- reference loop


def reference_sweep(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Iterable[Any],
    batch_loss: Callable[[nn.Module, Any], torch.Tensor],
    lrs: Sequence[float],
    *,
    accumulation_steps: int = 1,
    after_step: Callable[[int], None] | None = None,
) -> list[float]:
    """A hand-rolled range test: what lr_find should record, computed independently.

    Every group's LR is set to ``float32(lr * group_ratio)``; each step zeroes the
    grads, backpropagates ``accumulation_steps`` micro-batch losses divided by
    their number, and steps. Returns the recorded (mean) loss of each step.
    """
    stream = iter(data)
    ratios = [group["lr"] / optimizer.param_groups[0]["lr"] for group in optimizer.param_groups]
    model.train()
    losses = []
    for index, lr in enumerate(lrs):
        for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
            group["lr"] = f32(lr * ratio)
        optimizer.zero_grad(set_to_none=True)
        total = None
        for _ in range(accumulation_steps):
            loss = batch_loss(model, next(stream))
            if accumulation_steps > 1:
                loss = loss / accumulation_steps
            loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
        optimizer.step()
        assert total is not None
        losses.append(total.item())
        if after_step is not None:
            after_step(index)
    return losses


class RecordingSGD(torch.optim.SGD):
    """SGD that records every group's LR at each ``step()`` call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A deque, not a list: lr_find puts an optimizer's lists back as they were,
        # and the test reads what the sweep recorded after the call.
        self.recorded_lrs: collections.deque[list[float]] = collections.deque()

    def __setstate__(self, state: dict[str, Any]) -> None:  # a deepcopy records afresh
        super().__setstate__(state)
        self.recorded_lrs = collections.deque()

    def step(self, closure: Any = None) -> Any:
        self.recorded_lrs.append([float(group["lr"]) for group in self.param_groups])
        return super().step(closure)


class CountingBatches:
    """A re-iterable list of batches that counts how many it handed out."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.served = 0

    def __iter__(self) -> Any:
        for item in self.items:
            self.served += 1
            yield item

    def __len__(self) -> int:
        return len(self.items)
