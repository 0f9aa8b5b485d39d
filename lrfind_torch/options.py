"""The torch backend's own options in one typed object: ``options=TorchOptions(...)``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lrfind_core.arguments import (
    check_bool,
    check_choice,
    check_int,
    check_one_cycle_options,
    check_positive_float,
)
from lrfind_torch.one_cycle import check_one_cycle_keywords

SNAPSHOT_MODES = ("memory", "disk")
AUTOCAST_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class TorchOptions:
    """How the torch backend runs its steps and keeps the user's state.

    Mixed precision:
      autocast_dtype: run forward passes under ``torch.autocast`` with this dtype
        (``torch.bfloat16`` or ``torch.float16``).
      grad_scaler: a ``torch.amp.GradScaler``. An update it skips (inf/NaN grads)
        still uses up its LR and keeps its loss (measured before the update); it is
        listed in ``result.meta["skipped_steps"]``. 20 skips in a row, or a sweep
        whose every update is skipped, end the curve where the skips began.

    The step:
      max_grad_norm: clip the gradient norm to this before each optimizer step.
      one_cycle_options: keywords for torch's ``OneCycleLR`` when search candidates
        train under a one-cycle schedule (``pct_start``, ``div_factor``,
        ``cycle_momentum``...): pass your training's, so the candidates train as it
        will. ``max_lr`` and ``total_steps`` are the search's.
      train_mode: True (default) runs every step after ``model.train()``; False
        keeps each submodule's mode as you set it (for example BatchNorm frozen in
        ``eval()``). Validation points always run in eval mode. Either way every
        module's mode is restored afterwards.

    Where and how often:
      device: where batches are moved (default: the model's device; the model
        must already be there).
      non_blocking: ``non_blocking`` of batch transfers.
      sync_every: steps between host reads of the losses for the stop rule
        (default 1 on CPU, 10 on accelerators); steps run past the stop are cut.
      process_group: under ``torch.distributed`` (DDP, FSDP), the group whose ranks
        average their losses (default: the world). Every rank must call
        ``lr_find`` with the same arguments; all stop at the same step and return
        the same result. Only rank 0 shows the progress bar and saves the plot.
      progress: show a tqdm progress bar.

    The restore copy:
      snapshot: keep it in CPU ``"memory"`` (default) or in a ``"disk"`` temp file,
        deleted afterwards.
      snapshot_dir: the folder of the ``"disk"`` temp file (default: the system's).
      restore_also: more objects to restore exactly (modules, optimizers) or
        through ``state_dict``/``load_state_dict`` (a scheduler, a second scaler...).
    """

    autocast_dtype: torch.dtype | None = None
    grad_scaler: Any = None
    max_grad_norm: float | None = None
    one_cycle_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    train_mode: bool = True
    device: str | torch.device | None = None
    non_blocking: bool = True
    sync_every: int | None = None
    process_group: Any = None
    progress: bool = True
    snapshot: str = "memory"
    snapshot_dir: str | os.PathLike[str] | None = None
    restore_also: Sequence[Any] = ()

    def __post_init__(self) -> None:
        if self.autocast_dtype is not None and not isinstance(self.autocast_dtype, torch.dtype):
            raise TypeError(
                "autocast_dtype must be a torch.dtype (torch.float16 or torch.bfloat16), got "
                f"{self.autocast_dtype!r}"
            )
        if self.autocast_dtype not in (None, *AUTOCAST_DTYPES):
            raise ValueError(
                "autocast_dtype must be torch.float16 or torch.bfloat16 (torch.autocast "
                f"runs nothing else; it would disable itself), got {self.autocast_dtype}"
            )
        methods = ("scale", "step", "update", "get_scale", "_found_inf_per_device")
        if self.grad_scaler is not None and not all(
            hasattr(self.grad_scaler, name) for name in methods
        ):
            raise TypeError(
                f"grad_scaler must be a torch.amp.GradScaler, got {type(self.grad_scaler).__name__}"
            )
        if self.max_grad_norm is not None:
            check_positive_float("max_grad_norm", self.max_grad_norm)
        check_one_cycle_options(self.one_cycle_options, ("max_lr", "total_steps", "epochs",
                                                         "steps_per_epoch"))
        check_one_cycle_keywords(self.one_cycle_options)
        check_bool("train_mode", self.train_mode)
        check_bool("non_blocking", self.non_blocking)
        if self.sync_every is not None:
            check_int("sync_every", self.sync_every, minimum=1)
        check_bool("progress", self.progress)
        check_choice("snapshot", self.snapshot, SNAPSHOT_MODES)
        if self.snapshot_dir is not None:
            if not isinstance(self.snapshot_dir, str | os.PathLike):
                raise TypeError(
                    f"snapshot_dir must be a folder path, got {type(self.snapshot_dir).__name__}"
                )
            if not os.path.isdir(self.snapshot_dir):
                raise ValueError(f"snapshot_dir {os.fspath(self.snapshot_dir)!r} is not a folder")
        if isinstance(self.restore_also, str | bytes) or not isinstance(
            self.restore_also, Sequence
        ):
            raise TypeError(
                "restore_also must be a sequence of objects, got "
                f"{type(self.restore_also).__name__}"
            )

    @property
    def enabled_scaler(self) -> Any:
        """The GradScaler if it is enabled, else None (a disabled one changes nothing)."""
        scaler = self.grad_scaler
        return scaler if scaler is not None and scaler.is_enabled() else None


def checked_options(options: Any) -> TorchOptions:
    """``options``, or the defaults for None; a TypeError for anything else."""
    if options is None:
        return TorchOptions()
    if not isinstance(options, TorchOptions):
        raise TypeError(
            f"options must be lrfind_torch.TorchOptions, got {type(options).__name__}"
        )
    return options


__all__ = ["SNAPSHOT_MODES", "TorchOptions", "checked_options"]
