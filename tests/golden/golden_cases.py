"""Golden cases: results recorded before the one-shell redesign, compared bit for bit after it.

Each case builds a small model, optimizer and data with fixed seeds and calls a
backend's ``lr_find``. ``record_golden.py`` writes every case's curve, stop and
suggestions to ``golden_results.json``; ``test_golden.py`` reruns the cases and
asserts the same numbers. The models, data and settings must never change; only
:func:`run_case` follows the public API.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

TORCH_CASES = (
    "torch_mlp_sgd_sweep",
    "torch_mlp_adam_k3",
    "torch_cnn_adamw_sweep",
    "torch_mlp_sgd_independent",
    "torch_mlp_adam_validation",
    "torch_mlp_sgd_accumulation_fastai",
    "torch_mlp_adam_torch_lr_finder",
)
JAX_CASES = (
    "jax_mlp_adam_sweep",
    "jax_mlp_sgd_k3",
    "jax_mlp_adam_independent",
    "jax_mlp_adam_accumulation",
    "jax_nnx_bn_adam_sweep",
    "jax_linen_bn_sgd_k2",
)


def _torch_setup(model_name: str, optimizer_name: str) -> tuple[Any, Any, list[Any]]:
    import torch
    from torch import nn

    torch.set_num_threads(1)  # convolutions sum in another order on more threads
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    if model_name == "cnn":
        model: nn.Module = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.25),
            nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
        )
        shape: tuple[int, ...] = (8, 1, 6, 6)
    else:
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        shape = (8, 6)
    data = [
        (torch.randn(shape, generator=generator), torch.randint(0, 3, (8,), generator=generator))
        for _ in range(40)
    ]
    if optimizer_name == "sgd":
        optimizer: Any = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    elif optimizer_name == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.05)
    return model, optimizer, data


def _jax_mlp(seed: int = 0) -> tuple[Any, Callable[..., Any], tuple[np.ndarray, np.ndarray]]:
    import jax
    import jax.numpy as jnp
    import optax

    k1, k2 = jax.random.split(jax.random.key(seed))
    params = {
        "w1": jax.random.normal(k1, (8, 32)) * 0.5, "b1": jnp.zeros(32),
        "w2": jax.random.normal(k2, (32, 3)) * 0.5, "b2": jnp.zeros(3),
    }

    def loss_fn(params: Any, batch: Any) -> Any:
        inputs, labels = batch
        hidden = jax.nn.relu(inputs @ params["w1"] + params["b1"])
        logits = hidden @ params["w2"] + params["b2"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    rng = np.random.default_rng(seed)
    teacher = np.random.default_rng(1234).normal(size=(8, 3))
    inputs = rng.normal(size=(120, 16, 8)).astype(np.float32)
    labels = (inputs @ teacher).argmax(-1).astype(np.int32)
    return params, loss_fn, (inputs, labels)


def _nnx_case(**options: Any) -> Any:
    import optax
    from flax import nnx

    from lrfind_jax import lr_find_nnx

    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.dense1 = nnx.Linear(8, 32, rngs=rngs)
            self.norm = nnx.BatchNorm(32, rngs=rngs)
            self.dropout = nnx.Dropout(0.2, rngs=rngs)
            self.dense2 = nnx.Linear(32, 3, rngs=rngs)

        def __call__(self, x: Any) -> Any:
            return self.dense2(self.dropout(nnx.relu(self.norm(self.dense1(x)))))

    def loss_fn(model: Any, batch: Any) -> Any:
        inputs, labels = batch
        return optax.softmax_cross_entropy_with_integer_labels(model(inputs), labels).mean()

    _, _, data = _jax_mlp(3)
    return lr_find_nnx(Net(nnx.Rngs(0)), optax.adam, data, loss_fn, **options)


def _linen_case(**options: Any) -> Any:
    import flax.linen as nn
    import jax
    import optax

    from lrfind_jax import lr_find_linen

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x: Any, train: bool) -> Any:
            x = nn.Dense(32)(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.Dropout(0.2, deterministic=not train)(nn.relu(x))
            return nn.Dense(3)(x)

    def loss_fn(apply: Any, batch: Any) -> Any:
        inputs, labels = batch
        logits = apply(inputs, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    _, _, data = _jax_mlp(4)
    model = Net()
    variables = model.init(jax.random.key(0), data[0][0], train=False)
    return lr_find_linen(model.apply, variables, optax.sgd, data, loss_fn,
                         rng=jax.random.key(5), **options)


def run_case(name: str) -> Any:
    """Run the golden case ``name`` with today's public API; return its LRFindResult."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name.startswith("torch_"):
            return _run_torch(name)
        return _run_jax(name)


def _run_torch(name: str) -> Any:
    import torch

    from lrfind_torch import Settings, TorchOptions, lr_find

    parts = name.split("_")
    model, optimizer, data = _torch_setup(parts[1], parts[2])
    loss = torch.nn.functional.cross_entropy
    quiet = TorchOptions(progress=False)
    if name == "torch_mlp_sgd_sweep":
        return lr_find(model, optimizer, data, loss, num_steps=60, options=quiet)
    if name == "torch_mlp_adam_k3":
        return lr_find(model, optimizer, data, loss, num_steps=30,
                       settings=Settings(num_sweeps=3), options=quiet)
    if name == "torch_cnn_adamw_sweep":
        return lr_find(model, optimizer, data, loss, num_steps=50, start_lr=1e-5, options=quiet)
    if name == "torch_mlp_sgd_independent":
        return lr_find(model, optimizer, data, loss, mode="independent", options=quiet,
                       settings=Settings(independent_lrs=10, steps_per_lr=6, average_last=3))
    if name == "torch_mlp_adam_validation":
        return lr_find(model, optimizer, data[:30], loss, num_steps=40, val_data=data[30:],
                       settings=Settings(val_every=2, val_batches=4), options=quiet)
    if name == "torch_mlp_sgd_accumulation_fastai":
        return lr_find(model, optimizer, data, loss, num_steps=30, options=quiet,
                       settings=Settings.preset_named("fastai", accumulation_steps=2))
    if name == "torch_mlp_adam_torch_lr_finder":
        return lr_find(model, optimizer, data, loss, num_steps=50, settings="torch-lr-finder",
                       options=quiet)
    raise ValueError(name)


def _run_jax(name: str) -> Any:
    import optax

    from lrfind_jax import JaxOptions, Settings, lr_find

    params, loss_fn, data = _jax_mlp()
    quiet = JaxOptions(progress=False)
    if name == "jax_mlp_adam_sweep":
        return lr_find(params, optax.adam, data, loss_fn, num_steps=80, options=quiet)
    if name == "jax_mlp_sgd_k3":
        return lr_find(params, optax.sgd, data, loss_fn, num_steps=30,
                       settings=Settings(num_sweeps=3), options=quiet)
    if name == "jax_mlp_adam_independent":
        return lr_find(params, optax.adam, data, loss_fn, mode="independent", options=quiet,
                       settings=Settings(independent_lrs=10, steps_per_lr=6, average_last=3))
    if name == "jax_mlp_adam_accumulation":
        return lr_find(params, optax.adam, data, loss_fn, num_steps=40,
                       settings=Settings(accumulation_steps=2), options=quiet)
    if name == "jax_nnx_bn_adam_sweep":
        return _nnx_case(num_steps=50, options=quiet)
    if name == "jax_linen_bn_sgd_k2":
        return _linen_case(num_steps=30, settings=Settings(num_sweeps=2), options=quiet)
    raise ValueError(name)


def summary(result: Any) -> dict[str, Any]:
    """What must not change: curves, stop, suggestions, ensemble and runs (not timings)."""
    data = result.to_dict()
    kept = {key: data[key] for key in ("lrs", "losses", "smoothed_losses", "stop_step",
                                       "stop_reason", "ensemble", "runs")}
    kept["suggestion_details"] = data["suggestions"]
    kept["suggestion"] = None if result.suggestion is None else float(result.suggestion)
    return _canonical(kept)


def _canonical(value: Any) -> Any:
    """JSON-like data with floats as their repr, so equality is bit for bit."""
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return value
