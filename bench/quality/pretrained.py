"""A small byte-level transformer LM pretrained on stdlib code, cached on disk.

The fine-tuning tasks start from these weights. They are built once,
deterministically (one torch thread, fixed seeds; about 2.5 CPU-min), by
:func:`pretrain` on :func:`quality.text.code_corpus`, and written atomically to
``bench/quality_cache/pretrained_bytelm_<config digest>.pt``; later processes
load the file. A missing file is rebuilt. The corpus is the running Python's
stdlib, so a rebuild on another Python version gives other weights: the file
records the corpus fingerprint, and loading warns when it differs.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from quality.cache import CACHE_DIR
from quality.text import VOCAB, code_corpus, fingerprint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """Architecture and pretraining recipe of the byte LM.

    Attributes:
      width: model width d; heads: attention heads; layers: transformer blocks.
      context: tokens per sequence (the position table's length).
      steps: pretraining optimizer steps; batch: sequences per step.
      peak_lr: AdamW's LR after ``warmup`` linear steps, then cosine decay to 10%.
      weight_decay: AdamW's decoupled weight decay; clip: gradient-norm clip.
      holdout: fraction of the corpus (its end) kept out to report a code val loss.
      seed: draws the initial weights and the training windows.
    """

    width: int = 64
    heads: int = 4
    layers: int = 2
    context: int = 32
    steps: int = 4000
    batch: int = 64
    peak_lr: float = 2e-3
    warmup: int = 200
    weight_decay: float = 0.1
    clip: float = 1.0
    holdout: float = 0.02
    seed: int = 0

    def digest(self) -> str:
        """A short hash of the config: names the weight file, so a new recipe rebuilds."""
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:10]


CONFIG = PretrainConfig()


class CausalBlock(nn.Module):
    """Pre-LayerNorm causal self-attention, then a 4x-wide GELU MLP; both residual."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm_attention = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, length, width = hidden.shape
        qkv = self.qkv(self.norm_attention(hidden))
        query, key, value = qkv.view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(query, key, value, is_causal=True)
        hidden = hidden + self.out(attended.transpose(1, 2).reshape(batch, length, width))
        return hidden + self.mlp(self.norm_mlp(hidden))


class ByteTransformer(nn.Module):
    """Byte embeddings + learned positions -> causal blocks -> LayerNorm: (B, T, width)."""

    def __init__(self, config: PretrainConfig = CONFIG) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, config.width)
        self.position = nn.Parameter(torch.empty(config.context, config.width))
        self.blocks = nn.Sequential(
            *(CausalBlock(config.width, config.heads) for _ in range(config.layers))
        )
        self.norm = nn.LayerNorm(config.width)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(tokens) + self.position[: tokens.shape[1]]
        return self.norm(self.blocks(hidden))


class ByteLM(nn.Module):
    """A :class:`ByteTransformer` and a linear next-byte head: logits (B, T, VOCAB)."""

    def __init__(self, config: PretrainConfig = CONFIG) -> None:
        super().__init__()
        self.body = ByteTransformer(config)
        self.head = nn.Linear(config.width, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(tokens))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-byte cross-entropy (nats per byte) of (B, T, V) logits, (B, T) targets."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _batch(
    corpus: torch.Tensor, rng: np.random.Generator, batch: int, context: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random windows of ``context + 1`` tokens: inputs and next-byte targets."""
    starts = torch.from_numpy(rng.integers(0, len(corpus) - context - 1, batch))
    rows = corpus[starts[:, None] + torch.arange(context + 1)]
    return rows[:, :-1], rows[:, 1:]


def _holdout_loss(model: ByteLM, corpus: torch.Tensor, context: int) -> float:
    """The LM loss over non-overlapping windows of the held-out code (at most 512)."""
    rows = corpus[: (len(corpus) // (context + 1)) * (context + 1)].view(-1, context + 1)[:512]
    model.eval()
    with torch.no_grad():
        return float(lm_loss(model(rows[:, :-1]), rows[:, 1:]))


def _warmup_cosine(config: PretrainConfig) -> Any:
    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))

    return factor


def pretrain(config: PretrainConfig = CONFIG) -> dict[str, Any]:
    """Pretrain a :class:`ByteLM` on the stdlib code; the weights and facts as a dict.

    Runs on one torch thread (the thread count changes float sums, hence weights).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tokens = code_corpus()
        split_at = int(len(tokens) * (1.0 - config.holdout))
        train = torch.from_numpy(tokens[:split_at].astype(np.int64))
        held_out = torch.from_numpy(tokens[split_at:].astype(np.int64))
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        model = ByteLM(config)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.peak_lr, weight_decay=config.weight_decay
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config))
        started = time.perf_counter()
        model.train()
        for step in range(config.steps):
            inputs, targets = _batch(train, rng, config.batch, config.context)
            optimizer.zero_grad(set_to_none=True)
            loss = lm_loss(model(inputs), targets)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            schedule.step()
            if step % 500 == 0:
                logger.info("pretraining step %d/%d: loss %.3f", step, config.steps, loss.item())
        return {
            "config": asdict(config),
            "state_dict": model.state_dict(),
            "corpus_fingerprint": fingerprint(tokens),
            "holdout_code_loss": _holdout_loss(model, held_out, config.context),
            "final_train_loss": float(loss.item()),
            "seconds": time.perf_counter() - started,
            "python": platform.python_version(),
            "torch": str(torch.__version__),
        }
    finally:
        torch.set_num_threads(threads)


def weights_path(config: PretrainConfig = CONFIG) -> Path:
    """Where the pretrained weights of ``config`` are cached."""
    return CACHE_DIR / f"pretrained_bytelm_{config.digest()}.pt"


def _save_atomically(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


@cache
def pretrained(config: PretrainConfig = CONFIG) -> dict[str, Any]:
    """The pretrained weights and facts of ``config``: loaded, or built and cached first."""
    path = weights_path(config)
    if not path.exists():
        logger.info("pretraining the byte LM (%s missing)", path)
        _save_atomically(pretrain(config), path)
    payload = torch.load(path, weights_only=True)
    current = fingerprint(code_corpus())
    if payload["corpus_fingerprint"] != current:
        logger.warning(
            "%s was pretrained on another stdlib (Python %s; corpus %s, here %s): "
            "cached runs of the fine-tuning tasks may not match a rerun here",
            path.name, payload["python"], payload["corpus_fingerprint"], current,
        )
    return payload


def pretrained_lm(config: PretrainConfig = CONFIG) -> ByteLM:
    """A fresh :class:`ByteLM` holding the pretrained weights."""
    model = ByteLM(config)
    model.load_state_dict(pretrained(config)["state_dict"])
    return model
