"""The parity registry: the same models and optimizers in torch and in Flax nnx.

A :class:`ModelPair` builds a torch module, a Flax nnx module carrying the very
same weights (converted from the torch one), and data in each framework's layout.
An :class:`OptimizerPair` builds a torch optimizer from param groups and the optax
transformation that performs the same update. :func:`run_torch` and
:func:`run_jax` sweep one :class:`Case` with ``lrfind_torch.lr_find`` and
``lrfind_jax.lr_find_nnx``; :mod:`parity_checks` compares the two results.

Adding a model: write the two modules, a ``convert(torch_module, flax_module)``
that copies the weights, and register a ``ModelPair``. Adding an optimizer:
register an ``OptimizerPair``. Every differing default is set explicitly on both
sides (see ``docs/parity.md``), so nothing depends on a framework's defaults.

The optax transformations are built once per (optimizer, base LRs) and cached,
and the nnx loss is a module-level function: a second seed of the same case reuses
the compiled sweep.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F
from flax import nnx

from lrfind_core import LRFindResult, Settings
from lrfind_jax import JaxOptions, lr_find_nnx
from lrfind_torch import TorchOptions
from lrfind_torch import lr_find as torch_lr_find

BATCH = 16
NUM_CLASSES = 4

# ---------------------------------------------------------------- weight conversion


def _set(variable: Any, value: torch.Tensor | np.ndarray) -> None:
    """Copy ``value`` into an nnx Variable, checking the shape (a silent broadcast
    would hide a wrong layout)."""
    array = value.detach().numpy() if isinstance(value, torch.Tensor) else value
    if tuple(array.shape) != tuple(variable[...].shape):
        raise ValueError(f"shape {tuple(array.shape)} does not fit {variable[...].shape}")
    variable[...] = jnp.asarray(np.array(array, dtype=np.float32))


def linear_to_flax(source: torch.nn.Linear, target: nnx.Linear) -> None:
    """torch ``weight (out, in)`` is ``x @ W.T``; Flax ``kernel (in, out)`` is ``x @ K``."""
    _set(target.kernel, source.weight.T)
    _set(target.bias, source.bias)


def conv_to_flax(source: torch.nn.Conv2d, target: nnx.Conv) -> None:
    """torch ``weight`` is ``OIHW`` (on NCHW inputs), Flax ``kernel`` is ``HWIO`` (on NHWC)."""
    _set(target.kernel, source.weight.permute(2, 3, 1, 0))
    if source.bias is not None:
        _set(target.bias, source.bias)


def flattened_linear_to_flax(
    source: torch.nn.Linear, target: nnx.Linear, chw: tuple[int, int, int]
) -> None:
    """The first Linear after a flatten: torch flattens ``C,H,W``, Flax (NHWC) ``H,W,C``,
    so the input rows of the kernel are permuted."""
    channels, height, width = chw
    weight = source.weight.detach().reshape(-1, channels, height, width)
    _set(target.kernel, weight.permute(2, 3, 1, 0).reshape(height * width * channels, -1))
    _set(target.bias, source.bias)


def norm_to_flax(source: torch.nn.Module, target: nnx.Module) -> None:
    """LayerNorm / BatchNorm affine parameters (``weight`` is Flax's ``scale``), and
    BatchNorm's running statistics."""
    _set(target.scale, source.weight)
    _set(target.bias, source.bias)
    if isinstance(source, torch.nn.modules.batchnorm._BatchNorm):
        _set(target.mean, source.running_mean)
        _set(target.var, source.running_var)


def attention_to_flax(source: torch.nn.MultiheadAttention, target: nnx.MultiHeadAttention) -> None:
    """torch packs q, k, v in ``in_proj_weight (3E, E)``; Flax has one ``LinearGeneral``
    each, kernel ``(E, heads, head_dim)``, and the output kernel ``(heads, head_dim, E)``.
    torch gives head ``h`` the features ``h*head_dim:(h+1)*head_dim``: a plain reshape."""
    embed, heads = source.embed_dim, source.num_heads
    head_dim = embed // heads
    weights = source.in_proj_weight.detach().split(embed)
    projections = (target.query, target.key, target.value)
    for projection, weight in zip(projections, weights, strict=True):
        _set(projection.kernel, weight.T.reshape(embed, heads, head_dim))
    _set(target.out.kernel, source.out_proj.weight.detach().T.reshape(heads, head_dim, embed))
    if source.in_proj_bias is not None:
        for projection, bias in zip(projections, source.in_proj_bias.detach().split(embed),
                                    strict=True):
            _set(projection.bias, bias.reshape(heads, head_dim))
        _set(target.out.bias, source.out_proj.bias)


# ------------------------------------------------------------------------- models


def _teacher_labels(features: np.ndarray, seed: int) -> np.ndarray:
    """Labels of a fixed random linear teacher: a learnable task."""
    teacher = np.random.default_rng(1000 + seed).normal(size=(features.shape[-1], NUM_CLASSES))
    return (features @ teacher).argmax(-1).astype(np.int32)


# MLP: 16 -> 32 -> 32 -> 4, relu. Not tanh: a saturated tanh's derivative 1 - tanh^2 is
# float32 rounding noise, which differs between torch's and XLA's tanh, and Adam scales
# any gradient, noise included, to a step of size lr ("mlp_tanh" in LIMIT_MODELS).
MLP_IN, MLP_HIDDEN = 16, 32


class TorchMLP(torch.nn.Module):
    def __init__(self, tanh: bool = False) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(MLP_IN, MLP_HIDDEN)
        self.fc2 = torch.nn.Linear(MLP_HIDDEN, MLP_HIDDEN)
        self.head = torch.nn.Linear(MLP_HIDDEN, NUM_CLASSES)
        self.activation = torch.tanh if tanh else F.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.activation(self.fc2(self.activation(self.fc1(x)))))


class FlaxMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, tanh: bool = False) -> None:
        self.fc1 = nnx.Linear(MLP_IN, MLP_HIDDEN, rngs=rngs)
        self.fc2 = nnx.Linear(MLP_HIDDEN, MLP_HIDDEN, rngs=rngs)
        self.head = nnx.Linear(MLP_HIDDEN, NUM_CLASSES, rngs=rngs)
        self.activation = nnx.tanh if tanh else nnx.relu

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.activation(self.fc2(self.activation(self.fc1(x)))))


def convert_mlp(source: TorchMLP, target: FlaxMLP) -> None:
    for name in ("fc1", "fc2", "head"):
        linear_to_flax(getattr(source, name), getattr(target, name))


def mlp_data(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    inputs = np.random.default_rng(seed).normal(size=(count, BATCH, MLP_IN)).astype(np.float32)
    return inputs, _teacher_labels(inputs, seed)


# CNN: 1x8x8 -> conv(8, 3x3, stride 2, pad 1) -> BN -> silu -> conv(16, 3x3, s2, p1) -> BN
# -> silu -> flatten (16x2x2) -> linear 4. BatchNorm runs in train mode (batch statistics).
# SiLU, not ReLU: after BatchNorm, some of the 3072 pre-activations of a step can sit within
# float32 rounding of ReLU's kink, and the two frameworks may round them to different
# sides; the curves then part at that step ("cnn_bn_relu" in LIMIT_MODELS).
# No conv bias, as usual before BatchNorm: BatchNorm cancels it, so its gradient is float32
# noise (~3e-8, 1e-17 in float64), which Adam (eps 1e-8) turns into steps of about lr; the
# bias wanders far from the activations and (x + b) - mean(x + b) loses their precision
# ("cnn_bn_conv_bias").
CNN_SIZE, CNN_C1, CNN_C2 = 8, 8, 16
CNN_FLAT = (CNN_C2, CNN_SIZE // 4, CNN_SIZE // 4)
BN_EPS = 1e-5


class TorchCNN(torch.nn.Module):
    def __init__(self, relu: bool = False, conv_bias: bool = False) -> None:
        super().__init__()
        self.activation = F.relu if relu else F.silu
        self.conv1 = torch.nn.Conv2d(1, CNN_C1, 3, stride=2, padding=1, bias=conv_bias)
        self.bn1 = torch.nn.BatchNorm2d(CNN_C1, eps=BN_EPS, momentum=0.1)
        self.conv2 = torch.nn.Conv2d(CNN_C1, CNN_C2, 3, stride=2, padding=1, bias=conv_bias)
        self.bn2 = torch.nn.BatchNorm2d(CNN_C2, eps=BN_EPS, momentum=0.1)
        self.head = torch.nn.Linear(int(np.prod(CNN_FLAT)), NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.bn1(self.conv1(x)))
        x = self.activation(self.bn2(self.conv2(x)))
        return self.head(x.flatten(1))


def _flax_batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    # torch momentum 0.1 (weight of the new batch) is Flax momentum 0.9 (weight of the
    # old average); Flax's fast variance E[x^2]-E[x]^2 rounds differently from torch's.
    return nnx.BatchNorm(
        features, momentum=0.9, epsilon=BN_EPS, use_fast_variance=False, rngs=rngs
    )


class FlaxCNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, relu: bool = False, conv_bias: bool = False) -> None:
        self.activation = nnx.relu if relu else nnx.silu
        # Explicit padding: 'SAME' with stride 2 on an even size pads (0, 1), not (1, 1).
        pad = ((1, 1), (1, 1))
        conv = functools.partial(
            nnx.Conv, kernel_size=(3, 3), strides=2, padding=pad, use_bias=conv_bias, rngs=rngs
        )
        self.conv1 = conv(1, CNN_C1)
        self.bn1 = _flax_batch_norm(CNN_C1, rngs)
        self.conv2 = conv(CNN_C1, CNN_C2)
        self.bn2 = _flax_batch_norm(CNN_C2, rngs)
        self.head = nnx.Linear(int(np.prod(CNN_FLAT)), NUM_CLASSES, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.activation(self.bn1(self.conv1(x)))
        x = self.activation(self.bn2(self.conv2(x)))
        return self.head(x.reshape(x.shape[0], -1))


def convert_cnn(source: TorchCNN, target: FlaxCNN) -> None:
    conv_to_flax(source.conv1, target.conv1)
    conv_to_flax(source.conv2, target.conv2)
    norm_to_flax(source.bn1, target.bn1)
    norm_to_flax(source.bn2, target.bn2)
    flattened_linear_to_flax(source.head, target.head, CNN_FLAT)


def cnn_data(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """NCHW images (torch's layout); labels from a teacher on the 4x4 average-pooled image."""
    shape = (count, BATCH, 1, CNN_SIZE, CNN_SIZE)
    images = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    pooled = images.reshape(count, BATCH, 4, 2, 4, 2).mean(axis=(3, 5)).reshape(count, BATCH, 16)
    return images, _teacher_labels(pooled, seed)


def nchw_to_nhwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(images, -3, -1))


# Transformer block (pre-LN): tokens 8x8 -> linear 16 -> x + MHA(LN(x)) (4 heads) ->
# x + MLP(LN(x)) (gelu, 32) -> mean over tokens -> linear 4. No final LayerNorm before the
# pooling: with one, Adam's divergence is chaotic in float32 (torch float32 itself departs
# from torch float64 by up to 0.68 in the last steps; "transformer_final_ln").
SEQ, TOKEN_IN, EMBED, HEADS, FFN = 8, 8, 16, 4, 32
LN_EPS = 1e-5


class TorchBlock(torch.nn.Module):
    def __init__(self, final_norm: bool = False) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(TOKEN_IN, EMBED)
        self.norm1 = torch.nn.LayerNorm(EMBED, eps=LN_EPS)
        self.attn = torch.nn.MultiheadAttention(EMBED, HEADS, batch_first=True)
        self.norm2 = torch.nn.LayerNorm(EMBED, eps=LN_EPS)
        self.fc1 = torch.nn.Linear(EMBED, FFN)
        self.fc2 = torch.nn.Linear(FFN, EMBED)
        self.norm3 = torch.nn.LayerNorm(EMBED, eps=LN_EPS) if final_norm else torch.nn.Identity()
        self.head = torch.nn.Linear(EMBED, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        a = self.norm1(h)
        h = h + self.attn(a, a, a, need_weights=False)[0]
        h = h + self.fc2(F.gelu(self.fc1(self.norm2(h)), approximate="none"))
        return self.head(self.norm3(h).mean(1))


def _flax_layer_norm(rngs: nnx.Rngs) -> nnx.LayerNorm:
    # Flax's LayerNorm eps is 1e-6 (torch 1e-5), and its fast variance rounds differently.
    return nnx.LayerNorm(EMBED, epsilon=LN_EPS, use_fast_variance=False, rngs=rngs)


class FlaxBlock(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, final_norm: bool = False) -> None:
        self.embed = nnx.Linear(TOKEN_IN, EMBED, rngs=rngs)
        self.norm1 = _flax_layer_norm(rngs)
        self.attn = nnx.MultiHeadAttention(HEADS, EMBED, decode=False, rngs=rngs)
        self.norm2 = _flax_layer_norm(rngs)
        self.fc1 = nnx.Linear(EMBED, FFN, rngs=rngs)
        self.fc2 = nnx.Linear(FFN, EMBED, rngs=rngs)
        self.norm3 = _flax_layer_norm(rngs) if final_norm else None
        self.head = nnx.Linear(EMBED, NUM_CLASSES, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.embed(x)
        h = h + self.attn(self.norm1(h))
        # nnx.gelu defaults to the tanh approximation; torch's default is the exact erf.
        h = h + self.fc2(nnx.gelu(self.fc1(self.norm2(h)), approximate=False))
        if self.norm3 is not None:
            h = self.norm3(h)
        return self.head(h.mean(1))


def convert_block(source: TorchBlock, target: FlaxBlock) -> None:
    for name in ("embed", "fc1", "fc2", "head"):
        linear_to_flax(getattr(source, name), getattr(target, name))
    for name in ("norm1", "norm2", "norm3"):
        if isinstance(getattr(source, name), torch.nn.LayerNorm):
            norm_to_flax(getattr(source, name), getattr(target, name))
    attention_to_flax(source.attn, target.attn)


def block_data(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    shape = (count, BATCH, SEQ, TOKEN_IN)
    tokens = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    # The class depends on products of tokens (attention helps) and on their mean.
    features = tokens.mean(axis=2) + (tokens[:, :, :-1] * tokens[:, :, 1:]).mean(axis=2)
    return tokens, _teacher_labels(features, seed)


@dataclass(frozen=True)
class ModelPair:
    """One architecture in both frameworks.

    Attributes:
      name: the case name.
      torch_model: builds the torch module (seeded by the caller).
      flax_model: builds the nnx module (its own weights are overwritten).
      convert: ``convert(torch_module, flax_module)`` copies every weight.
      data: ``data(seed, count)``: ``count`` batches in torch's layout, (inputs, labels).
      to_flax_inputs: torch layout to Flax layout (NCHW to NHWC for images).
      head: the attribute holding the head, the second param group in group cases.
    """

    name: str
    torch_model: Callable[[], torch.nn.Module]
    flax_model: Callable[[nnx.Rngs], nnx.Module]
    convert: Callable[[Any, Any], None]
    data: Callable[[int, int], tuple[np.ndarray, np.ndarray]]
    to_flax_inputs: Callable[[np.ndarray], np.ndarray] = lambda inputs: inputs
    head: str = "head"

    def build(self, seed: int) -> tuple[torch.nn.Module, nnx.Module]:
        """The torch module initialised from ``seed`` and its nnx copy."""
        torch.manual_seed(seed)
        source = self.torch_model()
        target = self.flax_model(nnx.Rngs(0))
        self.convert(source, target)
        return source, target


MODELS: dict[str, ModelPair] = {
    pair.name: pair
    for pair in (
        ModelPair("mlp", TorchMLP, FlaxMLP, convert_mlp, mlp_data),
        ModelPair("cnn_bn", TorchCNN, FlaxCNN, convert_cnn, cnn_data, nchw_to_nhwc),
        ModelPair("transformer", TorchBlock, FlaxBlock, convert_block, block_data),
    )
}

LIMIT_MODELS: dict[str, ModelPair] = {
    pair.name: pair
    for pair in (
        ModelPair(
            "mlp_tanh", functools.partial(TorchMLP, tanh=True),
            functools.partial(FlaxMLP, tanh=True), convert_mlp, mlp_data,
        ),
        ModelPair(
            "cnn_bn_relu", functools.partial(TorchCNN, relu=True),
            functools.partial(FlaxCNN, relu=True), convert_cnn, cnn_data, nchw_to_nhwc,
        ),
        ModelPair(
            "cnn_bn_conv_bias", functools.partial(TorchCNN, conv_bias=True),
            functools.partial(FlaxCNN, conv_bias=True), convert_cnn, cnn_data, nchw_to_nhwc,
        ),
        ModelPair(
            "transformer_final_ln", functools.partial(TorchBlock, final_norm=True),
            functools.partial(FlaxBlock, final_norm=True), convert_block, block_data,
        ),
    )
}
"""Variants that are *not* in the suite: each shows a float32 conditioning problem that
no two implementations can agree through (``measure_parity.py --limits``)."""

# --------------------------------------------------------------------- optimizers

ADAMW_WEIGHT_DECAY = 0.05  # torch AdamW defaults to 0.01, optax.adamw to 1e-4: set both
ADAM_SETTINGS = {"b1": 0.9, "b2": 0.999, "eps": 1e-8}
STATIC = ("b1", "b2", "eps", "momentum", "nesterov", "weight_decay")
"""Hyperparameters kept as Python floats in optax (``static_args``), as they are in torch;
only the learning rate is injected, which lrfind sets every step."""


def _injected(factory: Callable[..., Any], **settings: Any) -> Callable[[float], Any]:
    static = tuple(name for name in settings if name in STATIC)
    return lambda lr: optax.inject_hyperparams(factory, static_args=static)(
        learning_rate=lr, **settings
    )


def torch_bias_correction(decay: float, count: jax.Array) -> jax.Array:
    """``1 - decay**count`` to float32 precision, as torch gets it (it computes it in
    float64 on the host): ``-expm1(count * log1p(-(1 - decay)))``.

    optax computes ``1 - decay**count`` in float32, where 0.999 rounds to 0.99900001
    and the subtraction cancels: for ``decay=0.999`` it is 0.66e-5 to 1.95e-5 too small
    at each of the first 32 steps, so every Adam step is ~1e-5 larger than torch's, always
    in the same direction. Over a sweep whose LR grows 1.68x per step, the mlp's losses
    then part by up to 2e-4 before the last 5 steps (docs/parity.md).
    """
    return -jnp.expm1(count.astype(jnp.float32) * jnp.log1p(jnp.float32(-(1.0 - decay))))


def scale_by_adam_torch(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """``optax.scale_by_adam`` (eps_root 0, no nesterov) with :func:`torch_bias_correction`;
    the same moments and the same operations otherwise."""

    def init(params: Any) -> optax.ScaleByAdamState:
        return optax.ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=optax.tree.zeros_like(params),
            nu=optax.tree.zeros_like(params),
        )

    def update(updates: Any, state: optax.ScaleByAdamState, params: Any = None) -> Any:
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        first, second = torch_bias_correction(b1, count), torch_bias_correction(b2, count)
        steps = jax.tree.map(lambda m, v: (m / first) / (jnp.sqrt(v / second) + eps), mu, nu)
        return steps, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def adam_torch(learning_rate: Any, b1: float, b2: float, eps: float) -> Any:
    """``optax.adam`` with torch's bias correction."""
    return optax.chain(
        scale_by_adam_torch(b1, b2, eps), optax.scale_by_learning_rate(learning_rate)
    )


def adamw_torch(
    learning_rate: Any, b1: float, b2: float, eps: float, weight_decay: float
) -> Any:
    """``optax.adamw`` (Adam, then ``+ weight_decay * params``, then ``* -lr``) with
    torch's bias correction."""
    return optax.chain(
        scale_by_adam_torch(b1, b2, eps),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )


@dataclass(frozen=True)
class OptimizerPair:
    """One update rule in both frameworks.

    Attributes:
      name: the case name.
      torch: ``torch(param_groups) -> Optimizer``; each group dict carries its ``lr``.
      optax: ``optax(lr) -> GradientTransformation`` with the learning rate injected
        (``optax.inject_hyperparams``) and every other hyperparameter set explicitly.
    """

    name: str
    torch: Callable[[list[dict[str, Any]]], torch.optim.Optimizer]
    optax: Callable[[float], Any]


OPTIMIZERS: dict[str, OptimizerPair] = {
    pair.name: pair
    for pair in (
        # torch: p -= lr*g. optax.sgd: updates = -lr*g.
        OptimizerPair(
            "sgd",
            lambda groups: torch.optim.SGD(groups, lr=groups[0]["lr"]),
            _injected(optax.sgd, momentum=None, nesterov=False),
        ),
        # torch: b = m*b + (1 - dampening)*g (b = g at the first step), p -= lr*b.
        # optax.trace: b = g + m*b from b = 0, the same numbers with dampening 0.
        OptimizerPair(
            "sgd_momentum",
            lambda groups: torch.optim.SGD(
                groups, lr=groups[0]["lr"], momentum=0.9, dampening=0.0, nesterov=False
            ),
            _injected(optax.sgd, momentum=0.9, nesterov=False),
        ),
        # Both: eps added outside the sqrt of the bias-corrected second moment, no eps
        # inside it (optax eps_root=0), and torch's bias correction (see scale_by_adam_torch).
        OptimizerPair(
            "adam",
            lambda groups: torch.optim.Adam(
                groups, lr=groups[0]["lr"], betas=(0.9, 0.999), eps=1e-8
            ),
            _injected(adam_torch, **ADAM_SETTINGS),
        ),
        # torch: p *= 1 - lr*wd, then the Adam step. optax.adamw: updates =
        # -lr*(adam + wd*p), so its decay is scaled by the injected lr too: the same update.
        OptimizerPair(
            "adamw",
            lambda groups: torch.optim.AdamW(
                groups, lr=groups[0]["lr"], betas=(0.9, 0.999), eps=1e-8,
                weight_decay=ADAMW_WEIGHT_DECAY,
            ),
            _injected(adamw_torch, **ADAM_SETTINGS, weight_decay=ADAMW_WEIGHT_DECAY),
        ),
    )
}

STOCK_OPTIMIZERS: dict[str, OptimizerPair] = {
    pair.name: pair
    for pair in (
        OptimizerPair("optax_adam", OPTIMIZERS["adam"].torch,
                      _injected(optax.adam, **ADAM_SETTINGS)),
        OptimizerPair(
            "optax_adamw", OPTIMIZERS["adamw"].torch,
            _injected(optax.adamw, **ADAM_SETTINGS, weight_decay=ADAMW_WEIGHT_DECAY),
        ),
    )
}
"""torch Adam/AdamW against stock ``optax.adam``/``optax.adamw``: their float32 bias
correction puts every step ~1e-5 (relative) away from torch's."""


def model_pair(name: str) -> ModelPair:
    return MODELS[name] if name in MODELS else LIMIT_MODELS[name]


def optimizer_pair(name: str) -> OptimizerPair:
    return OPTIMIZERS[name] if name in OPTIMIZERS else STOCK_OPTIMIZERS[name]


# Param groups: torch group 0 is the body. lrfind_jax takes the first injected LR in
# jax.tree_util order as the reference, and multi_transform orders its groups by
# label, so the body's label sorts first: both results' lrs are the body's LRs.
BODY, HEAD = "a_body", "b_head"


def head_labels(params: Any) -> Any:
    """``multi_transform`` labels: :data:`HEAD` under the ``head`` submodule, else BODY."""

    def label(path: tuple[Any, ...], _: Any) -> str:
        first = path[0]
        return HEAD if getattr(first, "key", getattr(first, "name", None)) == "head" else BODY

    return jax.tree_util.tree_map_with_path(label, params)


@functools.cache
def optax_transformation(
    optimizer: str, base_lrs: tuple[float, ...], accumulation_steps: int = 1
) -> Any:
    """The optax side: one group, or ``multi_transform`` over (body, head), in
    ``optax.MultiSteps`` when accumulating. Cached, so that every seed of a case
    reuses the compiled sweep."""
    make = optimizer_pair(optimizer).optax
    if len(base_lrs) == 1:
        transformation = make(base_lrs[0])
    else:
        body, head = base_lrs
        transformation = optax.multi_transform({BODY: make(body), HEAD: make(head)}, head_labels)
    if accumulation_steps > 1:
        return optax.MultiSteps(transformation, every_k_schedule=accumulation_steps)
    return transformation


def torch_optimizer(
    optimizer: str, model: torch.nn.Module, base_lrs: tuple[float, ...], head: str
) -> torch.optim.Optimizer:
    """The torch side: one group, or ``[body, head]`` groups with their base LRs."""
    if len(base_lrs) == 1:
        groups = [{"params": list(model.parameters()), "lr": base_lrs[0]}]
    else:
        head_params = list(getattr(model, head).parameters())
        in_head = {id(p) for p in head_params}
        body = [p for p in model.parameters() if id(p) not in in_head]
        groups = [{"params": body, "lr": base_lrs[0]}, {"params": head_params, "lr": base_lrs[1]}]
    return optimizer_pair(optimizer).torch(groups)


# -------------------------------------------------------------------------- cases

SWEEP: dict[str, Any] = {"start_lr": 1e-4, "end_lr": 1e3, "num_steps": 32}
SEARCH: dict[str, Any] = {"start_lr": 1e-4, "end_lr": 1e3, "mode": "search",
                          "training_steps": 30, "budget_steps": 120}
"""A search's keywords: its bracketing sweep is 24 steps of the same range."""
"""Every case's sweep: 7 decades in 32 steps (x1.68 per step). Float32 rounding
differences grow once the LR is unstable, and a fast sweep reaches the stop in fewer
such steps. With 40 steps over the same range, 5 of 120 runs differed by more than
1e-5 before the last 5 steps (worst 7.4e-5) and 5 by more than 1e-3 at the stop step
(worst 0.29); with 32 steps, 3 of 230 (worst 3.2e-5) and 1 (1.1e-3). docs/parity.md."""

SEEDS = (0, 1, 2)
VAL_BATCHES = 4


def nnx_cross_entropy(model: nnx.Module, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    inputs, labels = batch
    return optax.softmax_cross_entropy_with_integer_labels(model(inputs), labels).mean()


def torch_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


@dataclass(frozen=True)
class Case:
    """One parity run: a model, an optimizer, a seed and the sweep options.

    Attributes:
      model, optimizer: keys of :data:`MODELS` and :data:`OPTIMIZERS`.
      seed: seeds the torch initialisation (copied to Flax) and the data.
      base_lrs: one base LR, or (body, head) for two param groups.
      accumulation_steps: torch ``accumulation_steps``; ``optax.MultiSteps`` in JAX.
      preset: the lrfind preset on both sides (None: lrfind's default).
      val_every: record the validation loss over :data:`VAL_BATCHES` batches of their
        own every ``val_every`` steps (eval mode on both sides), or None: the training loss.
      search: run ``mode="search"`` for this schedule (None: a classic sweep), with
        :data:`SEARCH` and the validation batches.
    """

    model: str
    optimizer: str
    seed: int
    base_lrs: tuple[float, ...] = (1e-3,)
    accumulation_steps: int = 1
    preset: str | None = None
    val_every: int | None = None
    search: str | None = None

    @property
    def id(self) -> str:
        parts = [self.model, self.optimizer]
        if len(self.base_lrs) > 1:
            parts.append("groups")
        if self.accumulation_steps > 1:
            parts.append(f"accumulate{self.accumulation_steps}")
        if self.preset is not None:
            parts.append(self.preset)
        if self.val_every is not None:
            parts.append(f"val{self.val_every}")
        if self.search is not None:
            parts.append(f"search_{self.search}")
        return "-".join([*parts, f"seed{self.seed}"])

    @property
    def kind(self) -> str:
        """The id without the seed: the row of the tolerance table."""
        return self.id.rsplit("-seed", 1)[0]

    def sweep(self) -> dict[str, Any]:
        """The sweep's keywords on both sides: the LR range and the settings (JAX gets
        the same accumulation from ``optax.MultiSteps``, and says so in its settings)."""
        if self.search is not None:
            return {**SEARCH, "for_schedule": self.search, "settings": self.settings()}
        return {**SWEEP, "settings": self.settings()}

    def batches(self) -> tuple[np.ndarray, np.ndarray]:
        """Every micro-batch of the sweep, in torch's layout, in the order both use."""
        count = SWEEP["num_steps"] * self.accumulation_steps
        return model_pair(self.model).data(self.seed, count)

    def validation_batches(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The validation batches in torch's layout (other data than the sweep's), or None."""
        if self.val_every is None and self.search is None:
            return None
        return model_pair(self.model).data(1000 + self.seed, VAL_BATCHES)

    def settings(self) -> Settings:
        """Both sides' settings: the preset, the accumulation and the validation."""
        changes: dict[str, Any] = {"accumulation_steps": self.accumulation_steps}
        if self.val_every is not None or self.search is not None:
            changes.update(val_every=self.val_every or 1, val_batches=VAL_BATCHES)
        return Settings.preset_named(self.preset or "lrfind", **changes)


def cases(seeds: tuple[int, ...] = SEEDS) -> dict[str, list[Case]]:
    """The parity suite by group; ``measure_parity.py`` runs it with more seeds."""
    groups = (1e-3, 1e-2)
    return {
        "matrix": [Case(m, o, s) for m in MODELS for o in OPTIMIZERS for s in seeds],
        "param_groups": [Case(m, "adam", s, base_lrs=groups) for m in MODELS for s in seeds],
        "accumulation": [
            Case(model, optimizer, s, accumulation_steps=k)
            for model, optimizer, k in (("mlp", "sgd_momentum", 3), ("cnn_bn", "adam", 2))
            for s in seeds
        ],
        "stock_optax": [
            Case(model, optimizer, s)
            for model, optimizer in (
                ("mlp", "optax_adam"), ("mlp", "optax_adamw"),
                ("cnn_bn", "optax_adam"), ("transformer", "optax_adam"),
            )
            for s in seeds
        ],
        "presets": [
            Case(model, optimizer, s, preset=preset)
            for preset in ("fastai", "torch-lr-finder")
            for model, optimizer in (
                ("mlp", "adam"), ("cnn_bn", "sgd_momentum"), ("transformer", "adamw")
            )
            for s in seeds
        ],
        # Validation points in eval mode. Not cnn_bn: eval mode normalizes with the running
        # variance, which torch updates with the unbiased batch variance and Flax with the
        # biased one (the curves part by 1e-5 before the stop, 1e-2 at it).
        "validation": [
            Case(model, optimizer, s, val_every=2)
            for model, optimizer in (("mlp", "adam"), ("transformer", "adamw"))
            for s in seeds
        ],
        # A search under a constant LR: the same in both frameworks (one-cycle schedules
        # differ by a step between torch and optax, see docs/parity.md).
        "search": [
            Case(model, optimizer, s, search="constant")
            for model, optimizer in (("mlp", "sgd_momentum"), ("mlp", "adam"))
            for s in seeds[:2]
        ],
    }


def run_torch(
    case: Case, dtype: torch.dtype = torch.float32, applied_lrs: list | None = None
) -> LRFindResult:
    """``lrfind_torch.lr_find`` on the case (``dtype=torch.float64``: the reference
    that shows how far float32 rounding alone moves the curve). ``applied_lrs``, if
    given, receives every group's LR at every optimizer step."""
    pair = model_pair(case.model)
    model, _ = pair.build(case.seed)
    model = model.to(dtype)
    optimizer = torch_optimizer(case.optimizer, model, case.base_lrs, pair.head)
    if applied_lrs is not None:
        optimizer.register_step_pre_hook(
            lambda opt, args, kwargs: applied_lrs.append([g["lr"] for g in opt.param_groups])
        )
    inputs, labels = case.batches()
    batches = [
        (torch.from_numpy(x).to(dtype), torch.from_numpy(y.astype(np.int64)))
        for x, y in zip(inputs, labels, strict=True)
    ]
    validation = case.validation_batches()
    val_data = None
    if validation is not None:
        val_data = [
            (torch.from_numpy(x).to(dtype), torch.from_numpy(y.astype(np.int64)))
            for x, y in zip(*validation, strict=True)
        ]
    return torch_lr_find(
        model, optimizer, batches, torch_cross_entropy, val_data=val_data,
        options=TorchOptions(progress=False), **case.sweep(),
    )


def run_jax(case: Case) -> LRFindResult:
    """``lrfind_jax.lr_find_nnx`` on the case, with the converted weights."""
    pair = model_pair(case.model)
    _, model = pair.build(case.seed)
    inputs, labels = case.batches()
    data = (pair.to_flax_inputs(inputs), labels)
    transformation = optax_transformation(
        case.optimizer, case.base_lrs, case.accumulation_steps
    )
    validation = case.validation_batches()
    val_data = None
    if validation is not None:
        val_data = (pair.to_flax_inputs(validation[0]), validation[1])
    # The accumulation is in the transformation (optax.MultiSteps), not in the settings.
    sweep = case.sweep()
    sweep["settings"] = dataclasses.replace(sweep["settings"], accumulation_steps=1)
    return lr_find_nnx(
        model, transformation, data, nnx_cross_entropy, val_data=val_data,
        options=JaxOptions(progress=False), **sweep,
    )


__all__ = [
    "MODELS",
    "OPTIMIZERS",
    "SEARCH",
    "SEEDS",
    "SWEEP",
    "Case",
    "ModelPair",
    "OptimizerPair",
    "cases",
    "optax_transformation",
    "run_jax",
    "run_torch",
    "torch_optimizer",
]
