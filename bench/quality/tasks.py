"""The benchmark's training tasks: synthetic, bundled or stdlib-text data, no download.

Each task is a :class:`~quality.task_base.Task`: a model factory ``model(seed)``, an
optimizer factory ``optimizer(params, lr)``, a train loader factory
``train_loader(seed)``, the validation tensors, the loss function and its own
step budget. The data of a task is fixed (its own data seed); the case seed sets
the model's initial weights and the data order.

This module holds the first eight tasks (300 steps each) and :data:`TASKS`, the
registry; the small-data and long-budget tabular tasks live in
:mod:`quality.tasks_tabular`, the fine-tunes of a pretrained byte transformer in
:mod:`quality.tasks_finetune`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import torch
from torch import nn

from quality import tasks_finetune, tasks_tabular
from quality.task_base import (
    BATCH_SIZE,
    Split,
    Task,
    adam,
    adamw,
    cross_entropy,
    make_task,
    mlp,
    mse,
    sgd_momentum,
    split,
)

__all__ = ["BATCH_SIZE", "TASKS", "Task", "get_task"]


# -- data -----------------------------------------------------------------------------------


@cache
def blobs_data() -> Split:
    """10 overlapping Gaussian classes in 20-D: 6,000 train and 2,000 validation points.

    Class means are standard normal draws times 0.5 and points have unit noise, so
    the classes overlap: multinomial logistic regression reaches a validation loss
    of about 0.70 (75% accuracy), and no model gets near 0.
    """
    rng = np.random.default_rng(1234)
    means = 0.5 * rng.standard_normal((10, 20))
    labels = rng.integers(0, 10, 8000)
    points = means[labels] + rng.standard_normal((8000, 20))
    return split(points.astype(np.float32), labels.astype(np.int64), 6000)


@cache
def teacher_data() -> Split:
    """y = teacher(x) + noise: a random 16-32-1 tanh teacher, x ~ N(0, I_16), noise sd 0.3.

    6,000 train and 2,000 validation points; the teacher's output is scaled to unit
    variance, so the noise floor of the MSE is 0.09.
    """
    rng = np.random.default_rng(4321)
    x = rng.standard_normal((8000, 16))
    w1 = rng.standard_normal((16, 32)) / 4.0
    w2 = rng.standard_normal((32, 1)) / np.sqrt(32)
    clean = np.tanh(x @ w1 + 0.5 * rng.standard_normal(32)) @ w2
    clean = (clean - clean.mean()) / clean.std()
    y = clean + 0.3 * rng.standard_normal((8000, 1))
    return split(x.astype(np.float32), y.astype(np.float32), 6000)


@cache
def digits_data() -> Split:
    """scikit-learn's bundled digits as (N, 1, 8, 8) in [0, 1]: 1,347 train, 450 validation."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    x_train, x_val, y_train, y_val = train_test_split(
        images, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    return (
        torch.from_numpy(x_train),
        torch.from_numpy(y_train.astype(np.int64)),
        torch.from_numpy(x_val),
        torch.from_numpy(y_val.astype(np.int64)),
    )


SEQ_VOCAB, SEQ_LENGTH, SEQ_CLASSES = 8, 12, 4


@cache
def sequence_data() -> Split:
    """Token sequences (vocab 8, length 12); the label is the most frequent ``token % 4``.

    Ties go to the smallest class; then 10% of the labels are redrawn uniformly, so
    the best reachable loss stays well above 0 (a loss near 0 would make every
    regret ratio explode). 6,000 train and 2,000 validation sequences.
    """
    rng = np.random.default_rng(2468)
    tokens = rng.integers(0, SEQ_VOCAB, (8000, SEQ_LENGTH))
    counts = np.stack([(tokens % SEQ_CLASSES == c).sum(axis=1) for c in range(SEQ_CLASSES)], 1)
    labels = counts.argmax(axis=1)
    noisy = rng.random(8000) < 0.1
    labels[noisy] = rng.integers(0, SEQ_CLASSES, int(noisy.sum()))
    return split(tokens.astype(np.int64), labels.astype(np.int64), 6000)


# -- models ---------------------------------------------------------------------------------



def small_cnn() -> nn.Module:
    """``lrfind_torch.demo.small_cnn`` at half width (8 and 16 channels, to keep a CPU step
    near 1 ms): two conv+BatchNorm blocks, pooling, dropout, linear head."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(16 * 4 * 4, 10),
    )


class GRUClassifier(nn.Module):
    """Embedding (16) -> one GRU layer (hidden 64) -> linear head on the last state."""

    def __init__(self, vocab: int = SEQ_VOCAB, classes: int = SEQ_CLASSES) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.gru = nn.GRU(16, 64, batch_first=True)
        self.head = nn.Linear(64, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(self.embed(tokens))
        return self.head(last[-1])


class TinyTransformer(nn.Module):
    """Token + learned position embeddings (32), one encoder layer (2 heads, FF 64),
    mean pooling, linear head."""

    def __init__(
        self, vocab: int = SEQ_VOCAB, length: int = SEQ_LENGTH, classes: int = SEQ_CLASSES
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 32)
        self.position = nn.Parameter(0.02 * torch.randn(length, 32))
        self.encoder = nn.TransformerEncoderLayer(
            32, 2, dim_feedforward=64, dropout=0.0, batch_first=True
        )
        self.head = nn.Linear(32, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embed(tokens) + self.position)
        return self.head(hidden.mean(dim=1))



# -- the task list --------------------------------------------------------------------------



SEQUENCES = "majority of token%4 over 12 tokens, 10% of labels redrawn"


def blobs_mlp_adam() -> Task:
    """10-class Gaussian blobs in 20-D, MLP 20-64-64-10, Adam, cross-entropy."""
    return make_task(
        "blobs_mlp_adam", blobs_data, lambda: mlp((20, 64, 64, 10)), adam, cross_entropy,
        "10 Gaussian blobs in 20-D, MLP 20-64-64-10, Adam, CE",
    )


def blobs_mlp_sgd() -> Task:
    """As ``blobs_mlp_adam`` with SGD, momentum 0.9."""
    return make_task(
        "blobs_mlp_sgd", blobs_data, lambda: mlp((20, 64, 64, 10)), sgd_momentum,
        cross_entropy, "10 Gaussian blobs in 20-D, MLP 20-64-64-10, SGD m=0.9, CE",
    )


def teacher_regression_adam() -> Task:
    """Teacher-student regression in 16-D, student MLP 16-64-64-1, Adam, MSE."""
    return make_task(
        "teacher_regression_adam", teacher_data, lambda: mlp((16, 64, 64, 1)), adam, mse,
        "teacher MLP + noise in 16-D, student MLP 16-64-64-1, Adam, MSE",
    )


def teacher_regression_sgd() -> Task:
    """As ``teacher_regression_adam`` with SGD, momentum 0.9."""
    return make_task(
        "teacher_regression_sgd", teacher_data, lambda: mlp((16, 64, 64, 1)), sgd_momentum,
        mse, "teacher MLP + noise in 16-D, student MLP 16-64-64-1, SGD m=0.9, MSE",
    )


def digits_cnn_sgd() -> Task:
    """sklearn digits, small CNN with BatchNorm and dropout, SGD momentum 0.9."""
    return make_task(
        "digits_cnn_sgd", digits_data, small_cnn, sgd_momentum, cross_entropy,
        "sklearn digits 8x8, CNN (8, 16 ch) with BatchNorm + dropout, SGD m=0.9, CE",
        step_ms=1.2,
    )


def digits_cnn_adam() -> Task:
    """As ``digits_cnn_sgd`` with AdamW (weight decay 1e-2)."""
    return make_task(
        "digits_cnn_adam", digits_data, small_cnn, adamw, cross_entropy,
        "sklearn digits 8x8, CNN (8, 16 ch) with BatchNorm + dropout, AdamW wd=1e-2, CE",
        step_ms=1.3,
    )


def sequence_gru_adam() -> Task:
    """Majority-class tokens (vocab 8, length 12), embedding + GRU(64) + head, Adam."""
    return make_task(
        "sequence_gru_adam", sequence_data, GRUClassifier, adam, cross_entropy,
        f"{SEQUENCES}; embedding + GRU(64) + head, Adam, CE",
        step_ms=2.2,
    )


def sequence_transformer_adamw() -> Task:
    """The same sequences, a one-layer transformer encoder, AdamW."""
    return make_task(
        "sequence_transformer_adamw", sequence_data, TinyTransformer, adamw, cross_entropy,
        f"{SEQUENCES}; 1-layer transformer (d=32, 2 heads), AdamW, CE",
        step_ms=1.8,
    )


TASKS: dict[str, Callable[[], Task]] = {
    "blobs_mlp_adam": blobs_mlp_adam,
    "blobs_mlp_sgd": blobs_mlp_sgd,
    "teacher_regression_adam": teacher_regression_adam,
    "teacher_regression_sgd": teacher_regression_sgd,
    "digits_cnn_sgd": digits_cnn_sgd,
    "digits_cnn_adam": digits_cnn_adam,
    "sequence_gru_adam": sequence_gru_adam,
    "sequence_transformer_adamw": sequence_transformer_adamw,
    "cancer_small_mlp_adam": tasks_tabular.cancer_small_mlp_adam,
    "diabetes_small_mlp_sgd": tasks_tabular.diabetes_small_mlp_sgd,
    "digits_small_mlp_sgd": tasks_tabular.digits_small_mlp_sgd,
    "tabular_long_mlp_adamw": tasks_tabular.tabular_long_mlp_adamw,
    "friedman_long_mlp_sgd": tasks_tabular.friedman_long_mlp_sgd,
    "prose_finetune_lm_adamw": tasks_finetune.prose_finetune_lm_adamw,
    "syntax_finetune_cls_adamw": tasks_finetune.syntax_finetune_cls_adamw,
}
"""Every task by name, in report order."""


@cache
def get_task(name: str) -> Task:
    """The task called ``name`` (built once per process)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]()
