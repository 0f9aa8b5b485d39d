"""``lrfind demo --backend jax``: the classic sweep and the search on scikit-learn's
bundled digits with a Flax nnx model, then training at each answer.

No download: the 1,797 8x8 digit images ship with scikit-learn, split into training,
validation (what the search scores its candidates on) and test images (what this
demo reports, seen by neither finder). A small nnx CNN with BatchNorm and dropout,
written as Flax's MNIST tutorial writes it (dropout RNGs passed at call time,
``model(x, rngs)``), is swept with :func:`lrfind_jax.lr_find_nnx`, then searched
with ``mode="search"`` for a one-cycle training of ``epochs`` epochs, within one
training's worth of steps; the plots and results are saved; then fresh copies of
the model train with AdamW under optax's one-cycle schedule peaking at the classic
suggestion, at the search's LR and at 3x below and above it, and the test losses
and accuracies are printed side by side. The data, the run and the report are the
torch demo's (:mod:`lrfind_core.digits_demo`); only the model and the training are
Flax's.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lrfind_core.digits_demo import (
    BATCH_SIZE,
    EPOCHS,
    digits_splits,
    missing_demo_needs,
    run_digits_demo,
    search_budget,
)
from lrfind_core.result import LRFindResult
from lrfind_jax.flax_adapters import lr_find_nnx
from lrfind_jax.options import JaxOptions

ADAMW = functools.partial(optax.adamw, weight_decay=1e-2)
"""The optimizer, as a factory ``lr -> GradientTransformation``: lrfind injects
the learning rate itself."""
TRAINING_ADAMW = optax.inject_hyperparams(ADAMW)(learning_rate=0.0)
"""The same optimizer for the trainings, its LR set every step from the one-cycle
schedule, so that every training runs the same compiled step."""


class SmallCNN(nnx.Module):
    """Two 3x3 conv blocks with BatchNorm, max-pooling, dropout and a linear head (the
    torch demo's network, channels last)."""

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(1, 16, kernel_size=(3, 3), rngs=rngs)
        self.norm1 = nnx.BatchNorm(16, rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, kernel_size=(3, 3), rngs=rngs)
        self.norm2 = nnx.BatchNorm(32, rngs=rngs)
        self.dropout = nnx.Dropout(0.2)
        self.linear = nnx.Linear(32 * 4 * 4, 10, rngs=rngs)

    def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        """Logits of ``x`` (``[batch, 8, 8, 1]``); ``rngs`` feeds dropout in training."""
        x = nnx.relu(self.norm1(self.conv1(x)))
        x = nnx.relu(self.norm2(self.conv2(x)))
        x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = self.dropout(x.reshape(x.shape[0], -1), rngs=rngs)
        return self.linear(x)


def loss_fn(model: SmallCNN, batch: dict[str, Any], rngs: nnx.Rngs | None) -> jax.Array:
    """Mean cross-entropy (nats); ``rngs`` feeds dropout (None in eval mode)."""
    logits = model(batch["image"], rngs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()


def stacked_batches(
    images: np.ndarray, labels: np.ndarray, epochs: int, seed: int | None
) -> dict[str, np.ndarray]:
    """``epochs`` passes over the data in full batches of ``BATCH_SIZE``, stacked on a
    leading step axis (``{"image": [steps, BATCH_SIZE, 8, 8, 1], "label": [steps,
    BATCH_SIZE]}``), reshuffled every epoch (in order when ``seed`` is None; the
    last partial batch of an epoch is dropped)."""
    per_epoch = len(images) // BATCH_SIZE
    generator = None if seed is None else np.random.default_rng(seed)
    order = np.concatenate([
        (np.arange(len(images)) if generator is None else generator.permutation(len(images)))
        [: per_epoch * BATCH_SIZE] for _ in range(epochs)
    ])
    return {
        "image": images[order][..., None].reshape(-1, BATCH_SIZE, *images.shape[1:], 1),
        "label": labels[order].astype(np.int32).reshape(-1, BATCH_SIZE),
    }


@nnx.jit
def train_step(
    model: SmallCNN, optimizer: nnx.Optimizer, rngs: nnx.Rngs, batch: Any, lr: jax.Array
) -> None:
    """One AdamW update of ``model`` on ``batch`` at learning rate ``lr``, with fresh
    dropout masks from ``rngs``."""
    optimizer.opt_state.hyperparams["learning_rate"][...] = lr
    grads = nnx.grad(loss_fn)(model, batch, rngs)
    optimizer.update(model, grads)


@nnx.jit
def eval_logits(model: SmallCNN, images: jax.Array) -> jax.Array:
    return model(images, None)


def train_one_cycle(
    model: SmallCNN, data: dict[str, np.ndarray], schedule: optax.Schedule, seed: int
) -> SmallCNN:
    """A trained copy of ``model``: AdamW under ``schedule``, one update per batch of
    ``data``; ``model`` itself is not changed."""
    model = nnx.clone(model)
    model.train()
    optimizer = nnx.Optimizer(model, TRAINING_ADAMW, wrt=nnx.Param)
    rngs = nnx.Rngs(seed)
    lrs = jax.vmap(schedule)(jnp.arange(len(data["label"])))
    for step in range(len(data["label"])):
        batch = {key: value[step] for key, value in data.items()}
        train_step(model, optimizer, rngs, batch, lrs[step])
    model.eval()
    return model


def evaluate(model: SmallCNN, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy (nats) and the fraction of correctly classified images."""
    logits = eval_logits(model, jnp.asarray(images[..., None]))
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return float(loss), float(np.mean(np.asarray(logits.argmax(-1)) == labels))


def main(out_dir: str = "lrfind_demo_out", seed: int = 0, epochs: int = EPOCHS) -> int:
    """Run the demo; write ``lr_find.png``/``.json`` and ``lr_search.png``/``.json``
    into ``out_dir``. ``epochs``: of each training (the search plans for it).

    Returns 2, saying what to install, when scikit-learn (its data) is missing.
    """
    if missing_demo_needs("jax", "'lrfind[jax]' scikit-learn"):
        return 2
    splits = digits_splits(seed)
    train = stacked_batches(*splits["train"], epochs=epochs, seed=seed)
    val = stacked_batches(*splits["val"], epochs=1, seed=None)
    training_steps = len(train["label"])
    model = SmallCNN(rngs=nnx.Rngs(seed))
    rng = jax.random.key(seed)

    def find(search: bool, plot_path: str) -> LRFindResult:
        more = {"mode": "search", "val_data": val, "training_steps": training_steps,
                "budget_steps": search_budget(training_steps)} if search else {}
        return lr_find_nnx(model, ADAMW, train, loss_fn, rng=rng, plot_path=plot_path,
                           options=JaxOptions(progress=False), **more)

    def train_and_test(lr: float) -> tuple[float, float]:
        schedule = optax.cosine_onecycle_schedule(training_steps, lr)
        return evaluate(train_one_cycle(model, train, schedule, seed), *splits["test"])

    return run_digits_demo(find, train_and_test, training_steps, out_dir, epochs)


__all__ = ["SmallCNN", "evaluate", "loss_fn", "main", "stacked_batches", "train_one_cycle"]
