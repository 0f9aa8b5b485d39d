"""Exact snapshots of everything a sweep touches, and their restore.

A :class:`TrainingSnapshot` records, before the sweep:

* every parameter and buffer tensor of the model (the objects and a CPU copy of
  their values), the entries of each submodule's parameter and buffer dicts (a
  buffer registered as ``None`` stays ``None``), each submodule's ``training``
  flag, and each parameter's ``.grad`` and ``requires_grad``;
* each submodule's public plain attributes: the objects (added ones are removed),
  the contents of lists, dicts and sets among them, and the values of tensors
  (an object's own inner state is not copied);
* the optimizer's per-parameter state (objects and CPU copies), its param groups
  (``lr`` and ``initial_lr`` included) and its plain attributes (for example the
  ``_opt_called`` flag an LR scheduler uses), and the same of every optimizer it
  holds as an attribute (a wrapper's inner optimizer);
* a ``torch.amp.GradScaler``'s attributes;
* the torch CPU RNG, every initialised CUDA/MPS device's RNG, Python's ``random``
  and numpy's global RNG;
* more modules and optimizers (``restore_also``), the same way, and any other
  object with ``state_dict``/``load_state_dict`` through those.

:meth:`TrainingSnapshot.restore` writes the saved values back *into the original
tensor objects* and puts those objects back where they were, so references a
user holds (to parameters, optimizer state, param groups) stay valid and equal
bit for bit. With ``mode="disk"`` the CPU copies live in a unique temporary file
(in ``directory``) instead of memory; :meth:`close` deletes it.
"""

from __future__ import annotations

import copy
import functools
import os
import random
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def _cpu_copy(value: Any) -> Any:
    """A deep copy with every tensor detached and copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        copied = copy.copy(value)  # keeps the type (and a defaultdict's factory)
        copied.clear()
        copied.update((key, _cpu_copy(item)) for key, item in value.items())
        return copied
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        return type(value)(_cpu_copy(item) for item in value)
    return _deep_copy(value)


def _deep_copy(value: Any) -> Any:
    """A deep copy, or ``value`` itself when it cannot be copied (a lock, a file handle
    in a param group): kept by reference, which the sweep does not replace."""
    try:
        return copy.deepcopy(value)
    except (TypeError, copy.Error):
        return value


def _copy_back(original: Any, saved: Any) -> Any:
    """Write ``saved`` into ``original`` where both are tensors (resized back if the
    sweep resized it), numpy arrays or RNGs, also inside tuples, lists, dicts and sets
    (Adam's tensor ``betas``, a module's history); return the value to keep:
    ``original`` itself wherever it could be written back, and ``saved`` when it is
    the object itself (kept by reference)."""
    if saved is original:
        return original
    if isinstance(original, torch.Tensor) and isinstance(saved, torch.Tensor):
        with torch.no_grad():
            if original.shape == saved.shape and original.dtype == saved.dtype:
                original.copy_(saved)
            else:  # resized in place by the sweep (an observer's buffer): its old shape
                original.data = saved.to(original.device)
        return original
    if isinstance(saved, _RandomState):
        return saved.put_back(original)
    if (isinstance(original, np.ndarray) and isinstance(saved, np.ndarray)
            and original.shape == saved.shape and original.dtype == saved.dtype):
        np.copyto(original, saved)
        return original
    if isinstance(original, list) and isinstance(saved, list):
        items = [_copy_back(old, new) for old, new in zip(original, saved, strict=False)]
        items += [_deep_copy(new) for new in saved[len(original):]]
        if len(items) != len(original) or any(
                a is not b for a, b in zip(items, original, strict=True)):
            original[:] = items
        return original
    if (isinstance(original, tuple) and type(saved) is type(original)
            and len(saved) == len(original)):
        items = [_copy_back(old, new) for old, new in zip(original, saved, strict=True)]
        if all(item is old for item, old in zip(items, original, strict=True)):
            return original
        return type(original)(*items) if hasattr(original, "_fields") else type(original)(items)
    if isinstance(original, dict) and isinstance(saved, dict):
        restored = {key: _copy_back(original[key], value) if key in original
                    else _deep_copy(value) for key, value in saved.items()}
        if list(original) != list(restored) or any(
                original[key] is not value for key, value in restored.items()):
            original.clear()  # only when changed: some dicts refuse it (a ModelOutput)
            original.update(restored)
        return original
    if isinstance(original, set) and isinstance(saved, set):
        if original != saved:
            original.clear()
            original.update(saved)
        return original
    return _deep_copy(saved)


@dataclass(frozen=True)
class _RandomState:
    """The state of a ``torch.Generator`` or a numpy ``Generator`` a module holds."""

    state: Any

    def put_back(self, generator: Any) -> Any:
        if isinstance(generator, torch.Generator):
            generator.set_state(self.state)
        else:
            generator.bit_generator.state = self.state
        return generator


def _attribute_copy(value: Any) -> Any:
    """What the restore needs to put ``value`` (an attribute of a module or optimizer)
    back: CPU copies of tensors and numpy arrays, RNG states, containers item by item,
    anything else by reference (an object's own inner state is not copied)."""
    if isinstance(value, torch.Tensor):
        if value.is_inference() or value.is_meta:  # neither can change in place
            return value
        return value.detach().to("cpu", copy=True)
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, torch.Generator):
        return _RandomState(value.get_state())
    if isinstance(value, np.random.Generator):
        return _RandomState(copy.deepcopy(value.bit_generator.state))
    if isinstance(value, dict):
        return {key: _attribute_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_attribute_copy(item) for item in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return type(value)(_attribute_copy(item) for item in value)
    if isinstance(value, set):
        return set(value)
    return value


def rng_states() -> dict[str, Any]:
    """The torch, Python and numpy RNG states (and CUDA's and MPS's where in use)."""
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the legacy global RNG users seed)
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        states["mps"] = mps.get_rng_state()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Put back RNG states :func:`rng_states` returned."""
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])  # noqa: NPY002
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])
    if "mps" in states:
        torch.mps.set_rng_state(states["mps"])


@dataclass
class _ModuleRecord:
    """Live references to a module's tensors, grads, ``requires_grad`` and training
    flags, and the entries of its parameter and buffer dicts (``None`` included)."""

    containers: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    tensors: list[torch.Tensor] = field(default_factory=list)
    training: list[tuple[torch.nn.Module, bool]] = field(default_factory=list)
    grads: list[tuple[torch.Tensor, torch.Tensor | None, bool]] = field(default_factory=list)
    attributes: list[tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]] = field(
        default_factory=list)
    """Per submodule: its public plain attributes (the objects) and their
    :func:`_attribute_copy` (a ``training_step`` that appends to ``self.outputs``, a
    counter ``self.calls += 1``, a history dict of lists, an RNG of its own)."""

    @classmethod
    def capture(cls, module: torch.nn.Module, values: dict[str, Any]) -> _ModuleRecord:
        """Record ``module``; CPU copies go into ``values["tensors"]``/``values["grads"]``."""
        record = cls()
        seen: set[int] = set()
        for submodule in module.modules():
            record.training.append((submodule, submodule.training))
            for container in (submodule._parameters, submodule._buffers):
                record.containers.append((container, dict(container)))
                for tensor in container.values():
                    if tensor is None or id(tensor) in seen:
                        continue
                    seen.add(id(tensor))
                    key = str(id(tensor))
                    record.tensors.append(tensor)
                    if key not in values["tensors"]:  # a tensor of an earlier module
                        values["tensors"][key] = tensor.detach().to("cpu", copy=True)
                    if isinstance(tensor, torch.nn.Parameter):
                        record.grads.append((tensor, tensor.grad, tensor.requires_grad))
                        if tensor.grad is not None:
                            values["grads"][key] = tensor.grad.detach().to("cpu", copy=True)
            for name in MODULE_DICTS:
                entries = getattr(submodule, name, None)
                if isinstance(entries, dict):
                    record.containers.append((entries, dict(entries)))
            public = {name: value for name, value in vars(submodule).items()
                      if _is_public(name)}
            record.attributes.append((submodule, public, _attribute_copy(public)))
        return record

    def restore(self, values: dict[str, Any]) -> None:
        """Put the original entries back (the same tensor objects, ``None`` where it was
        ``None``, none added), copy the saved values into them, and put back the
        grads, ``requires_grad`` flags and training flags."""
        for container, entries in self.containers:
            container.clear()
            container.update(entries)
        for tensor in self.tensors:  # resized back too, if the sweep resized it
            _copy_back(tensor, values["tensors"][str(id(tensor))])
        for module, public, saved in self.attributes:
            attributes = vars(module)
            for name in [name for name in attributes if _is_public(name)]:
                if name not in public:  # added by the sweep
                    del attributes[name]
            for name, value in public.items():
                attributes[name] = _copy_back(value, saved[name])
        for module, training in self.training:
            module.training = training
        for param, grad, requires_grad in self.grads:
            param.requires_grad_(requires_grad)
            saved = values["grads"].get(str(id(param)))
            param.grad = None if grad is None else _copy_back(grad, saved)


MODULE_DICTS = ("_modules", "_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                "_backward_pre_hooks", "_forward_hooks_with_kwargs",
                "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")
"""A module's dicts of submodules and hooks: entries the sweep adds or replaces (a head
built on first use, a swapped activation, a hook) are put back as they were."""


def _is_public(name: str) -> bool:
    """A user's attribute of a module (torch keeps its own under ``_`` names)."""
    return not name.startswith("_") and name != "training"


@dataclass
class _OptimizerRecord:
    """Live references to an optimizer's state objects and param group dicts."""

    optimizer: torch.optim.Optimizer
    state: dict[torch.Tensor, tuple[dict[str, Any], dict[str, Any]]]
    """Per parameter: its state dict (the object) and that dict's entries."""
    groups: list[dict[str, Any]]
    attributes: dict[str, Any] = field(default_factory=dict)
    """Its other attributes (the objects), and :attr:`saved`, their copies."""
    saved: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def capture(cls, optimizer: torch.optim.Optimizer) -> tuple[_OptimizerRecord, dict[str, Any]]:
        """Record ``optimizer``; return the record and the CPU copies of its values."""
        record = cls(
            optimizer,
            {param: (param_state, dict(param_state))
             for param, param_state in optimizer.state.items()},
            [dict(group) for group in optimizer.param_groups],
        )
        values = {
            "state": {
                str(id(param)): _cpu_copy(dict(param_state))
                for param, param_state in optimizer.state.items()
            },
            "groups": [
                _cpu_copy({k: v for k, v in group.items() if k != "params"})
                for group in optimizer.param_groups
            ],
        }
        record.attributes = {key: value for key, value in vars(optimizer).items()
                             if key not in ("state", "param_groups")}
        record.saved = _attribute_copy(record.attributes)  # in memory: hooks, functions
        return record, values

    def restore(self, values: dict[str, Any]) -> None:
        """State and group dicts back (same objects), attributes back, new ones gone."""
        optimizer = self.optimizer
        for param in list(optimizer.state):
            if param not in self.state:
                del optimizer.state[param]
        for param, (param_state, originals) in self.state.items():
            saved = values["state"][str(id(param))]
            restored = {key: _copy_back(originals[key], saved[key]) for key in originals}
            param_state.clear()  # the same dict object, so references to it stay valid
            param_state.update(restored)
            optimizer.state[param] = param_state
        for group, originals, saved in zip(
            optimizer.param_groups, self.groups, values["groups"], strict=True
        ):
            restored = {"params": originals["params"]}
            for key, value in saved.items():
                restored[key] = _copy_back(originals[key], value)
            group.clear()
            group.update(restored)
        attributes = vars(optimizer)
        for key in set(attributes) - set(self.attributes) - {"state", "param_groups"}:
            del attributes[key]
        for key, value in self.attributes.items():
            attributes[key] = _copy_back(value, self.saved[key])


def _with_inner_optimizers(optimizers: Sequence[Any]) -> list[Any]:
    """``optimizers`` and every optimizer they hold as an attribute (a wrapper such as
    timm's ``Lookahead`` keeps the moments in its ``_base_optimizer``), each once."""
    found: list[Any] = []
    pending = list(optimizers)
    while pending:
        optimizer = pending.pop(0)
        if any(optimizer is seen for seen in found):
            continue
        found.append(optimizer)
        for value in vars(optimizer).values():
            held = value.values() if isinstance(value, dict) else (
                value if isinstance(value, list | tuple) else [value])
            pending += [inner for inner in held if isinstance(inner, torch.optim.Optimizer)]
    return found


class TrainingSnapshot:
    """Everything a sweep changes, saved before it and restorable exactly.

    ``modules`` and ``optimizers`` get the exact, identity-keeping treatment;
    ``extras`` (any other object with ``state_dict``/``load_state_dict``) are
    restored through ``load_state_dict``.
    """

    def __init__(
        self,
        modules: Sequence[torch.nn.Module],
        optimizers: Sequence[torch.optim.Optimizer],
        *,
        grad_scaler: Any = None,
        extras: Iterable[Any] = (),
        mode: str = "memory",
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self._grad_scaler = grad_scaler
        self._extras = list(extras)
        self._path: str | None = None
        values: dict[str, Any] = {"tensors": {}, "grads": {}, "optimizers": []}
        self._modules = [_ModuleRecord.capture(module, values) for module in modules]
        self._optimizers = []
        for optimizer in _with_inner_optimizers(optimizers):
            record, optimizer_values = _OptimizerRecord.capture(optimizer)
            self._optimizers.append(record)
            values["optimizers"].append(optimizer_values)
        if grad_scaler is not None:
            values["scaler"] = _cpu_copy(dict(vars(grad_scaler)))
            self._scaler_objects = dict(vars(grad_scaler))
        values["extras"] = [self._extra_state(extra) for extra in self._extras]
        values["rng"] = rng_states()
        if mode == "disk":
            handle, self._path = tempfile.mkstemp(prefix="lrfind-", suffix=".pt", dir=directory)
            os.close(handle)
            torch.save(values, self._path)
            self._values: dict[str, Any] | None = None
        else:
            self._values = values

    @staticmethod
    def _extra_state(extra: Any) -> Any:
        if not (hasattr(extra, "state_dict") and hasattr(extra, "load_state_dict")):
            raise TypeError(
                "restore_also items need state_dict() and load_state_dict(), got "
                f"{type(extra).__name__}"
            )
        return _cpu_copy(extra.state_dict())

    def _load_values(self) -> dict[str, Any]:
        if self._values is not None:
            return self._values
        assert self._path is not None
        return torch.load(self._path, map_location="cpu", weights_only=False)

    def restore(self) -> None:
        """Put every recorded object and value back as it was at capture time."""
        values = self._load_values()
        parts = [functools.partial(module.restore, values) for module in self._modules]
        parts += [functools.partial(optimizer.restore, optimizer_values) for optimizer,
                  optimizer_values in zip(self._optimizers, values["optimizers"], strict=True)]
        if self._grad_scaler is not None:
            parts.append(functools.partial(self._restore_scaler, values["scaler"]))
        parts += [functools.partial(extra.load_state_dict, copy.deepcopy(state))
                  for extra, state in zip(self._extras, values["extras"], strict=True)]
        parts.append(functools.partial(set_rng_states, values["rng"]))
        errors = []
        for part in parts:  # one part that fails must not leave the others undone
            try:
                part()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]

    def _restore_scaler(self, saved: dict[str, Any]) -> None:
        scaler_vars = vars(self._grad_scaler)
        scaler_vars.clear()
        for key, value in saved.items():
            scaler_vars[key] = _copy_back(self._scaler_objects.get(key), value)

    def close(self) -> None:
        """Delete the temporary file of a disk snapshot (safe to call twice)."""
        if self._path is not None and os.path.exists(self._path):
            os.remove(self._path)
        self._path = None
