"""``lr_find_trainer``: the LR range test for a Hugging Face ``transformers.Trainer``.

One call takes the user's ``Trainer`` and runs :func:`lrfind_torch.lr_find` with
what the trainer would train with:

* the model: ``trainer.model``;
* the optimizer: ``trainer.create_optimizer()`` (the trainer's own construction:
  ``args.optim``, ``learning_rate``, weight decay groups, or the ``optimizers=``
  passed to the trainer); an optimizer that call creates is discarded afterwards;
* the data: ``trainer.get_train_dataloader()``, and for ``mode="search"``
  ``trainer.get_eval_dataloader()`` as ``val_data``;
* the loss: ``trainer.compute_loss(model, inputs)`` (under the trainer's
  ``compute_loss_context_manager``), through lr_find's ``step_fn``;
* ``args.gradient_accumulation_steps``, ``args.max_grad_norm`` and
  ``args.bf16``/``args.fp16`` (autocast, and a ``GradScaler`` for fp16);
* ``args.lr_scheduler_type``: the schedule the suggestion is for (:data:`SCHEDULES`),
  unless a scheduler passed in ``optimizers=`` overrides it (:func:`read_scheduler`; one
  lrfind cannot read is refused unless ``for_schedule=`` says which schedule it is).

transformers itself is never imported here: the trainer is recognised by its class
hierarchy and used through its methods.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from lrfind_core.notices import warn_user
from lrfind_core.result import LRFindResult
from lrfind_core.settings import FOR_SCHEDULES, Settings, resolve_settings
from lrfind_torch.finder import lr_find
from lrfind_torch.integrations import common
from lrfind_torch.options import TorchOptions, checked_options

if TYPE_CHECKING:  # the type of **sweep, for type checkers only
    from typing_extensions import Unpack

DECAY_NOTE = (
    "lrfind does not measure a warmup-then-decay schedule; it assumes the closest one it "
    f"supports, a one-cycle (warm up to a peak, then anneal), {common.PEAK_NOTE}, to use as "
    "args.learning_rate"
)

SCHEDULES: dict[str, tuple[str, str | None]] = {
    "constant": ("constant", None),
    "constant_with_warmup": (
        "constant",
        "its warmup is not modelled: the suggestion is a constant LR from the first step, a "
        "little conservative for a schedule that warms up to it",
    ),
    "reduce_lr_on_plateau": ("constant", common.PLATEAU_NOTE),
    "greedy": ("constant", "the suggestion is the LR it starts from, before the loss moves it"),
    **dict.fromkeys(
        ("linear", "cosine", "cosine_with_restarts", "cosine_with_min_lr",
         "cosine_warmup_with_min_lr", "polynomial", "warmup_stable_decay", "inverse_sqrt"),
        ("one_cycle", DECAY_NOTE),
    ),
}
"""``args.lr_scheduler_type`` -> (lrfind's ``for_schedule``, why that is approximate,
or None where it is exact). Only ``"constant"`` is exact; a schedule that holds its LR
is read as ``"constant"``, one that warms up and decays (the Trainer's default
``"linear"``) as ``"one_cycle"``."""

UNKNOWN_SCHEDULE = ("one_cycle", f"lrfind does not know this schedule; {DECAY_NOTE}")
"""How a name not in :data:`SCHEDULES` is read."""

ANNEAL = {"linear": "linear", "cosine": "cos"}
"""Trainer schedules whose shape the search's candidates train under: torch's
``OneCycleLR`` with this anneal, the trainer's warmup share, no momentum cycling."""

TRANSFORMERS_LAMBDAS: dict[str, str] = {
    "_get_constant_lambda": "constant",
    "_get_constant_schedule_with_warmup_lr_lambda": "constant_with_warmup",
    "_get_linear_schedule_with_warmup_lr_lambda": "linear",
    "_get_cosine_schedule_with_warmup_lr_lambda": "cosine",
    "_get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda": "cosine_with_restarts",
    "_get_cosine_with_min_lr_schedule_with_warmup_lr_rate_lambda": "cosine_warmup_with_min_lr",
    "_get_polynomial_decay_schedule_with_warmup_lr_lambda": "polynomial",
    "_get_inverse_sqrt_schedule_lr_lambda": "inverse_sqrt",
    "_get_wsd_scheduler_lambda": "warmup_stable_decay",
}
"""The ``lr_lambda`` of a ``LambdaLR`` that ``transformers.optimization`` builds (its
``get_*_schedule*`` functions) -> the :data:`SCHEDULES` name it reads as."""

TORCH_SCHEDULERS = common.TORCH_SCHEDULERS
"""A ``torch.optim.lr_scheduler`` class (exactly, not a subclass) passed to the Trainer ->
(lrfind's ``for_schedule``, why approximate or None), as ``lr_find_lightning`` reads them.
``ConstantLR`` and ``LinearLR`` are read from their factors (:func:`read_scheduler`)."""

SHAPE_DIV_FACTOR = 1e4
"""``OneCycleLR`` starts (and, with ``final_div_factor=1``, ends) at peak / this, near
the 0 that the trainer's warmup starts from and its decay ends at."""


def lr_find_trainer(
    trainer: Any,
    *,
    mode: str | None = None,
    for_schedule: str | None = None,
    val_data: Iterable[Any] | None = None,
    training_steps: int | None = None,
    settings: Settings | str | None = None,
    options: TorchOptions | None = None,
    **sweep: Unpack[common.SweepKeywords],
) -> LRFindResult:
    """Find the LR for a ``transformers.Trainer``'s training; the trainer, its model and
    optimizer and the RNGs come back exactly.

    Args:
      trainer: a ``transformers.Trainer`` (or subclass) with a ``train_dataset``.
      mode: as for :func:`~lrfind_torch.lr_find`; ``"search"`` scores its candidates
        on ``trainer.get_eval_dataloader()`` when the trainer has an ``eval_dataset``
        (else on held-out training batches).
      for_schedule: what the suggestion is for; default: the one ``settings`` chose if not
        ``"one_cycle"`` (fastai's ``"curve"``), else read by :func:`trainer_schedule` from a
        scheduler passed in ``optimizers=`` or ``args.lr_scheduler_type``; an approximate
        reading is said in a warning and in ``result.meta["huggingface"]["schedule_note"]``.
      val_data: validation batches (any mode) instead of the trainer's eval dataloader.
      training_steps: the planned training (search mode); default: the trainer's
        optimizer steps, ``args.max_steps`` or epochs x optimizer steps per epoch.
      settings, options: as for :func:`~lrfind_torch.lr_find`.
        ``settings.accumulation_steps`` defaults (when 1) to
        ``args.gradient_accumulation_steps``; ``options.max_grad_norm`` to
        ``args.max_grad_norm``; ``options.autocast_dtype`` to bfloat16/float16 under
        ``args.bf16``/``args.fp16`` (fp16 also gets a ``GradScaler``).
      sweep: ``start_lr``, ``end_lr``, ``num_steps``, ``budget_steps``, ``plot_path``,
        passed to :func:`~lrfind_torch.lr_find` as they are.

    Returns:
      The :class:`~lrfind_core.result.LRFindResult`; ``result.meta["huggingface"]``
      says which trainer settings were used and which schedule the suggestion assumes.
    """
    check_trainer(trainer)
    common.check_sweep_keywords("lr_find_trainer", sweep)
    options = checked_options(options)
    args = trainer.args
    chosen = resolve_settings(settings)
    run_mode = mode if mode is not None else chosen.mode
    schedule, passed = scheduler_name(args), passed_scheduler(trainer)
    assumed, from_trainer, approximate = trainer_schedule(schedule, passed, for_schedule, chosen)
    chosen = _with_trainer_accumulation(chosen, args)
    facts: dict[str, Any] = {
        "lr_scheduler_type": schedule,
        "passed_scheduler": None if passed is None else type(passed).__name__,
        "for_schedule": assumed,
        "schedule_exact": approximate is None,
        "accumulation_steps": chosen.accumulation_steps,
    }
    notices: list[str] = []
    with restored_trainer(trainer):
        optimizer, facts["optimizer"] = _trainer_optimizer(trainer)
        train_data = trainer.get_train_dataloader()
        training_steps, val_data = _search_inputs(
            trainer, train_data, run_mode == "search", training_steps,
            training_steps is None and chosen.training_steps is None, val_data, facts)
        shape = None  # args' shape: a passed scheduler keeps its own
        if run_mode == "search" and assumed == "one_cycle" and not facts["passed_scheduler"]:
            shape = schedule_shape(args, schedule, training_steps or chosen.training_steps)
        options, option_facts = trainer_options(trainer, args, options, shape)
        facts.update(option_facts)
        facts["schedule_note"] = schedule_note(
            schedule, assumed, from_trainer, approximate,
            option_facts["one_cycle_options"] is not None, facts["passed_scheduler"])
        with common.usable_lrs(optimizer, notices):
            result = lr_find(
                trainer.model, optimizer, train_data, step_fn=trainer_loss(trainer),
                mode=mode, for_schedule=assumed, val_data=val_data,
                training_steps=training_steps, settings=chosen, options=options, **sweep,
            )
    result.meta["huggingface"] = facts
    if approximate is not None:
        notices.append(facts["schedule_note"])
    warn_user(notices)
    return result


def _with_trainer_accumulation(chosen: Settings, args: Any) -> Settings:
    """``chosen`` with the trainer's gradient accumulation where the settings keep 1."""
    accumulation = max(int(getattr(args, "gradient_accumulation_steps", 1) or 1), 1)
    if chosen.accumulation_steps == 1 and accumulation > 1:
        return dataclasses.replace(chosen, accumulation_steps=accumulation)
    return chosen


def _trainer_optimizer(trainer: Any) -> tuple[torch.optim.Optimizer, str]:
    """The trainer's optimizer (made by ``create_optimizer()`` if it has none; the
    restored trainer discards it after) and where it came from."""
    had_optimizer = getattr(trainer, "optimizer", None) is not None
    optimizer = trainer.create_optimizer()
    name = type(optimizer).__name__
    if had_optimizer:
        return optimizer, f"trainer.optimizer ({name})"
    return optimizer, f"trainer.create_optimizer() ({name}), discarded after"


def _search_inputs(
    trainer: Any, train_data: Any, searching: bool, training_steps: int | None,
    no_length: bool, val_data: Any, facts: dict[str, Any],
) -> tuple[int | None, Any]:
    """``(training_steps, val_data)``: a search given no length (``no_length``) and no
    ``val_data`` takes the trainer's own planned length and its eval dataloader; where
    each came from goes into ``facts``."""
    facts["planned_steps"] = planned = planned_steps(trainer.args, train_data)
    if searching and no_length:
        if planned is None:
            raise ValueError(
                "mode='search' needs training_steps: the trainer's train dataloader has no "
                "length and args.max_steps is not set"
            )
        training_steps = planned
    if val_data is None and searching:
        val_data, facts["val_data"] = eval_batches(trainer)
    else:
        facts["val_data"] = None if val_data is None else "val_data"
    return training_steps, val_data


def check_trainer(trainer: Any) -> None:
    """``trainer`` is a ``transformers.Trainer`` with a model and a training set."""
    if common.package_of(trainer, "Trainer", ("transformers",)) is None:
        raise TypeError(f"trainer must be a transformers.Trainer, got {type(trainer).__name__}")
    if not isinstance(trainer.model, torch.nn.Module):
        raise TypeError(
            f"trainer.model must be a torch.nn.Module, got {type(trainer.model).__name__}"
        )
    if getattr(trainer, "train_dataset", None) is None:
        raise ValueError(
            "the trainer has no train_dataset: lr_find_trainer trains on it (pass "
            "train_dataset= to the Trainer)"
        )


def scheduler_name(args: Any) -> str:
    """``args.lr_scheduler_type`` as a string (it may be a ``SchedulerType`` enum)."""
    value = getattr(args, "lr_scheduler_type", "linear")
    return str(getattr(value, "value", value))


def passed_scheduler(trainer: Any) -> Any | None:
    """The scheduler passed to the Trainer (``optimizers=``), which ``trainer.train()``
    uses instead of ``args.lr_scheduler_type``; None where ``train()`` builds one from
    ``args`` (it rebuilds one it built before: ``_created_lr_scheduler``)."""
    scheduler = getattr(trainer, "lr_scheduler", None)
    if scheduler is None or getattr(trainer, "_created_lr_scheduler", False):
        return None
    return scheduler


def trainer_schedule(
    schedule: str, passed: Any | None, for_schedule: str | None, chosen: Settings
) -> tuple[str, bool, str | None]:
    """``(for_schedule, whether the trainer's schedule decided it, why that reading is
    approximate or None)`` from ``passed`` (a scheduler passed to the Trainer) if any,
    else from ``schedule`` (``args.lr_scheduler_type``). A passed scheduler that
    :func:`read_scheduler` cannot read is refused unless ``for_schedule`` or the
    settings choose."""
    if passed is None:
        reading: tuple[str, str | None] | None = SCHEDULES.get(schedule, UNKNOWN_SCHEDULE)
    else:
        reading = read_scheduler(passed)
    configured = "one_cycle" if reading is None else reading[0]
    assumed, from_trainer = common.suggestion_schedule(for_schedule, chosen, configured)
    if not from_trainer:
        return assumed, False, None
    if reading is None:
        choices = ", ".join(repr(name) for name in FOR_SCHEDULES)
        raise ValueError(
            f"lr_find_trainer: the trainer trains with the scheduler passed to it in "
            f"optimizers= ({type(passed).__name__}), not args.lr_scheduler_type, and lrfind "
            f"cannot tell its schedule: pass for_schedule= ({choices}): 'constant' if it "
            "holds the LR, 'one_cycle' if it warms up to a peak and decays"
        )
    return reading[0], True, reading[1]


def read_scheduler(scheduler: Any) -> tuple[str, str | None] | None:
    """``(for_schedule, why approximate or None)`` for a scheduler passed to the Trainer,
    read from its class and attributes (it is never stepped): ``transformers``' own
    schedules (:data:`TRANSFORMERS_LAMBDAS`) and torch's (:data:`TORCH_SCHEDULERS`,
    ``ConstantLR``, ``LinearLR``). None where lrfind cannot tell: a ``LambdaLR`` of the
    user's own function, a subclass, ``SequentialLR``..."""
    kind = type(scheduler)
    if kind.__module__ == "transformers.optimization" and kind.__name__ == "GreedyLR":
        return SCHEDULES["greedy"]
    if kind is not getattr(torch.optim.lr_scheduler, kind.__name__, None):
        return None  # not torch's own class: a subclass may schedule otherwise
    if kind.__name__ == "LambdaLR":
        names = {transformers_schedule(function) for function in scheduler.lr_lambdas}
        name = names.pop() if len(names) == 1 else None
        return None if name is None else SCHEDULES[name]
    if kind.__name__ in ("ConstantLR", "LinearLR"):
        start, end = ((scheduler.factor, 1.0) if kind.__name__ == "ConstantLR"
                      else (scheduler.start_factor, scheduler.end_factor))
        if start == end or scheduler.last_epoch >= scheduler.total_iters:
            return "constant", None  # it holds the LR from here on
        return SCHEDULES["constant_with_warmup"] if start < end else ("constant", common.DECAY_NOTE)
    return TORCH_SCHEDULERS.get(kind.__name__)


def transformers_schedule(function: Any) -> str | None:
    """The :data:`SCHEDULES` name of a ``transformers.optimization`` LR lambda, else None."""
    if isinstance(function, functools.partial):
        function = function.func
    if getattr(function, "__module__", None) != "transformers.optimization":
        return None
    return TRANSFORMERS_LAMBDAS.get(getattr(function, "__name__", ""))


def schedule_note(
    schedule: str, assumed: str, from_trainer: bool, approximate: str | None, shaped: bool,
    passed: str | None = None,
) -> str:
    """Which schedule the suggestion assumes, in words (``meta["huggingface"]
    ["schedule_note"]``, and the warning when ``approximate`` says why it is not exact).
    ``passed``: the class of a scheduler passed to the Trainer, which overrides
    ``schedule`` (``args.lr_scheduler_type``)."""
    source = (f"the trainer's lr_scheduler_type={schedule!r}" if passed is None
              else f"the scheduler passed to the Trainer ({passed})")
    if not from_trainer:
        return f"the suggestion is for for_schedule={assumed!r}, as asked, not read from {source}"
    if approximate is None:
        return f"the suggestion is for {source}"
    note = (f"lr_find_trainer: the suggestion assumes for_schedule={assumed!r} for "
            f"{source}: {approximate}")
    if shaped:
        note += (f". The search's candidates trained under torch's OneCycleLR shaped like "
                 f"{schedule!r}: the trainer's warmup share, then a {ANNEAL[schedule]} anneal "
                 "to near 0, no momentum cycling")
    return f"{note}. Pass for_schedule= to choose another"


def planned_steps(args: Any, train_data: Any) -> int | None:
    """The trainer's planned optimizer steps: ``args.max_steps``, or epochs times the
    optimizer steps of one pass over ``train_data``; None if that has no length."""
    max_steps = int(getattr(args, "max_steps", -1) or -1)
    if max_steps > 0:
        return max_steps
    try:
        batches = len(train_data)
    except TypeError:
        return None
    accumulation = max(int(getattr(args, "gradient_accumulation_steps", 1) or 1), 1)
    per_epoch = max(math.ceil(batches / accumulation), 1)
    return max(math.ceil(float(args.num_train_epochs) * per_epoch), 1)


def schedule_shape(args: Any, schedule: str, training_steps: int) -> dict[str, Any] | None:
    """``OneCycleLR`` keywords that shape a search candidate's schedule like the
    trainer's linear or cosine decay after its warmup (``args.get_warmup_steps``); None
    for a ``schedule`` not in :data:`ANNEAL`."""
    if schedule not in ANNEAL:
        return None
    warmup = int(args.get_warmup_steps(training_steps))
    return {
        "pct_start": min(warmup / training_steps, 1.0),
        "anneal_strategy": ANNEAL[schedule],
        "cycle_momentum": False,
        "div_factor": SHAPE_DIV_FACTOR,
        "final_div_factor": 1.0,
    }


def trainer_options(
    trainer: Any, args: Any, options: TorchOptions, shape: dict[str, Any] | None
) -> tuple[TorchOptions, dict[str, Any]]:
    """``options`` with the trainer's clipping, mixed precision and, for a search, its
    schedule's ``shape``; fields the caller set are kept. Also the facts for meta."""
    changes: dict[str, Any] = {}
    norm = getattr(args, "max_grad_norm", None)
    if options.max_grad_norm is None and norm is not None and float(norm) > 0:
        changes["max_grad_norm"] = float(norm)
    precision = "bf16" if getattr(args, "bf16", False) else (
        "fp16" if getattr(args, "fp16", False) else None)
    if precision is not None and options.autocast_dtype is None:
        changes["autocast_dtype"] = torch.bfloat16 if precision == "bf16" else torch.float16
        if precision == "fp16" and options.grad_scaler is None:
            device = next(trainer.model.parameters()).device
            changes["grad_scaler"] = torch.amp.GradScaler(device.type)
    if shape is not None and not options.one_cycle_options:
        changes["one_cycle_options"] = shape
    options = dataclasses.replace(options, **changes) if changes else options
    facts = {
        "max_grad_norm": options.max_grad_norm,
        "mixed_precision": precision,
        "one_cycle_options": dict(shape) if "one_cycle_options" in changes else None,
    }
    return options, facts


def eval_batches(trainer: Any) -> tuple[Any, str | None]:
    """The trainer's eval dataloader (its first, when ``eval_dataset`` is a dict) and
    where it came from; ``(None, None)`` without an ``eval_dataset``."""
    dataset = getattr(trainer, "eval_dataset", None)
    if dataset is None:
        return None, None
    if isinstance(dataset, Mapping):
        name = next(iter(dataset))
        return trainer.get_eval_dataloader(name), f"trainer.get_eval_dataloader({name!r})"
    return trainer.get_eval_dataloader(), "trainer.get_eval_dataloader()"


def trainer_loss(trainer: Any) -> Callable[[torch.nn.Module, Any], torch.Tensor]:
    """``step_fn(model, batch)``: ``trainer.compute_loss`` under the trainer's loss
    context, on a shallow copy of the batch (it may pop ``labels``)."""

    def step(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        inputs = dict(batch) if isinstance(batch, Mapping) else batch
        with trainer.compute_loss_context_manager():
            loss = trainer.compute_loss(model, inputs)
        return loss.mean() if loss.ndim else loss  # per-device losses under DataParallel

    return step


@contextmanager
def restored_trainer(trainer: Any) -> Iterator[None]:
    """Put the trainer's attributes back as they were (an optimizer ``create_optimizer``
    set, a dataloader cache) and its accelerator's list of prepared dataloaders, which
    ``get_train_dataloader`` and ``get_eval_dataloader`` add to."""
    attributes = dict(vars(trainer))
    loaders = getattr(getattr(trainer, "accelerator", None), "_dataloaders", None)
    saved_loaders = list(loaders) if isinstance(loaders, list) else None
    try:
        yield
    finally:
        current = vars(trainer)
        for key in set(current) - set(attributes):
            del current[key]
        current.update(attributes)
        if saved_loaders is not None:
            loaders[:] = saved_loaders


__all__ = [
    "ANNEAL",
    "SCHEDULES",
    "TORCH_SCHEDULERS",
    "TRANSFORMERS_LAMBDAS",
    "lr_find_trainer",
    "planned_steps",
    "read_scheduler",
    "schedule_note",
    "trainer_loss",
]
