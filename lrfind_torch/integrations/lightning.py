"""``lr_find_lightning``: the LR range test for a Lightning ``LightningModule``, no
``Trainer`` needed.

The module's own hooks are called directly:

* the loss: ``training_step(batch, batch_idx)`` (a loss tensor, or a dict with
  ``"loss"``), through lr_find's ``step_fn``, after the batch hooks
  ``on_before_batch_transfer``, ``transfer_batch_to_device`` and
  ``on_after_batch_transfer`` (the datamodule's where it overrides them; lr_find
  has already moved the batch to the module's device by then);
* the optimizer: the first one ``configure_optimizers()`` returns; the scheduler
  returned with it (none: a constant LR) decides the schedule the suggestion is for
  (:data:`SCHEDULES`), while the range test sets the LR itself;
* the data: ``train_dataloaders``, else the datamodule's ``train_dataloader()``
  (after its ``prepare_data()`` and ``setup("fit")``), else the module's own; several
  train loaders (a dict, list or tuple of them) are combined as ``Trainer.fit`` combines
  them, by Lightning's ``CombinedLoader`` in ``"max_size_cycle"`` mode, so
  ``training_step`` gets a dict or list of batches;
  ``val_dataloaders`` (any mode), else in ``mode="search"`` the datamodule's or the
  module's ``val_dataloader()`` (the first, of several).

Validation loss (a sweep's ``val_data`` points, a search candidate's score) is
``training_step`` run in eval mode under ``torch.no_grad()``, not
``validation_step``: ``validation_step`` usually logs its metrics and returns
nothing, while ``training_step`` returns the very loss being minimised. The
difference to know: whatever else ``training_step`` does to a batch (augmentation
written in it, an extra regularisation term) applies to the validation batches too.

While lr_find runs, ``self.log``, ``self.log_dict`` and ``self.print`` are stand-ins
that log nothing (``print`` still prints): without a Trainer Lightning would warn at
every step, and ``print`` would raise. The module's Lightning metrics
(``torchmetrics.Metric`` submodules, whose states are not buffers) are put back as
they were, with everything lr_find restores.

Nothing of Lightning is imported at import time: the module is recognised by its
class hierarchy (``lightning`` or ``pytorch_lightning``, whichever it comes from), and
only several train loaders import that package's ``CombinedLoader``.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import torch

from lrfind_core.notices import warn_user
from lrfind_core.result import LRFindResult
from lrfind_core.settings import Settings, resolve_settings
from lrfind_core.shell import call_settings, check_plot_path, check_settings
from lrfind_torch.batches import kept_loader_generators, kept_loader_positions
from lrfind_torch.finder import lr_find
from lrfind_torch.integrations import common
from lrfind_torch.options import TorchOptions, checked_options
from lrfind_torch.state import rng_states, set_rng_states

if TYPE_CHECKING:  # the type of **sweep, for type checkers only
    from typing_extensions import Unpack

PACKAGES = ("lightning", "pytorch_lightning")
"""The packages whose ``LightningModule`` is recognised."""

STAND_INS = ("log", "log_dict", "print")
"""Module methods replaced while lr_find runs (see the module docstring)."""

SCHEDULES = common.TORCH_SCHEDULERS
"""The class name of the scheduler ``configure_optimizers`` returns -> (lrfind's
``for_schedule``, why that is approximate, or None where it is exact). Without a
scheduler the LR is constant: ``"constant"``, exact. Any other scheduler (``LambdaLR``,
``SequentialLR``, a warmup...) is read as ``"one_cycle"`` (:data:`UNKNOWN_SCHEDULE`)."""

UNKNOWN_SCHEDULE = (
    "one_cycle",
    "lrfind does not know this schedule; it assumes a one-cycle (warm up to a peak, then "
    f"anneal), {common.PEAK_NOTE}",
)

METRIC_ATTRIBUTES = ("_update_count", "_computed", "_forward_cache", "_is_synced",
                     "_cache", "_should_unsync")
"""A torchmetrics ``Metric``'s bookkeeping, saved and put back with its states."""


def lr_find_lightning(
    module: Any,
    datamodule: Any = None,
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    mode: str | None = None,
    for_schedule: str | None = None,
    training_steps: int | None = None,
    settings: Settings | str | None = None,
    options: TorchOptions | None = None,
    **sweep: Unpack[common.SweepKeywords],
) -> LRFindResult:
    """Find the LR for a ``LightningModule``; the module, its optimizer, its metrics and
    the RNGs come back exactly.

    Args:
      module: a ``LightningModule`` with automatic optimization, its layers built and on
        its device (its ``setup``/``configure_model`` hooks are not called).
      datamodule: a ``LightningDataModule`` for the data; its ``prepare_data()`` and
        ``setup("fit")`` are called first (the RNGs are put back afterwards).
      train_dataloaders: the training batches instead: one DataLoader or iterable, or
        several (a dict, list or tuple of loaders, or a ``CombinedLoader``), combined as
        by ``Trainer.fit``.
      val_dataloaders: validation batches, used as ``val_data`` in every mode; without
        them ``mode="search"`` uses the datamodule's (or module's) ``val_dataloader()``.
      optimizer: use this optimizer instead of ``configure_optimizers()`` (for one
        that needs ``self.trainer``); it must belong to the module's parameters.
      for_schedule: what the suggestion is for; default: the one ``settings`` chose if
        not ``"one_cycle"`` (the fastai preset's ``"curve"``), else read from the
        scheduler ``configure_optimizers()`` returns (:data:`SCHEDULES`; none:
        ``"constant"``). An approximate reading is said in a warning and in
        ``result.meta["lightning"]``.
      mode, training_steps, settings, options: as for :func:`~lrfind_torch.lr_find`.
        The Trainer's own settings do not apply: pass gradient accumulation as
        ``settings=Settings(accumulation_steps=k)``, clipping and mixed precision
        as ``options=TorchOptions(max_grad_norm=..., autocast_dtype=...)``.
      sweep: ``start_lr``, ``end_lr``, ``num_steps``, ``budget_steps``, ``plot_path``,
        passed to :func:`~lrfind_torch.lr_find` as they are.

    Returns:
      The :class:`~lrfind_core.result.LRFindResult`; ``result.meta["lightning"]`` says
      where the optimizer, scheduler, data and validation loss came from, and which
      schedule the suggestion assumes.
    """
    package = lightning_package(module)
    check_module(module, optimizer)
    _check_data_arguments(datamodule, train_dataloaders, val_dataloaders)
    chosen = _checked_settings(settings, options, mode, for_schedule, training_steps, sweep)
    run_mode = mode if mode is not None else chosen.mode
    notices: list[str] = []
    facts: dict[str, Any] = {"package": package}
    train_data, val_data = _module_data(module, datamodule, train_dataloaders,
                                        val_dataloaders, run_mode == "search", facts, notices)
    optimizer, configured, why = _optimizer_and_schedule(module, optimizer, chosen, facts,
                                                         notices)
    assumed, from_module = common.suggestion_schedule(for_schedule, chosen, configured)
    approximate = why if from_module else None
    facts["for_schedule"], facts["schedule_exact"] = assumed, approximate is None
    if approximate is not None:
        notices.append(
            f"lr_find_lightning: the suggestion assumes for_schedule={assumed!r} for the "
            f"module's {facts['scheduler']}: {approximate}. Pass for_schedule= to choose "
            "another"
        )
    counts = {"log_calls_ignored": 0}
    with _kept_while_running(module, optimizer, train_data, counts, notices):
        result = lr_find(
            module, optimizer, train_data, step_fn=lightning_step(module, datamodule),
            mode=mode, for_schedule=assumed, val_data=val_data,
            training_steps=training_steps, settings=chosen, options=options, **sweep,
        )
    facts.update(counts)
    result.meta["lightning"] = facts
    warn_user(notices)
    return result


def _checked_settings(
    settings: Settings | str | None, options: Any, mode: str | None,
    for_schedule: str | None, training_steps: int | None, sweep: dict[str, Any],
) -> Settings:
    """``settings`` resolved, once every argument lr_find will get is checked as it
    checks them, before any hook of the module or datamodule runs (a bad ``start_lr``
    should not wait for a download in ``prepare_data``)."""
    common.check_sweep_keywords("lr_find_lightning", sweep)
    checked_options(options)
    keywords = {name: value for name, value in sweep.items() if name != "plot_path"}
    check_settings(call_settings(settings, mode=mode, for_schedule=for_schedule,
                                 training_steps=training_steps, **keywords))
    check_plot_path(sweep.get("plot_path"))
    return resolve_settings(settings)


@contextmanager
def _kept_while_running(module: Any, optimizer: torch.optim.Optimizer, train_data: Any,
                        counts: dict[str, int], notices: list[str]) -> Iterator[None]:
    """What lr_find itself does not put back, put back after it: the stand-ins, the
    metrics, LRs a scheduler set to 0 and the generators and positions of combined
    train loaders (lr_find sees only the :class:`CombinedBatches` around them)."""
    loaders = train_data.loaders if isinstance(train_data, CombinedBatches) else []
    with ExitStack() as stack:
        stack.enter_context(kept_loader_positions(loaders))
        stack.enter_context(kept_loader_generators(loaders))
        stack.enter_context(stand_ins(module, counts))
        stack.enter_context(saved_metrics(module))
        stack.enter_context(common.usable_lrs(optimizer, notices))
        yield


def _check_data_arguments(datamodule: Any, train_dataloaders: Any,
                          val_dataloaders: Any) -> None:
    """A datamodule, or dataloaders, as ``Trainer.fit`` takes them."""
    if datamodule is None:
        return
    lightning_package(datamodule, "LightningDataModule")
    if train_dataloaders is not None or val_dataloaders is not None:
        raise ValueError(
            "pass a datamodule or train_dataloaders/val_dataloaders, not both (as Trainer.fit)"
        )


def _optimizer_and_schedule(
    module: Any, optimizer: Any, chosen: Settings, facts: dict[str, Any], notices: list[str]
) -> tuple[torch.optim.Optimizer, str, str | None]:
    """The optimizer to sweep and the schedule it trains under, ``(optimizer, schedule,
    why it is approximate or None)``: ``configure_optimizers()``'s and its scheduler's,
    or ``optimizer=``, whose schedule is unknown (the settings' ``for_schedule``)."""
    if optimizer is None:
        optimizer, scheduler = configured_optimizer(module, notices)
        facts["optimizer"] = f"configure_optimizers(): {type(optimizer).__name__}"
        facts["scheduler"] = None if scheduler is None else type(scheduler).__name__
        return (optimizer, *module_schedule(scheduler))
    facts["optimizer"], facts["scheduler"] = f"optimizer= ({type(optimizer).__name__})", None
    return optimizer, chosen.for_schedule, None


def _module_data(
    module: Any, datamodule: Any, train_dataloaders: Any, val_dataloaders: Any,
    searching: bool, facts: dict[str, Any], notices: list[str],
) -> tuple[Any, Any]:
    """The training data and the validation data (None unless given or searching),
    from the loaders given, the datamodule (prepared first) or the module; where
    each came from goes into ``facts``."""
    if datamodule is not None:
        prepare_datamodule(datamodule)
    train_data, facts["train_data"] = _loader(
        train_dataloaders, "train_dataloaders", datamodule, module, "train_dataloader"
    )
    if train_data is None:
        raise ValueError(
            "no training data: pass train_dataloaders= or a datamodule, or define the "
            "module's train_dataloader()"
        )
    train_data = train_batches(train_data, facts["train_data"], facts["package"])
    if isinstance(train_data, CombinedBatches):
        facts["train_data"] += f" ({len(train_data.loaders)} loaders, combined as by Trainer.fit)"
    val_data, facts["val_data"] = None, None
    if val_dataloaders is not None or searching:
        val_data, facts["val_data"] = _loader(
            val_dataloaders, "val_dataloaders", datamodule, module, "val_dataloader"
        )
        val_data = _first_loader(val_data, facts["val_data"], notices)
    facts["val_loss"] = None if val_data is None else "training_step in eval mode, no grad"
    return train_data, val_data


def check_module(module: Any, optimizer: Any) -> None:
    """The module trains with automatic optimization, and defines ``training_step`` and
    (unless ``optimizer`` is given) ``configure_optimizers``."""
    if not getattr(module, "automatic_optimization", True):
        raise TypeError(
            "the module uses manual optimization (automatic_optimization=False): its "
            "training_step steps its optimizers itself, and lr_find must. Call "
            "lrfind_torch.lr_find with a step_fn that computes the loss"
        )
    if not overrides(module, "training_step"):
        raise TypeError(f"{type(module).__name__} does not define training_step")
    if optimizer is None and not overrides(module, "configure_optimizers"):
        raise TypeError(
            f"{type(module).__name__} does not define configure_optimizers: define it or "
            "pass optimizer="
        )


def lightning_package(value: Any, base: str = "LightningModule") -> str:
    """The package (``lightning`` or ``pytorch_lightning``) whose ``base`` class ``value``
    is an instance of; a ``TypeError`` if none."""
    package = common.package_of(value, base, PACKAGES)
    if package is not None:
        return package
    raise TypeError(
        f"expected a Lightning {base} (from lightning or pytorch_lightning), got "
        f"{type(value).__name__}"
    )


def overrides(value: Any, name: str) -> bool:
    """Whether ``value`` has its own ``name`` rather than Lightning's default (which
    raises or does nothing)."""
    if value is None or not hasattr(value, name):
        return False
    if name in vars(value):
        return True
    for cls in type(value).__mro__:
        if name in vars(cls):
            return cls.__module__.split(".")[0] not in PACKAGES
    return False


def prepare_datamodule(datamodule: Any) -> None:
    """``prepare_data()`` and ``setup("fit")``, as a Trainer's fit calls them; the RNGs
    are put back afterwards (a ``random_split`` draws from them)."""
    states = rng_states()
    try:
        datamodule.prepare_data()
        datamodule.setup(stage="fit")
    finally:
        set_rng_states(states)


def _loader(
    given: Any, name: str, datamodule: Any, module: Any, hook: str
) -> tuple[Any, str | None]:
    """The loader(s) as given: ``given``, else the datamodule's ``hook()``, else the
    module's; and where they came from."""
    if given is not None:
        return given, name
    for owner, label in ((datamodule, "datamodule"), (module, "module")):
        if overrides(owner, hook):
            return getattr(owner, hook)(), f"{label}.{hook}()"
    return None, None


class CombinedBatches:
    """The batches ``training_step`` gets under ``Trainer.fit`` from several train
    loaders: Lightning's ``CombinedLoader`` (in the mode fit uses, ``"max_size_cycle"``,
    unless the user built one) yields ``(batch, batch_idx, dataloader_idx)``; this
    yields the batch alone, a pass at a time, and has the length of a pass."""

    def __init__(self, combined: Any) -> None:
        self.combined = combined
        self.loaders: list[Any] = list(combined.flattened)

    def __iter__(self) -> Iterator[Any]:
        for batch, _, _ in self.combined:
            yield batch

    def __len__(self) -> int:
        lengths = [len(loader) for loader in self.loaders]  # a TypeError if one has none
        return min(lengths) if getattr(self.combined, "_mode", None) == "min_size" else max(
            lengths)


def train_batches(value: Any, name: str, package: str) -> Any:
    """The training batches of ``value`` as ``Trainer.fit`` makes them: a dict, list or
    tuple of loaders, or a ``CombinedLoader``, as :class:`CombinedBatches` (one batch of
    each loader per step, the shorter ones cycled); anything else as it is."""
    if common.package_of(value, "CombinedLoader", PACKAGES) is not None:
        combined = value
    elif _several_loaders(value):
        combined = _combined_loader_class(package, name)(value, mode="max_size_cycle")
    else:
        return value
    if getattr(combined, "_mode", None) == "sequential":
        raise ValueError(
            f'{name} is a CombinedLoader(mode="sequential"), which Trainer.fit does not '
            'train on either: use mode="max_size_cycle", "min_size" or "max_size"'
        )
    return CombinedBatches(combined)


def _several_loaders(value: Any) -> bool:
    """A dict of anything, or a list/tuple of loaders (a list of batches is a plain
    iterable of batches)."""
    if isinstance(value, Mapping):
        return bool(value)
    return (isinstance(value, Sequence) and not isinstance(value, str) and bool(value)
            and _is_loader(value[0]))


def _combined_loader_class(package: str, name: str) -> Any:
    """Lightning's own ``CombinedLoader``, from the package the module comes from."""
    path = ("lightning.pytorch" if package == "lightning" else package) + (
        ".utilities.combined_loader")
    try:
        return importlib.import_module(path).CombinedLoader
    except (ImportError, AttributeError) as error:
        raise ValueError(
            f"{name} holds several dataloaders, which Trainer.fit combines with "
            f"{path}.CombinedLoader, and this {package} has none: pass one loader whose "
            "batches are what training_step takes"
        ) from error


def _first_loader(value: Any, name: str | None, notices: list[str]) -> Any:
    """One loader from what Lightning accepts: a loader, or a list/tuple/dict of them."""
    several = None
    if isinstance(value, Mapping) and value:
        several = list(value.values())
    elif isinstance(value, Sequence) and value and _is_loader(value[0]):
        several = list(value)
    if several is None:
        return value
    if len(several) > 1:
        notices.append(f"{name} holds {len(several)} dataloaders: lr_find uses the first")
    return several[0]


def _is_loader(value: Any) -> bool:
    return isinstance(value, torch.utils.data.DataLoader) or (
        hasattr(value, "__iter__") and hasattr(value, "__len__") and hasattr(value, "dataset")
    )


def configured_optimizer(module: Any, notices: list[str]) -> tuple[Any, Any]:
    """The first optimizer of ``configure_optimizers()`` and the first scheduler returned
    with it (or None)."""
    try:
        configured = module.configure_optimizers()
    except RuntimeError as error:
        if "not attached to a `Trainer`" not in str(error):
            raise
        raise RuntimeError(
            "configure_optimizers() uses self.trainer, and lr_find_lightning runs without "
            "a Trainer: pass the optimizer it builds as optimizer="
        ) from error
    optimizers, schedulers = split_configuration(configured)
    if not optimizers:
        raise ValueError(
            "configure_optimizers() returned no optimizer: lr_find needs one (or pass "
            "optimizer=)"
        )
    if len(optimizers) > 1:
        notices.append(
            f"configure_optimizers() returned {len(optimizers)} optimizers: lr_find uses the "
            f"first ({type(optimizers[0]).__name__})"
        )
    return optimizers[0], (schedulers[0] if schedulers else None)


def module_schedule(scheduler: Any) -> tuple[str, str | None]:
    """``(for_schedule, why approximate or None)`` for the scheduler a module returns."""
    if scheduler is None:
        return "constant", None
    return SCHEDULES.get(type(scheduler).__name__, UNKNOWN_SCHEDULE)


def split_configuration(configured: Any) -> tuple[list[Any], list[Any]]:
    """The optimizers and schedulers of any form ``configure_optimizers`` may return:
    an optimizer; a dict with ``"optimizer"`` (and ``"lr_scheduler"``, itself a
    scheduler or a dict with ``"scheduler"``); a list or tuple of those; or two lists,
    ``([optimizers], [schedulers])``."""
    if configured is None:
        return [], []
    if isinstance(configured, torch.optim.Optimizer):
        return [configured], []
    if isinstance(configured, Mapping):
        scheduler = configured.get("lr_scheduler")
        if isinstance(scheduler, Mapping):
            scheduler = scheduler.get("scheduler")
        optimizer = configured.get("optimizer")
        return ([optimizer] if optimizer is not None else []), (
            [scheduler] if scheduler is not None else [])
    if isinstance(configured, Sequence) and not isinstance(configured, str):
        items = list(configured)
        if len(items) == 2 and all(isinstance(i, Sequence) for i in items):
            optimizers, schedulers = [], []
            for entry in items[1]:
                schedulers.append(entry.get("scheduler") if isinstance(entry, Mapping) else entry)
            for entry in items[0]:
                optimizers += split_configuration(entry)[0]
            return optimizers, [s for s in schedulers if s is not None]
        optimizers, schedulers = [], []
        for entry in items:
            more, later = split_configuration(entry)
            optimizers += more
            schedulers += later
        return optimizers, schedulers
    raise TypeError(
        f"configure_optimizers() returned {type(configured).__name__}, which is not a form "
        "Lightning accepts (an optimizer, a dict with 'optimizer', or lists of them)"
    )


def lightning_step(module: Any, datamodule: Any) -> Callable[[Any, Any], torch.Tensor]:
    """``step_fn(model, batch)``: the batch hooks, then ``training_step``'s loss."""
    counters = {True: 0, False: 0}  # training batches, validation batches

    def hook(name: str) -> Any:
        return getattr(datamodule if overrides(datamodule, name) else module, name)

    takes_index = _takes_batch_index(module.training_step)

    def step(model: Any, batch: Any) -> torch.Tensor:
        device = next(model.parameters()).device
        batch = hook("on_before_batch_transfer")(batch, 0)
        batch = hook("transfer_batch_to_device")(batch, device, 0)
        batch = hook("on_after_batch_transfer")(batch, 0)
        training = torch.is_grad_enabled()
        index = counters[training]
        counters[training] += 1
        output = _called_without_trainer(model.training_step, batch, index, takes_index)
        if isinstance(output, Mapping):
            if "loss" not in output:
                raise ValueError(
                    "training_step returned a dict without 'loss' "
                    f"(keys: {sorted(map(str, output))}); lr_find needs the loss"
                )
            output = output["loss"]
        if output is None:
            raise ValueError(
                "training_step returned None (Lightning's way to skip a batch): lr_find needs "
                "a loss for every batch"
            )
        return output

    return step


def _called_without_trainer(training_step: Callable[..., Any], batch: Any, index: int,
                            takes_index: bool) -> Any:
    """``training_step(batch[, index])``; Lightning's bare "not attached to a Trainer"
    (``self.optimizers()``, ``self.lr_schedulers()``, ``self.trainer``...) explained."""
    try:
        return training_step(batch, index) if takes_index else training_step(batch)
    except RuntimeError as error:
        if "not attached to a `Trainer`" not in str(error):
            raise
        raise RuntimeError(
            "training_step uses the Trainer (self.optimizers(), self.lr_schedulers(), "
            "self.trainer...), and lr_find_lightning calls it without one: skip that code "
            "when the module has no Trainer (if self._trainer is not None: ...; to log the "
            "LR, Lightning's LearningRateMonitor callback does it outside training_step), or "
            "call lrfind_torch.lr_find with a step_fn that computes the loss"
        ) from error


def _takes_batch_index(training_step: Callable[..., Any]) -> bool:
    """Whether ``training_step`` accepts ``batch_idx`` (Lightning passes it only then)."""
    try:
        parameters = list(inspect.signature(training_step).parameters.values())
    except (TypeError, ValueError):
        return True
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return True
    positional = [p for p in parameters if p.kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2


@contextmanager
def stand_ins(module: Any, counts: dict[str, int]) -> Iterator[None]:
    """``log``/``log_dict`` that count and drop, ``print`` that prints, on the module and
    every LightningModule inside it, removed afterwards."""
    owners = [m for m in module.modules() if _is_lightning_module(m)]
    replaced: list[tuple[Any, str, bool, Any]] = []

    def ignore(*args: Any, **kwargs: Any) -> None:
        counts["log_calls_ignored"] += 1

    def plain_print(*args: Any, **kwargs: Any) -> None:
        print(*args, **kwargs)

    try:
        for owner in owners:
            for name, function in zip(STAND_INS, (ignore, ignore, plain_print), strict=True):
                own = vars(owner)
                replaced.append((owner, name, name in own, own.get(name)))
                own[name] = function
        yield
    finally:
        for owner, name, had, previous in reversed(replaced):
            if had:
                vars(owner)[name] = previous
            else:
                vars(owner).pop(name, None)


def _is_lightning_module(value: Any) -> bool:
    try:
        lightning_package(value)
    except TypeError:
        return False
    return True


@contextmanager
def saved_metrics(module: Any) -> Iterator[None]:
    """Put back the state of every torchmetrics ``Metric`` in the module (its states are
    plain attributes listed in ``_defaults``, not buffers, so the snapshot of the
    model does not hold them)."""
    saved = []
    for metric in module.modules():
        defaults = getattr(metric, "_defaults", None)
        if not isinstance(defaults, dict) or not hasattr(metric, "reset"):
            continue
        names = [*defaults, *(a for a in METRIC_ATTRIBUTES if a in vars(metric))]
        saved.append((metric, {name: _copy(getattr(metric, name)) for name in names}))
    try:
        yield
    finally:
        for metric, values in saved:
            for name, value in values.items():
                setattr(metric, name, value)


def _copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return copy.deepcopy(value)


__all__ = [
    "PACKAGES",
    "SCHEDULES",
    "configured_optimizer",
    "lightning_package",
    "lightning_step",
    "lr_find_lightning",
    "overrides",
    "split_configuration",
]
