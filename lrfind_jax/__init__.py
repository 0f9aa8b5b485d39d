"""lrfind_jax: the LR range test for JAX/optax (and Flax), compiled end to end.

``lr_find(loss_fn, params, optimizer, train_data)`` runs the whole sweep inside
one ``jax.jit``-compiled loop and returns :class:`lrfind_core.LRFindResult`, the
same result the torch backend returns; ``num_sweeps=K`` and
``mode="independent"`` run K sweeps or the independent runs as one ``jax.vmap``-ed
program. :func:`lr_find_nnx` and :func:`lr_find_linen` adapt Flax models (Flax is
imported only when used).
"""

from lrfind_jax.finder import DEFAULT_CHUNK_SIZE, lr_find
from lrfind_jax.flax_adapters import lr_find_linen, lr_find_nnx
from lrfind_jax.schedules import one_cycle_schedule
from lrfind_jax.sweep import clear_program_cache

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "clear_program_cache",
    "lr_find",
    "lr_find_linen",
    "lr_find_nnx",
    "one_cycle_schedule",
]
