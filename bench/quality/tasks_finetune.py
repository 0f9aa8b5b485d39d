"""Fine-tuning tasks: the byte LM pretrained on stdlib code, adapted to something else.

Both start from :func:`quality.pretrained.pretrained` (2 blocks, width 64, 32-byte
context, pretrained on the stdlib's top-level modules) and train every weight
with AdamW:

* ``prose_finetune_lm_adamw``: next-byte prediction on English reference prose
  (``pydoc_data.topics``) instead of code; 2,048 training windows (about 66 KB,
  so a 200-step run sees each about 6 times), scored on 512 windows of other topics.
  The untrained cap is the pretrained model's prose loss.
* ``syntax_finetune_cls_adamw``: few-shot (360 snippets) classification of
  32-character snippets of unseen stdlib code by the kind of Python token (name,
  operator, number, string, comment, blank) the *next* character belongs to, 10%
  of labels moved to another kind; a new linear head on the last hidden state,
  the pretrained body under it. What comes next is what the pretraining learned;
  too high an LR wipes that out and the few labels cannot replace it.

The seed draws the new head (classifier) and sets the data order; the body's
starting weights are the same for every seed.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from torch import nn

from quality.pretrained import CONFIG, ByteTransformer, lm_loss, pretrained, pretrained_lm
from quality.task_base import Split, Task, adamw, cross_entropy, make_task, relabeled, split
from quality.text import KINDS, package_kinds, prose_topics, windows

CONTEXT = CONFIG.context

# -- prose LM fine-tune ---------------------------------------------------------------------

PROSE_TRAIN_WINDOWS, PROSE_VAL_WINDOWS = 2048, 512


def _prose_split() -> tuple[np.ndarray, np.ndarray]:
    """Every 4th topic (sorted by name) for validation, the others for training, as tokens."""
    topics = prose_topics()
    val = np.concatenate([tokens for index, tokens in enumerate(topics) if index % 4 == 0])
    train = np.concatenate([tokens for index, tokens in enumerate(topics) if index % 4 != 0])
    return train, val


@cache
def prose_data() -> Split:
    """Prose windows of 33 bytes as (32 inputs, 32 next-byte targets): the first 2,048 of
    the training topics, 512 spread evenly over the validation topics."""
    train, val = _prose_split()
    train_rows = windows(train, CONTEXT + 1)[:PROSE_TRAIN_WINDOWS]
    val_rows = windows(val, CONTEXT + 1)
    val_rows = val_rows[np.linspace(0, len(val_rows) - 1, PROSE_VAL_WINDOWS).astype(int)]
    return (
        torch.from_numpy(train_rows[:, :-1]),
        torch.from_numpy(train_rows[:, 1:]),
        torch.from_numpy(val_rows[:, :-1]),
        torch.from_numpy(val_rows[:, 1:]),
    )


def prose_finetune_lm_adamw() -> Task:
    """The code-pretrained byte LM fine-tuned on reference prose, AdamW, 200 steps."""
    return make_task(
        "prose_finetune_lm_adamw", prose_data, pretrained_lm, adamw, lm_loss,
        "byte LM (2 blocks, d=64) pretrained on stdlib code, fine-tuned on 66 KB of "
        "pydoc reference prose; AdamW wd=1e-2, next-byte CE",
        step_ms=32.0, budget=200,
    )


# -- syntax classifier fine-tune ------------------------------------------------------------

SYNTAX_PACKAGES = ("asyncio", "email", "xml")
"""The sources of the snippets: stdlib packages the pretraining never saw."""
CLASSES = KINDS
PER_CLASS_TRAIN, PER_CLASS_VAL, SYNTAX_RELABELED = 60, 150, 0.1
"""Snippets per class for training (few-shot) and validation; share of labels moved."""


def _positions(kinds: np.ndarray, kind: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct snippet ends whose next character is of token kind ``kind``,
    each with a full context before it."""
    found = np.flatnonzero(kinds[CONTEXT:] == kind) + CONTEXT - 1
    return np.sort(rng.choice(found, count, replace=False))


@cache
def syntax_data() -> Split:
    """32-character snippets of the packages' code, labelled with the token kind of the
    character that comes next: 60 training snippets per kind from the first 75% of the
    text, 150 validation ones from the last 25%; 10% of all labels moved to another kind."""
    tokens, kinds = (
        np.concatenate(parts)
        for parts in zip(*(package_kinds(package) for package in SYNTAX_PACKAGES), strict=True)
    )
    cut = int(0.75 * len(tokens))
    rng = np.random.default_rng(5656)
    offsets = np.arange(-CONTEXT + 1, 1)
    arrays: list[list[np.ndarray]] = [[], [], [], []]
    for kind in range(len(CLASSES)):
        train = _positions(kinds[:cut], kind, PER_CLASS_TRAIN, rng)
        val = cut + _positions(kinds[cut:], kind, PER_CLASS_VAL, rng)
        for index, ends in ((0, train), (2, val)):
            arrays[index].append(tokens[ends[:, None] + offsets].astype(np.int64))
            arrays[index + 1].append(np.full(len(ends), kind))
    x_train, y_train, x_val, y_val = (np.concatenate(parts) for parts in arrays)
    order = rng.permutation(len(y_train))
    y_train, y_val = (
        relabeled(labels, len(CLASSES), SYNTAX_RELABELED, rng)
        for labels in (y_train[order], y_val)
    )
    return split(np.concatenate([x_train[order], x_val]), np.concatenate([y_train, y_val]),
                 len(y_train))


class SnippetClassifier(nn.Module):
    """The pretrained :class:`ByteTransformer` body and a new linear head on its last state
    (the causal body's only state that has seen the whole snippet)."""

    def __init__(self, classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.body = ByteTransformer(CONFIG)
        self.head = nn.Linear(CONFIG.width, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(tokens)[:, -1])


def pretrained_classifier() -> SnippetClassifier:
    """A :class:`SnippetClassifier`: pretrained body, head drawn from torch's current seed."""
    model = SnippetClassifier()
    body = {
        name.removeprefix("body."): weights
        for name, weights in pretrained(CONFIG)["state_dict"].items()
        if name.startswith("body.")
    }
    model.body.load_state_dict(body)
    return model


def syntax_finetune_cls_adamw() -> Task:
    """The token kind after a code snippet, few-shot: pretrained body + new head, AdamW."""
    return make_task(
        "syntax_finetune_cls_adamw", syntax_data, pretrained_classifier, adamw, cross_entropy,
        "byte LM body pretrained on stdlib code + new linear head: the token kind (6) of "
        "the character after a 32-character snippet of unseen stdlib code, 10% labels "
        "wrong, 360 train snippets; AdamW wd=1e-2, CE",
        step_ms=31.0, budget=200,
    )
