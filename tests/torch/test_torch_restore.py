"""lr_find leaves everything exactly as it found it, also when the sweep fails."""

from __future__ import annotations

import collections
import math
import random
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch_helpers import (
    FEATURES,
    NUM_CLASSES,
    Setup,
    assert_models_equal,
    assert_restored,
    assert_same,
    batches,
    capture,
    cross_entropy,
    keywords,
    make_setup,
)

from lrfind_torch import TorchOptions, lr_find

OPTIMIZERS = ("sgd", "adam", "adamw")
MODELS = ("mlp", "cnn")
VARIANTS = ("plain", "param_groups", "accumulation", "grad_scaler")
RANGE = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 12}
SWEEP = {**RANGE, "options": TorchOptions(progress=False)}


def loss_drawing_from_every_rng(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from user code that also draws from Python's and numpy's RNGs."""
    random.random()
    np.random.random()  # noqa: NPY002
    return cross_entropy(output, target)


def continue_training(setup: Setup, steps: int = 4) -> tuple[list[float], list[list[float]]]:
    """A few ordinary training steps with scheduler.step(); losses and LRs seen."""
    torch.manual_seed(1234)
    setup.model.train()
    losses, lrs = [], []
    for inputs, target in setup.data[4 : 4 + steps]:
        setup.optimizer.zero_grad(set_to_none=True)
        loss = cross_entropy(setup.model(inputs), target)
        loss.backward()
        setup.optimizer.step()
        setup.scheduler.step()
        losses.append(loss.item())
        lrs.append(list(setup.scheduler.get_last_lr()))
    return losses, lrs


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("optimizer_name", OPTIMIZERS)
def test_restore_matrix(optimizer_name: str, model_name: str, variant: str) -> None:
    setup = make_setup(optimizer_name, model_name, variant)
    if model_name == "cnn":
        bn = setup.model[1]
        assert int(bn.num_batches_tracked) == 4  # the buffers have moved: restoring them matters
    assert "initial_lr" in setup.optimizer.param_groups[0]
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002
    before = capture(setup.model, setup.optimizer, setup.scaler)

    result = lr_find(
        setup.model, setup.optimizer, setup.data, loss_fn=loss_drawing_from_every_rng,
        **RANGE, **keywords(**setup.options),
    )

    assert result.meta["steps_trained"] >= 1
    assert len(result.lrs) >= 1
    assert_restored(before, setup.model, setup.optimizer, setup.scaler)

    # The setup that saw lr_find trains (and schedules) exactly like one that did not.
    twin = make_setup(optimizer_name, model_name, variant)
    assert_models_equal(twin.model, setup.model)
    losses, lrs = continue_training(setup)
    twin_losses, twin_lrs = continue_training(twin)
    assert losses == twin_losses
    assert lrs == twin_lrs
    assert_models_equal(twin.model, setup.model)
    assert_same(twin.optimizer.state_dict(), setup.optimizer.state_dict(), "optimizer")


def test_fresh_scheduler_still_sees_no_optimizer_step() -> None:
    """lr_find's optimizer.step() calls must not leak into the scheduler's bookkeeping.

    A scheduler attached to an optimizer that never stepped warns when it is stepped
    first; after lr_find it must still do so, exactly like one that saw no lr_find.
    """
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    before = capture(model, optimizer)
    lr_find(model, optimizer, batches(12), loss_fn=cross_entropy, **SWEEP)
    assert_restored(before, model, optimizer)
    assert not hasattr(optimizer, "_opt_called")
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        scheduler.step()


@pytest.mark.parametrize("train_mode", [True, False])
def test_train_mode_false_keeps_eval_batchnorm_frozen_and_restores_the_mode(
    train_mode: bool,
) -> None:
    """TorchOptions(train_mode=False) runs the steps in the modes the user set: a
    BatchNorm in eval() never updates its running statistics. The default puts the
    model in train mode, so the statistics move (this is what makes the test fail
    if train_mode=False were ignored). Either way the modes come back."""
    setup = make_setup("sgd", "cnn", "plain")
    setup.model.eval()
    bn = setup.model[1]
    initial_mean = bn.running_mean.clone()
    before = capture(setup.model, setup.optimizer)
    seen: list[tuple[bool, torch.Tensor]] = []

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        loss = cross_entropy(model(batch[0]), batch[1])
        seen.append((bn.training, bn.running_mean.clone()))  # after this step's forward
        return loss

    result = lr_find(
        setup.model, setup.optimizer, setup.data, step_fn=step_fn,
        options=TorchOptions(progress=False, train_mode=train_mode), **RANGE,
    )

    assert len(seen) == 12
    assert result.meta["train_mode"] is train_mode
    assert all(training is train_mode for training, _ in seen)
    frozen = [torch.equal(mean, initial_mean) for _, mean in seen]
    assert frozen == [not train_mode] * 12
    assert not setup.model.training and not bn.training
    assert_restored(before, setup.model, setup.optimizer)


# ---------------------------------------------------------------- failures


class Boom(Exception):
    """An error from the user's code."""


def failing_setup() -> Setup:
    return make_setup("adam", "cnn", "param_groups")


def disk_or_memory(snapshot: str, folder: Any) -> TorchOptions:
    return TorchOptions(progress=False, snapshot=snapshot, snapshot_dir=folder)


@pytest.mark.parametrize("snapshot", ["memory", "disk"])
def test_exception_from_loss_fn_propagates_and_restores(snapshot: str, tmp_path: Any) -> None:
    setup = failing_setup()
    before = capture(setup.model, setup.optimizer)
    error = Boom("user code failed")
    calls = []

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 6:
            raise error
        return cross_entropy(output, target)

    with pytest.raises(Boom) as raised:
        lr_find(
            setup.model, setup.optimizer, setup.data, loss_fn=loss_fn,
            options=disk_or_memory(snapshot, tmp_path), **RANGE,
        )
    assert raised.value is error
    assert len(calls) == 6  # it failed mid-sweep, after 5 real steps
    assert_restored(before, setup.model, setup.optimizer)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("snapshot", ["memory", "disk"])
def test_keyboard_interrupt_from_step_fn_propagates_and_restores(
    snapshot: str, tmp_path: Any
) -> None:
    setup = failing_setup()
    before = capture(setup.model, setup.optimizer)
    calls = []

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        inputs, target = batch
        return cross_entropy(model(inputs), target)

    with pytest.raises(KeyboardInterrupt):
        lr_find(
            setup.model, setup.optimizer, setup.data, step_fn=step_fn,
            options=disk_or_memory(snapshot, tmp_path), **RANGE,
        )
    assert len(calls) == 5
    assert_restored(before, setup.model, setup.optimizer)
    assert list(tmp_path.iterdir()) == []


def test_nan_loss_at_step_zero_stops_and_restores() -> None:
    setup = failing_setup()
    before = capture(setup.model, setup.optimizer)

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(output, target) * math.nan

    result = lr_find(setup.model, setup.optimizer, setup.data, loss_fn=loss_fn, **SWEEP)

    assert result.stop_step == 0
    assert result.stop_reason == "non-finite loss"
    assert len(result.lrs) == 1
    assert math.isnan(result.losses[0])
    assert result.suggestion is None
    assert set(result.suggestions) == set(result.settings.methods)
    assert all(detail.lr is None for detail in result.suggestions.values())
    assert_restored(before, setup.model, setup.optimizer)


def test_disk_snapshot_restores_and_deletes_its_file(tmp_path: Any) -> None:
    setup = make_setup("sgd", "cnn", "plain")
    before = capture(setup.model, setup.optimizer)
    seen_files: list[list[str]] = []

    def step_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        seen_files.append(sorted(path.name for path in tmp_path.iterdir()))
        inputs, target = batch
        return cross_entropy(model(inputs), target)

    result = lr_find(
        setup.model, setup.optimizer, setup.data, step_fn=step_fn,
        options=disk_or_memory("disk", tmp_path), **RANGE,
    )

    assert result.meta["snapshot"] == "disk"
    # During the sweep the snapshot lives in snapshot_dir, as one file.
    assert len(seen_files[0]) == 1
    assert seen_files[0][0].startswith("lrfind-")
    assert all(files == seen_files[0] for files in seen_files)
    assert list(tmp_path.iterdir()) == []
    assert_restored(before, setup.model, setup.optimizer)


def test_disk_and_memory_snapshots_give_the_same_result(tmp_path: Any) -> None:
    memory = make_setup("adamw", "cnn", "plain")
    disk = make_setup("adamw", "cnn", "plain")
    in_memory = lr_find(memory.model, memory.optimizer, memory.data, loss_fn=cross_entropy, **SWEEP)
    on_disk = lr_find(
        disk.model, disk.optimizer, disk.data, loss_fn=cross_entropy,
        options=disk_or_memory("disk", tmp_path), **RANGE,
    )
    np.testing.assert_array_equal(in_memory.losses, on_disk.losses)
    assert_models_equal(memory.model, disk.model)


# ---------------------------------------------------------------- compiled models


def test_compiled_model_sweeps_and_restores() -> None:
    # backend="aot_eager": AOTAutograd traces the joint forward/backward graph like the
    # default inductor backend does, without inductor's C++ compile (~15 s on 2 cores).
    torch._dynamo.reset()
    setup = make_setup("adam", "cnn", "plain")
    eager = make_setup("adam", "cnn", "plain")
    compiled = torch.compile(setup.model, backend="aot_eager")
    before = capture(setup.model, setup.optimizer)
    before_compiled = capture(compiled, setup.optimizer)
    torch.manual_seed(5)
    result = lr_find(compiled, setup.optimizer, setup.data, loss_fn=cross_entropy, **SWEEP)
    torch.manual_seed(5)
    reference = lr_find(eager.model, eager.optimizer, eager.data, loss_fn=cross_entropy, **SWEEP)

    assert_restored(before_compiled, compiled, setup.optimizer, check_rng=False)
    assert_restored(before, setup.model, setup.optimizer, check_rng=False)
    assert len(result.lrs) == len(reference.lrs)
    np.testing.assert_allclose(result.losses, reference.losses, rtol=1e-4)
    # The compiled wrapper still trains like the eager model afterwards.
    inputs = setup.data[5][0]
    torch.manual_seed(9)  # the same dropout mask for both
    compiled_output = compiled(inputs)
    torch.manual_seed(9)
    assert torch.allclose(compiled_output, eager.model(inputs), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- restore_also


def gan_setup() -> tuple[nn.Module, nn.Module, Any, Any, list[torch.Tensor]]:
    torch.manual_seed(3)
    generator = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6))
    discriminator = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = [torch.randn(8, 6) + 2.0 for _ in range(12)]
    # Give both optimizers state, as mid-training.
    for batch in real[:2]:
        d_optimizer.zero_grad()
        d_loss = nn.functional.softplus(-discriminator(batch)).mean()
        d_loss.backward()
        d_optimizer.step()
        g_optimizer.zero_grad()
        g_loss = nn.functional.softplus(-discriminator(generator(torch.randn(8, 4)))).mean()
        g_loss.backward()
        g_optimizer.step()
    discriminator.zero_grad(set_to_none=True)
    return generator, discriminator, g_optimizer, d_optimizer, real


def gan_step_fn(discriminator: nn.Module, d_optimizer: Any) -> Any:
    """Update the discriminator with its own optimizer; return the generator's loss."""

    def step_fn(generator: nn.Module, real: torch.Tensor) -> torch.Tensor:
        fake = generator(torch.randn(real.shape[0], 4))
        d_optimizer.zero_grad()
        d_loss = (
            nn.functional.softplus(-discriminator(real)).mean()
            + nn.functional.softplus(discriminator(fake.detach())).mean()
        )
        d_loss.backward()
        d_optimizer.step()
        return nn.functional.softplus(-discriminator(fake)).mean()

    return step_fn


def test_restore_also_restores_a_gan_discriminator_and_its_optimizer() -> None:
    generator, discriminator, g_optimizer, d_optimizer, real = gan_setup()
    before_g = capture(generator, g_optimizer)
    before_d = capture(discriminator, d_optimizer)
    d_values = {k: v.clone() for k, v in discriminator.state_dict().items()}

    result = lr_find(
        generator, g_optimizer, real, step_fn=gan_step_fn(discriminator, d_optimizer),
        options=TorchOptions(progress=False, restore_also=[discriminator, d_optimizer]),
        **RANGE,
    )

    assert len(result.lrs) >= 2
    assert_restored(before_g, generator, g_optimizer)
    assert_same(d_values, discriminator.state_dict(), "discriminator.state_dict()")
    assert_same(before_d.optimizer_state_dict, d_optimizer.state_dict(), "d_optimizer")
    # Bit-for-bit the same discriminator and optimizer as in a run without lr_find.
    _, twin_d, _, twin_d_optimizer, _ = gan_setup()
    assert_models_equal(twin_d, discriminator)
    assert_same(twin_d_optimizer.state_dict(), d_optimizer.state_dict(), "twin d_optimizer")


def test_restore_also_module_keeps_grads_and_objects() -> None:
    """A module in restore_also comes back like the main model: grads and objects too.

    The docstring promises restore_also items are "exactly as before"; a
    discriminator's ``.grad`` (None here) is part of that for a user who then
    resumes their own loop.
    """
    generator, discriminator, g_optimizer, d_optimizer, real = gan_setup()
    before_d = capture(discriminator, d_optimizer)

    lr_find(
        generator, g_optimizer, real, step_fn=gan_step_fn(discriminator, d_optimizer),
        options=TorchOptions(progress=False, restore_also=[discriminator, d_optimizer]),
        **RANGE,
    )

    assert_restored(before_d, discriminator, d_optimizer, check_rng=False)


def test_restore_also_rejects_objects_without_state_dict() -> None:
    setup = make_setup("sgd", "mlp", "plain")
    before = capture(setup.model, setup.optimizer)
    with pytest.raises(TypeError, match="restore_also items need state_dict"):
        lr_find(
            setup.model, setup.optimizer, setup.data, loss_fn=cross_entropy,
            options=TorchOptions(progress=False, restore_also=[object()]), **RANGE,
        )
    assert_restored(before, setup.model, setup.optimizer)


def _shuffled_loader(generator: torch.Generator, sampler_generator: bool = False) -> Any:
    from torch.utils.data import DataLoader, RandomSampler, TensorDataset

    fixed = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(40, 4, generator=fixed),
                         torch.randint(0, 3, (40,), generator=fixed))
    if sampler_generator:  # the generator lives in the user's own sampler
        return DataLoader(data, batch_size=8, sampler=RandomSampler(data, generator=generator))
    return DataLoader(data, batch_size=8, shuffle=True, generator=generator)


@pytest.mark.parametrize("sampler_generator", [False, True])
@pytest.mark.parametrize("fail", [False, True])
def test_a_loaders_own_generator_is_put_back(sampler_generator: bool, fail: bool) -> None:
    # lr_find reads several shuffled passes; the user's next epoch must not see them
    generator = torch.Generator().manual_seed(3)
    loader = _shuffled_loader(generator, sampler_generator)
    before = generator.get_state()
    expected_order = [batch[1].tolist() for batch in _shuffled_loader(
        torch.Generator().manual_seed(3), sampler_generator)]
    model = nn.Sequential(nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if fail and len(calls) == 12:
            raise RuntimeError("boom in the twelfth step")
        return nn.functional.cross_entropy(output, target)

    if fail:
        with pytest.raises(RuntimeError, match="boom in the twelfth step"):
            lr_find(model, optimizer, loader, loss_fn, num_steps=20,
                    options=TorchOptions(progress=False))
    else:
        with pytest.warns(UserWarning):
            lr_find(model, optimizer, loader, loss_fn, num_steps=20,
                    options=TorchOptions(progress=False))
    assert len(calls) >= 12  # more than two passes of 5 batches were drawn
    assert torch.equal(generator.get_state(), before)
    assert [batch[1].tolist() for batch in loader] == expected_order


@pytest.mark.parametrize("fail", [False, True])
def test_requires_grad_flags_a_step_fn_toggles_are_put_back(fail: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 8), nn.ReLU(), nn.Linear(8, NUM_CLASSES))
    model[2].bias.requires_grad_(False)  # frozen by the user: must stay frozen
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    data = batches(16)
    before = [p.requires_grad for p in model.parameters()]
    calls = []

    def step_fn(module: nn.Module, batch: Any) -> torch.Tensor:
        calls.append(1)
        for param in module.parameters():  # a GAN-style phase toggles the flags
            param.requires_grad_(not param.requires_grad)
        if fail and len(calls) == 3:
            raise Boom("phase failed")
        for param in module[0].parameters():
            param.requires_grad_(True)
        inputs, target = batch
        return cross_entropy(module(inputs), target)

    if fail:
        with pytest.raises(Boom, match="phase failed"):
            lr_find(model, optimizer, data, step_fn=step_fn, **SWEEP)
    else:
        lr_find(model, optimizer, data, step_fn=step_fn, **SWEEP)
    assert [p.requires_grad for p in model.parameters()] == before


class LazyStatistics(nn.Module):
    """A buffer registered as None and filled on the first forward."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(FEATURES, NUM_CLASSES)
        self.register_buffer("input_mean", None)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        mean = inputs.mean(0).detach()
        self.input_mean = mean if self.input_mean is None else 0.9 * self.input_mean + 0.1 * mean
        return self.linear(inputs)


def test_a_buffer_registered_as_none_is_none_again_and_no_entry_is_added() -> None:
    torch.manual_seed(0)
    model = LazyStatistics()
    model.register_buffer("scale", torch.ones(NUM_CLASSES))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    keys, scale = list(model.state_dict()), model.scale
    lr_find(model, optimizer, batches(16), cross_entropy, **SWEEP)
    assert model.input_mean is None
    assert list(model._buffers) == ["input_mean", "scale"]
    assert list(model.state_dict()) == keys
    assert model.scale is scale and torch.equal(scale, torch.ones(NUM_CLASSES))


def test_tensor_betas_inside_a_tuple_are_the_same_objects_afterwards() -> None:
    torch.manual_seed(0)
    model = nn.Linear(FEATURES, NUM_CLASSES)
    beta1, beta2 = torch.tensor(0.9), torch.tensor(0.999)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(beta1, beta2))
    betas = optimizer.param_groups[0]["betas"]
    schedule = {"mode": "search", "training_steps": 200}  # OneCycleLR cycles beta1
    lr_find(model, optimizer, batches(64), cross_entropy,
            options=TorchOptions(progress=False), **schedule)
    after = optimizer.param_groups[0]["betas"]
    assert after is betas and after[0] is beta1 and after[1] is beta2
    assert torch.equal(beta1, torch.tensor(0.9))


def trained_adam(model: nn.Module, optimizer: Any, data: list[Any]) -> None:
    """A few real steps, so the optimizer holds moments and step counts."""
    for inputs, target in data[:4]:
        optimizer.zero_grad()
        cross_entropy(model(inputs), target).backward()
        optimizer.step()


def test_per_parameter_state_dicts_are_the_same_objects_afterwards() -> None:
    torch.manual_seed(0)
    model = nn.Linear(FEATURES, NUM_CLASSES)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = batches(16)
    trained_adam(model, optimizer, data)
    held = optimizer.state[model.weight]
    moments = {key: value.clone() for key, value in held.items()}
    lr_find(model, optimizer, data, cross_entropy, **SWEEP)
    assert optimizer.state[model.weight] is held
    assert set(held) == set(moments)
    assert all(torch.equal(held[key], moments[key]) for key in moments)


class Wrapper(torch.optim.Optimizer):
    """A wrapper in the style of timm's Lookahead: the moments live in the inner optimizer."""

    def __init__(self, inner: torch.optim.Optimizer) -> None:  # no super().__init__, as timm
        self._inner = inner
        self.param_groups = inner.param_groups
        self.defaults = inner.defaults
        self.state: dict[Any, Any] = {}
        self._optimizer_step_pre_hooks: dict[Any, Any] = {}
        self._optimizer_step_post_hooks: dict[Any, Any] = {}

    def step(self, closure: Any = None) -> Any:
        return self._inner.step(closure)


def test_an_inner_optimizer_a_wrapper_holds_is_restored() -> None:
    torch.manual_seed(0)
    model = nn.Linear(FEATURES, NUM_CLASSES)
    inner = torch.optim.Adam(model.parameters(), lr=1e-3)
    optimizer = Wrapper(inner)
    data = batches(16)
    trained_adam(model, optimizer, data)
    moments = {key: value.clone() for key, value in inner.state[model.weight].items()}
    weights = model.weight.detach().clone()
    lr_find(model, optimizer, data, cross_entropy, **SWEEP)
    assert torch.equal(model.weight, weights)
    assert all(torch.equal(inner.state[model.weight][key], moments[key]) for key in moments)


def test_objects_a_param_group_holds_keep_their_identity_even_if_not_copyable() -> None:
    import threading

    torch.manual_seed(0)
    model = nn.Linear(FEATURES, NUM_CLASSES)
    tag, lock = {"layer": "head"}, threading.Lock()  # a lock cannot be deep-copied
    optimizer = torch.optim.SGD([{"params": model.parameters(), "tag": tag, "lock": lock}],
                                lr=0.1)
    lr_find(model, optimizer, batches(16), cross_entropy, **SWEEP)
    group = optimizer.param_groups[0]
    assert group["tag"] is tag and tag == {"layer": "head"}
    assert group["lock"] is lock


class Stateful(nn.Module):
    """A model that keeps Python state of its own in forward, as Lightning's
    ``self.training_step_outputs.append(...)`` pattern does."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(FEATURES, NUM_CLASSES)
        self.outputs: list[float] = []
        self.seen: dict[str, int] = {"calls": 0}
        self.calls = 0
        self.scale = torch.ones(NUM_CLASSES)  # a plain tensor attribute, not a buffer

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        self.scale.mul_(1.01)  # in place, before the graph uses it
        out = self.linear(inputs) * self.scale
        self.outputs.append(float(out.mean()))
        self.seen["calls"] += 1
        self.calls += 1
        self.last = out.detach()  # an attribute the sweep adds
        return out


@pytest.mark.parametrize("fail", [False, True])
def test_python_state_a_forward_keeps_is_put_back(fail: bool) -> None:
    torch.manual_seed(0)
    model = Stateful()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    outputs, seen, scale = model.outputs, model.seen, model.scale

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if fail and model.calls == 4:
            raise Boom("mid-sweep")
        return cross_entropy(output, target)

    if fail:
        with pytest.raises(Boom):
            lr_find(model, optimizer, batches(16), loss_fn, **SWEEP)
    else:
        lr_find(model, optimizer, batches(16), loss_fn, **SWEEP)
    assert model.outputs is outputs and outputs == []
    assert model.seen is seen and seen == {"calls": 0}
    assert model.calls == 0
    assert model.scale is scale and torch.equal(scale, torch.ones(NUM_CLASSES))
    assert not hasattr(model, "last")


class Refusing(dict):
    """A dict that refuses to be cleared or updated (as transformers' ModelOutput)."""

    def clear(self) -> None:
        raise RuntimeError("you cannot clear this")

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("you cannot update this")


class Eventful(nn.Module):
    """Python and tensor state a forward changes in the ways real modules do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(FEATURES, NUM_CLASSES)
        self.act = nn.ReLU()
        self.register_buffer("observed", torch.zeros(1))  # resized in place, as QAT does
        self.history: collections.defaultdict[str, list[float]] = collections.defaultdict(list)
        self.queue = [torch.zeros(3)]
        self.output = Refusing(kind="logits")  # never changed by the sweep
        self.generator = torch.Generator().manual_seed(3)
        self.numpy_rng = np.random.default_rng(3)
        self.seen = np.zeros(1)
        self.calls = 0

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        with torch.no_grad():
            self.observed.resize_(NUM_CLASSES).fill_(float(self.calls))
            self.queue[0].add_(1.0)
        self.history["loss"].append(float(self.calls))
        self.seen += 1
        torch.rand(1, generator=self.generator)
        self.numpy_rng.random()
        if self.calls == 3:
            self.head = nn.Identity()  # a submodule built on first use
            self.act = nn.Tanh()  # a submodule swapped
        return self.act(self.body(inputs))


class LoggingSGD(torch.optim.SGD):
    """An optimizer with state of its own beside ``state``, and inner optimizers in a list."""

    def __init__(self, params: Any, inner: list[torch.optim.Optimizer]) -> None:
        super().__init__(params, lr=0.1)
        self.global_step = torch.zeros(())
        self.log: list[float] = []
        self.inner = inner

    def step(self, closure: Any = None) -> Any:
        self.global_step += 1
        self.log.append(float(self.param_groups[0]["lr"]))
        for inner in self.inner:
            inner.step()
        return super().step(closure)


def test_module_and_optimizer_state_of_every_kind_comes_back() -> None:
    torch.manual_seed(0)
    model = Eventful()
    extra = nn.Linear(2, 2)
    inner = torch.optim.Adam(extra.parameters(), lr=1e-3)
    extra(torch.ones(1, 2)).sum().backward()
    inner.step()  # its step count is 1
    optimizer = LoggingSGD(model.parameters(), [inner])
    before = (model.observed.clone(), dict(model.history), model.generator.get_state(),
              model.numpy_rng.bit_generator.state, inner.state_dict()["state"][0]["step"].item())
    act, history, queue = model.act, model.history, model.queue[0]
    lr_find(model, optimizer, batches(16), cross_entropy, **SWEEP)
    assert model.observed.shape == (1,) and torch.equal(model.observed, before[0])
    assert model.history is history and dict(history) == before[1] == {}
    assert model.queue[0] is queue and torch.equal(queue, torch.zeros(3))
    assert dict(model.output) == {"kind": "logits"}
    assert torch.equal(model.generator.get_state(), before[2])
    assert model.numpy_rng.bit_generator.state == before[3]
    assert model.seen.tolist() == [0.0] and model.calls == 0
    assert model.act is act and "head" not in model._modules
    assert optimizer.global_step.item() == 0 and optimizer.log == []
    assert inner.state_dict()["state"][0]["step"].item() == before[4] == 1


def test_a_script_module_is_refused_before_any_step() -> None:
    torch.manual_seed(0)
    model = torch.jit.script(nn.Sequential(nn.Linear(FEATURES, NUM_CLASSES)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    weights = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TypeError, match=r"torch\.jit ScriptModule.*pass the eager module"):
        lr_find(model, optimizer, batches(16), cross_entropy, **SWEEP)
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights, strict=True))


def test_a_part_that_fails_to_restore_does_not_leave_the_others_undone() -> None:
    class Broken:
        def state_dict(self) -> dict[str, Any]:
            return {}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            raise RuntimeError("cannot load")

    setup = failing_setup()
    before = capture(setup.model, setup.optimizer)
    rng = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="cannot load"):
        lr_find(setup.model, setup.optimizer, setup.data, cross_entropy,
                options=TorchOptions(progress=False, restore_also=[Broken()]), **RANGE)
    assert_restored(before, setup.model, setup.optimizer)
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_persistent_workers_loader_starts_the_next_epoch_as_without_lr_find() -> None:
    fixed = torch.Generator().manual_seed(1)
    data = torch.utils.data.TensorDataset(torch.randn(64, FEATURES, generator=fixed),
                                          torch.randint(0, NUM_CLASSES, (64,), generator=fixed))

    def loader() -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            data, batch_size=8, shuffle=True, num_workers=1, persistent_workers=True,
            generator=torch.Generator().manual_seed(5))

    torch.manual_seed(0)
    untouched, swept = loader(), loader()
    model = nn.Linear(FEATURES, NUM_CLASSES)
    lr_find(model, torch.optim.SGD(model.parameters(), lr=0.1), swept, cross_entropy,
            **SWEEP)
    assert swept._iterator is None
    first = [batch[1].tolist() for batch in untouched]
    assert [batch[1].tolist() for batch in swept] == first
