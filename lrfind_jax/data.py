"""Training data for the compiled sweep: stacked arrays, or a sequence of batches.

The rule (by the type of ``train_data``):

* a tuple (NamedTuples included), a dict (any Mapping) or an array is **stacked
  data**: a pytree of arrays whose leading axis is the step. Leaf ``x`` gives
  batch ``x[m]`` to micro-step ``m``. It is put on the device once (arrays
  already there stay where they are) and indexed inside the compiled loop,
  cycling with a warning when it holds fewer batches than the sweep needs. This is
  the fastest path.
* anything else iterable (a list, an iterator, a generator, a torch
  ``DataLoader``) is a **sequence of batches**, each a pytree of arrays (numpy,
  jax or torch tensors). Batches are pulled on the host, stacked into chunks of
  equal size and transferred one chunk at a time (the next chunk is stacked
  while the device runs the current one, so up to one chunk more than the sweep
  uses may be drawn). A re-iterable that runs out is cycled with a warning; a
  one-shot iterator that runs out ends the sweep. With ``num_sweeps > 1`` or
  ``mode="independent"`` every batch the runs read (``K * num_steps * k`` or
  ``K * steps_per_lr * k``) is pulled and stacked on the device up front, so the
  vmapped runs need no host work.

Every batch must have the same structure, shapes and dtypes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrfind_core.batch_source import BatchSource, DataExhausted


def is_stacked(data: Any) -> bool:
    """Whether ``data`` is stacked (tuple, Mapping or array) rather than a sequence."""
    return isinstance(data, tuple | Mapping | jax.Array | np.ndarray) or _is_array_like(data)


def _is_array_like(value: Any) -> bool:
    return hasattr(value, "__array__") and hasattr(value, "shape") and hasattr(value, "dtype")


def _to_array(value: Any) -> Any:
    """A jax or numpy array from an array, a torch tensor or a Python number."""
    if isinstance(value, jax.Array | np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensors, on any device
        value = value.detach().cpu()
    return np.asarray(value)


def _check_numeric(value: Any, where: str, name: str) -> None:
    dtype = value.dtype
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        raise TypeError(
            f"{name}{where} holds PRNG keys ({dtype}): for a fresh key every step pass "
            "rng=jax.random.key(0) instead and take the step's key in loss_fn (lr_find: "
            "loss_fn(params, model_state, batch, key); lr_find_nnx: loss_fn(module, batch, "
            "rngs); lr_find_train_state: loss_fn(apply_fn, params, model_state, batch, key); "
            "lr_find_equinox: loss_fn(model, batch, key))"
        )
    if not (jax.dtypes.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise TypeError(
            f"{name}{where} has dtype {dtype}; a compiled sweep takes numeric arrays only"
        )


def _describe(signature: tuple[Any, ...]) -> str:
    return ", ".join(f"{path}: {shape} {dtype}" for path, shape, dtype in signature)


def _leaves_with_paths(tree: Any) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in flat]


@dataclass(frozen=True)
class StackedData:
    """Stacked batches on the device: ``length`` micro-batches along axis 0."""

    arrays: Any
    length: int


def stacked_data(data: Any, *, name: str = "train_data") -> StackedData:
    """Check stacked ``data`` and put it on the device (no copy for jax arrays)."""
    arrays = jax.tree_util.tree_map(_to_array, data)
    leaves = _leaves_with_paths(arrays)
    if not leaves:
        raise ValueError(f"{name} is empty: a stacked pytree with no arrays")
    lengths = set()
    for where, leaf in leaves:
        _check_numeric(leaf, where, name)
        if np.ndim(leaf) < 1:
            raise ValueError(
                f"{name}{where} is a scalar; stacked data needs the step as its leading axis"
            )
        lengths.add(leaf.shape[0])
    if len(lengths) != 1:
        sizes = ", ".join(f"{where}: {leaf.shape[0]}" for where, leaf in leaves)
        raise ValueError(
            f"every array of stacked {name} must have the same leading (step) axis, got {sizes}"
        )
    length = lengths.pop()
    if length == 0:
        raise ValueError(f"{name} is empty: its leading (step) axis has length 0")
    flat = [(where, leaf) for where, leaf in leaves if np.ndim(leaf) == 1]
    if flat:
        shapes = ", ".join(f"{name}{where}: {tuple(leaf.shape)}" for where, leaf in leaves)
        raise ValueError(
            f"{name} is stacked by step (leading axis = step), so {name}{flat[0][0]} of shape "
            f"{tuple(flat[0][1].shape)} gives each step a single scalar: this looks like a whole "
            f"dataset passed as one batch ({shapes}). Stack it into batches of shape "
            "(steps, batch, ...), e.g. x.reshape(steps, batch_size, *x.shape[1:]), or pass a "
            "list of (inputs, labels) batches. If each step really takes one scalar, give "
            "that array a trailing axis: x[:, None]"
        )
    return StackedData(jax.device_put(arrays), int(length))


def batch_example(arrays: Any) -> Any:
    """Shape/dtype structs of one batch of stacked ``arrays`` (leading axis dropped)."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), arrays)


class BatchSequence:
    """Batches pulled from an iterable, checked, and stacked into equal chunks.

    Args:
      data: the iterable, drawn through :class:`lrfind_core.batch_source.BatchSource`:
        a re-iterable is cycled (with one notice) when it runs out; a one-shot
        iterator just ends.
      chunk_batches: micro-batches per chunk (the chunk's leading axis; a last,
        shorter chunk is padded by repeating its last batch, so every chunk has
        the same shape and the compiled sweep is reused).
      name: the argument's name, for messages.
      notices: where to append notices for the user (cycling).
      cycle: False: a re-iterable is read once, like a one-shot iterator.
    """

    def __init__(
        self,
        data: Iterable[Any],
        chunk_batches: int,
        *,
        name: str = "train_data",
        notices: list[str] | None = None,
        cycle: bool = True,
    ):
        if not isinstance(data, Iterable) or isinstance(data, str | bytes):
            raise TypeError(
                f"{name} must be stacked arrays (a tuple, dict or array) or an iterable of "
                f"batches, got {type(data).__name__}"
            )
        self._source = BatchSource(data, name, notices, cycle=cycle)
        self._name = name
        self._chunk_batches = chunk_batches
        self.produced = 0
        self.exhausted = False
        self._treedef: Any = None
        self._signature: tuple[Any, ...] = ()
        first = self._pull()
        if first is None:
            raise ValueError(f"{name} is empty: it yielded no batch")
        self._pending: list[Any] = [first]

    def _raw_next(self) -> Any:
        try:
            return next(self._source)
        except DataExhausted:
            return None

    def _pull(self) -> Any:
        """The next batch as arrays, checked against the first; None when exhausted."""
        if self.exhausted:
            return None
        batch = self._raw_next()
        if batch is None:
            self.exhausted = True
            return None
        arrays = jax.tree_util.tree_map(_to_array, batch)
        flat, treedef = jax.tree_util.tree_flatten_with_path(arrays)
        signature = tuple(
            (jax.tree_util.keystr(path), tuple(np.shape(leaf)), np.dtype(leaf.dtype))
            for path, leaf in flat
        )
        index = self.produced
        if self._treedef is None:
            if not flat:
                raise ValueError(f"{self._name} batch 0 holds no arrays")
            for where, leaf in _leaves_with_paths(arrays):
                _check_numeric(leaf, where, f"{self._name} batch 0")
            self._treedef, self._signature = treedef, signature
        elif treedef != self._treedef or signature != self._signature:
            raise ValueError(
                f"{self._name} batch {index} differs from batch 0: got "
                f"[{_describe(signature)}], batch 0 had [{_describe(self._signature)}]. Every "
                "batch must have the same structure, shapes and dtypes (for a DataLoader, "
                "drop_last=True drops a short last batch)"
            )
        self.produced += 1
        return arrays

    def next_chunk(self, wanted: int) -> tuple[Any, int]:
        """Up to ``wanted`` (<= chunk size) batches stacked on the device, padded to
        the chunk size, and how many are real (0 when the data is exhausted)."""
        batches = self._pending
        self._pending = []
        while len(batches) < wanted:
            batch = self._pull()
            if batch is None:
                break
            batches.append(batch)
        count = len(batches)
        if count == 0:
            return None, 0
        batches += [batches[-1]] * (self._chunk_batches - count)
        return jax.tree_util.tree_map(_stack, *batches), count


def _stack(*leaves: Any) -> Any:
    if all(isinstance(leaf, jax.Array) for leaf in leaves):
        return jnp.stack(leaves)
    return jax.device_put(np.stack([np.asarray(leaf) for leaf in leaves]))




def validation_batches(val_data: Any, count: int) -> Any:
    """The first ``count`` batches of ``val_data`` (stacked, or a sequence), stacked on
    the device; fewer if it holds fewer."""
    if is_stacked(val_data):
        stacked = stacked_data(val_data, name="val_data")
        if stacked.length <= count:
            return stacked.arrays
        return jax.tree_util.tree_map(lambda leaf: leaf[:count], stacked.arrays)
    sequence = BatchSequence(val_data, count, name="val_data")
    data, real = sequence.next_chunk(count)
    return jax.tree_util.tree_map(lambda leaf: leaf[:real], data)


__all__ = [
    "BatchSequence",
    "StackedData",
    "batch_example",
    "is_stacked",
    "stacked_data",
    "validation_batches",
]
