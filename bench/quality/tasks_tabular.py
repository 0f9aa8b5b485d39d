"""Tabular tasks: small noisy data where overfitting decides, and long budgets.

Small data: a few hundred training rows of a scikit-learn bundled set with noisy
labels (or its own noisy targets), an over-parameterised MLP with dropout; the
validation rows carry the same label noise, so no loss gets near 0. Trained to
the end of the budget, a too-high LR memorises the noise and the validation loss
climbs back up, often past the untrained model's.

Long budgets: generated tabular data (``make_classification``, ``make_friedman1``)
and an MLP with dropout for 2,200 and 3,000 steps.

Features are standardised with the training rows' mean and deviation.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from quality.task_base import (
    Split,
    Task,
    adam,
    adamw,
    cross_entropy,
    make_task,
    mlp,
    mse,
    relabeled,
    sgd_momentum,
    split,
)


def _standardized(features: np.ndarray, train: int) -> np.ndarray:
    """``features`` scaled by the first ``train`` rows' mean and deviation, float32."""
    mean, deviation = features[:train].mean(axis=0), features[:train].std(axis=0)
    return ((features - mean) / deviation).astype(np.float32)


# -- small data -----------------------------------------------------------------------------

CANCER_TRAIN, CANCER_FLIP = 300, 0.15


@cache
def cancer_data() -> Split:
    """Breast cancer (sklearn, 30 features): 300 train and 269 validation rows, shuffled;
    15% of all labels flipped."""
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(5151)
    order = rng.permutation(len(labels))
    features, labels = features[order], relabeled(labels[order], 2, CANCER_FLIP, rng)
    return split(_standardized(features, CANCER_TRAIN), labels, CANCER_TRAIN)


DIABETES_TRAIN = 300


@cache
def diabetes_data() -> Split:
    """Diabetes progression (sklearn, 10 features, 442 patients): 300 train, 142 validation
    rows, shuffled; the target standardised (its own noise leaves an MSE near 0.5)."""
    from sklearn.datasets import load_diabetes

    features, target = load_diabetes(return_X_y=True)
    order = np.random.default_rng(5252).permutation(len(target))
    features, target = features[order], target[order, None]
    return split(
        _standardized(features, DIABETES_TRAIN),
        _standardized(target, DIABETES_TRAIN),
        DIABETES_TRAIN,
    )


DIGITS_SMALL_TRAIN, DIGITS_SMALL_VAL, DIGITS_FLIP = 320, 600, 0.2


@cache
def digits_small_data() -> Split:
    """sklearn digits as 64 pixel features in [0, 1]: 320 train and 600 validation images,
    shuffled; 20% of all labels moved to another digit."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(5353)
    order = rng.permutation(len(digits.target))[: DIGITS_SMALL_TRAIN + DIGITS_SMALL_VAL]
    pixels = (digits.data[order] / 16.0).astype(np.float32)
    labels = relabeled(digits.target[order], 10, DIGITS_FLIP, rng)
    return split(pixels, labels, DIGITS_SMALL_TRAIN)


def cancer_small_mlp_adam() -> Task:
    """300 noisy breast-cancer rows, MLP 30-256-256-2 with dropout 0.3, Adam, 200 steps."""
    return make_task(
        "cancer_small_mlp_adam", cancer_data, lambda: mlp((30, 256, 256, 2), dropout=0.3),
        adam, cross_entropy,
        "sklearn breast cancer, 300 train rows, 15% labels flipped; "
        "MLP 30-256-256-2 + dropout 0.3, Adam, CE",
        step_ms=1.7, budget=200,
    )


def diabetes_small_mlp_sgd() -> Task:
    """300 diabetes rows, MLP 10-512-512-1 with dropout 0.2, SGD momentum, 400 steps."""
    return make_task(
        "diabetes_small_mlp_sgd", diabetes_data, lambda: mlp((10, 512, 512, 1), dropout=0.2),
        sgd_momentum, mse,
        "sklearn diabetes, 300 train rows, standardised target; "
        "MLP 10-512-512-1 + dropout 0.2, SGD m=0.9, MSE",
        step_ms=2.8, budget=400,
    )


def digits_small_mlp_sgd() -> Task:
    """320 digits with 20% wrong labels, MLP 64-512-512-10, SGD momentum, 400 steps."""
    return make_task(
        "digits_small_mlp_sgd", digits_small_data, lambda: mlp((64, 512, 512, 10)),
        sgd_momentum, cross_entropy,
        "sklearn digits as 64 features, 320 train images, 20% labels wrong; "
        "MLP 64-512-512-10, SGD m=0.9, CE",
        step_ms=2.2, budget=400,
    )


# -- long budgets ---------------------------------------------------------------------------

TABULAR_TRAIN = 5000


@cache
def tabular_data() -> Split:
    """``make_classification``: 4 classes, 40 features (10 informative, 10 redundant),
    10% of labels random; 5,000 train and 3,000 validation rows."""
    from sklearn.datasets import make_classification

    features, labels = make_classification(
        n_samples=8000, n_features=40, n_informative=10, n_redundant=10, n_classes=4,
        n_clusters_per_class=2, flip_y=0.1, class_sep=1.0, random_state=5454,
    )
    return split(_standardized(features, TABULAR_TRAIN), labels.astype(np.int64), TABULAR_TRAIN)


FRIEDMAN_TRAIN = 4000


@cache
def friedman_data() -> Split:
    """``make_friedman1`` (10 features, 5 used), noise sd 2.5; 4,000 train, 2,000 validation
    rows; the target standardised (the noise alone is an MSE of about 0.2)."""
    from sklearn.datasets import make_friedman1

    features, target = make_friedman1(n_samples=6000, n_features=10, noise=2.5,
                                      random_state=5555)
    return split(
        _standardized(features, FRIEDMAN_TRAIN),
        _standardized(target[:, None], FRIEDMAN_TRAIN),
        FRIEDMAN_TRAIN,
    )


def tabular_long_mlp_adamw() -> Task:
    """Generated 4-class tabular data, MLP 40-256-256-4 with dropout 0.2, AdamW, 2,200 steps."""
    return make_task(
        "tabular_long_mlp_adamw", tabular_data, lambda: mlp((40, 256, 256, 4), dropout=0.2),
        adamw, cross_entropy,
        "make_classification 4 classes, 40 features, 10% labels random, 5,000 train rows; "
        "MLP 40-256-256-4 + dropout 0.2, AdamW wd=1e-2, CE",
        step_ms=1.6, budget=2200,
    )


def friedman_long_mlp_sgd() -> Task:
    """Friedman #1 regression, MLP 10-128-128-1 with dropout 0.1, SGD momentum, 3,000 steps."""
    return make_task(
        "friedman_long_mlp_sgd", friedman_data, lambda: mlp((10, 128, 128, 1), dropout=0.1),
        sgd_momentum, mse,
        "make_friedman1, noise sd 2.5, 4,000 train rows, standardised target; "
        "MLP 10-128-128-1 + dropout 0.1, SGD m=0.9, MSE",
        step_ms=0.8, budget=3000,
    )
