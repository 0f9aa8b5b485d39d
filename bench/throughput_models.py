"""The three workloads of ``bench/throughput.py``, written once for torch and once for JAX.

Each workload exists twice with the same architecture, batch and synthetic data
shapes (native layouts: NCHW for torch, NHWC for JAX); ratios are only ever taken
within one framework, so the two need not share initial weights.

* ``mlp``: 784-256-10, relu, batch 64, cross-entropy.
* ``cnn``: three 3x3 conv + BatchNorm + relu blocks (16, 32, 64 channels, 2x2 max
  pool after the first two), global average pool, linear head; batch 128 of
  3x32x32, cross-entropy. BatchNorm statistics update in training mode.
* ``transformer``: a 2-layer pre-LayerNorm causal language model, d=256, 4 heads,
  MLP 4d with GELU, learned positions, vocabulary 256, sequence 128, batch 32;
  next-token cross-entropy over all 128 positions.

Data is generated in the process from a fixed seed: ``steps`` batches, made up
front and kept on the device (torch: a list of ``(inputs, targets)`` tensors served
by a ``DataLoader(batch_size=None)``; JAX: arrays stacked on a leading step axis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

WORKLOADS = ("mlp", "cnn", "transformer")

DESCRIPTIONS = {
    "mlp": "MLP 784-256-10 relu, batch 64, Adam",
    "cnn": "CNN 3x(conv3x3+BatchNorm+relu) 16/32/64 ch, batch 128 of 3x32x32, Adam",
    "transformer": "causal LM, 2 layers, d=256, 4 heads, seq 128, vocab 256, batch 32, Adam",
}

BATCH = {"mlp": 64, "cnn": 128, "transformer": 32}
CLASSES = 10
CHANNELS = (16, 32, 64)
VOCAB, SEQ, D_MODEL, HEADS, LAYERS = 256, 128, 256, 4, 2


def numpy_batches(workload: str, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` batches of synthetic ``(inputs, targets)``, stacked on axis 0, in NCHW
    for images (the JAX side transposes)."""
    rng = np.random.default_rng(seed)
    batch = BATCH[workload]
    if workload == "mlp":
        inputs = rng.normal(size=(steps, batch, 784)).astype(np.float32)
        return inputs, rng.integers(0, CLASSES, size=(steps, batch)).astype(np.int64)
    if workload == "cnn":
        inputs = rng.normal(size=(steps, batch, 3, 32, 32)).astype(np.float32)
        return inputs, rng.integers(0, CLASSES, size=(steps, batch)).astype(np.int64)
    if workload == "transformer":
        tokens = rng.integers(0, VOCAB, size=(steps, batch, SEQ + 1)).astype(np.int64)
        return tokens[:, :, :-1], tokens[:, :, 1:]
    raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")


# --------------------------------------------------------------------------- torch


@dataclass
class TorchWorkload:
    """A torch model in training mode, its Adam optimizer, the batches and the loss."""

    model: Any
    optimizer: Any
    batches: list[tuple[Any, Any]]
    loss_fn: Any


def torch_workload(workload: str, steps: int, device: Any, lr: float) -> TorchWorkload:
    """The ``workload`` on ``device``: model (seed 0), ``Adam(lr=lr)``, ``steps`` batches
    already on the device."""
    import torch
    from torch import nn
    from torch.nn import functional

    torch.manual_seed(0)
    if workload == "mlp":
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, CLASSES))
        loss_fn = functional.cross_entropy
    elif workload == "cnn":
        model = _torch_cnn()
        loss_fn = functional.cross_entropy
    elif workload == "transformer":
        model = _torch_lm()
        loss_fn = lm_loss_torch
    else:
        raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    inputs, targets = numpy_batches(workload, steps)
    batches = [
        (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        for x, y in zip(inputs, targets, strict=True)
    ]
    return TorchWorkload(model, optimizer, batches, loss_fn)


def lm_loss_torch(logits: Any, targets: Any) -> Any:
    """Mean next-token cross-entropy over every position."""
    from torch.nn import functional

    return functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _torch_cnn() -> Any:
    from torch import nn

    def block(cin: int, cout: int) -> list[Any]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, CHANNELS[0]), nn.MaxPool2d(2),
        *block(CHANNELS[0], CHANNELS[1]), nn.MaxPool2d(2),
        *block(CHANNELS[1], CHANNELS[2]),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(CHANNELS[2], CLASSES),
    )


def _torch_lm() -> Any:
    """The torch LM (classes built here so this module imports without torch)."""
    import torch
    from torch import nn
    from torch.nn import functional

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(D_MODEL), nn.LayerNorm(D_MODEL)
            self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
            self.proj = nn.Linear(D_MODEL, D_MODEL)
            self.mlp = nn.Sequential(
                nn.Linear(D_MODEL, 4 * D_MODEL), nn.GELU(), nn.Linear(4 * D_MODEL, D_MODEL)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(D_MODEL, dim=-1)
            q, k, v = (z.view(b, t, HEADS, D_MODEL // HEADS).transpose(1, 2) for z in (q, k, v))
            attended = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(attended.transpose(1, 2).reshape(b, t, D_MODEL))
            return x + self.mlp(self.ln2(x))

    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(VOCAB, D_MODEL)
            self.position = nn.Parameter(torch.randn(SEQ, D_MODEL) * 0.02)
            self.blocks = nn.Sequential(*(Block() for _ in range(LAYERS)))
            self.ln = nn.LayerNorm(D_MODEL)
            self.head = nn.Linear(D_MODEL, VOCAB)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            x = self.embed(tokens) + self.position[: tokens.shape[1]]
            return self.head(self.ln(self.blocks(x)))

    return LM()


# ----------------------------------------------------------------------------- JAX


@dataclass
class JaxWorkload:
    """A JAX model: ``params``, ``model_state`` (BatchNorm statistics, else None), the
    loss in lrfind_jax's form and the stacked batches on the default device.

    ``loss_fn(params, batch) -> loss`` when ``model_state`` is None, else
    ``loss_fn(params, model_state, batch, key) -> (loss, new_model_state)``.
    """

    params: Any
    model_state: Any
    loss_fn: Any
    data: tuple[Any, Any]


def jax_workload(workload: str, steps: int) -> JaxWorkload:
    """The ``workload`` in flax.linen, initialised from ``jax.random.key(0)``."""
    import jax
    import jax.numpy as jnp
    import optax

    inputs, targets = numpy_batches(workload, steps)
    key = jax.random.key(0)
    if workload == "mlp":
        module = _linen_classes()["mlp"]()
        params = module.init(key, jnp.zeros((1, 784)))["params"]

        def mlp_loss(params: Any, batch: Any) -> Any:
            logits = module.apply({"params": params}, batch[0])
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

        data = (jnp.asarray(inputs), jnp.asarray(targets, jnp.int32))
        return JaxWorkload(params, None, mlp_loss, data)
    if workload == "cnn":
        module = _linen_classes()["cnn"]()
        variables = module.init(key, jnp.zeros((1, 32, 32, 3)), train=False)

        def cnn_loss(params: Any, state: Any, batch: Any, key: Any) -> tuple[Any, Any]:
            del key
            logits, updates = module.apply(
                {"params": params, **state}, batch[0], train=True, mutable=["batch_stats"]
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()
            return loss, {"batch_stats": updates["batch_stats"]}

        data = (jnp.asarray(inputs.transpose(0, 1, 3, 4, 2)), jnp.asarray(targets, jnp.int32))
        state = {"batch_stats": variables["batch_stats"]}
        return JaxWorkload(variables["params"], state, cnn_loss, data)
    if workload == "transformer":
        module = _linen_classes()["transformer"]()
        params = module.init(key, jnp.zeros((1, SEQ), jnp.int32))["params"]

        def lm_loss(params: Any, batch: Any) -> Any:
            logits = module.apply({"params": params}, batch[0])
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

        data = (jnp.asarray(inputs, jnp.int32), jnp.asarray(targets, jnp.int32))
        return JaxWorkload(params, None, lm_loss, data)
    raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")


def _linen_classes() -> dict[str, type]:
    """The linen modules (built lazily so this module imports without flax)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            return nn.Dense(CLASSES)(nn.relu(nn.Dense(256)(x)))

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x: Any, train: bool) -> Any:
            for index, features in enumerate(CHANNELS):
                x = nn.Conv(features, (3, 3), padding=1)(x)
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
                x = nn.relu(x)
                if index < 2:
                    x = nn.max_pool(x, (2, 2), strides=(2, 2))
            return nn.Dense(CLASSES)(x.mean(axis=(1, 2)))

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            b, t, _ = x.shape
            q, k, v = jnp.split(nn.Dense(3 * D_MODEL)(nn.LayerNorm()(x)), 3, axis=-1)
            q, k, v = (z.reshape(b, t, HEADS, D_MODEL // HEADS) for z in (q, k, v))
            attended = jax.nn.dot_product_attention(q, k, v, is_causal=True)
            x = x + nn.Dense(D_MODEL)(attended.reshape(b, t, D_MODEL))
            hidden = nn.gelu(nn.Dense(4 * D_MODEL)(nn.LayerNorm()(x)), approximate=False)
            return x + nn.Dense(D_MODEL)(hidden)

    class LM(nn.Module):
        @nn.compact
        def __call__(self, tokens: Any) -> Any:
            position = self.param("position", nn.initializers.normal(0.02), (SEQ, D_MODEL))
            x = nn.Embed(VOCAB, D_MODEL)(tokens) + position[: tokens.shape[1]]
            for _ in range(LAYERS):
                x = Block()(x)
            return nn.Dense(VOCAB)(nn.LayerNorm()(x))

    return {"mlp": MLP, "cnn": CNN, "transformer": LM}
