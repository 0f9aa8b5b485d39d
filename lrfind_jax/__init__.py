"""lrfind_jax: the LR finder for JAX/optax (and Flax), compiled end to end.

``lr_find(params, optimizer, train_data, loss_fn)`` runs every planned run in one
``jax.jit``-compiled program and returns :class:`LRFindResult`, the same result
the torch backend returns. :func:`lr_find_nnx`, :func:`lr_find_linen` and
:func:`lr_find_train_state` adapt Flax models and train states,
:func:`lr_find_equinox` equinox models (Flax and equinox are imported only when
used). :class:`Settings` (shared with the torch backend) and :class:`JaxOptions`
hold the rarer settings.
"""

from lrfind_core.result import LRFindResult
from lrfind_core.settings import Settings
from lrfind_jax.equinox_adapter import lr_find_equinox
from lrfind_jax.finder import lr_find
from lrfind_jax.flax_adapters import lr_find_linen, lr_find_nnx, lr_find_train_state
from lrfind_jax.one_cycle import one_cycle_schedule
from lrfind_jax.options import DEFAULT_CHUNK_SIZE, JaxOptions
from lrfind_jax.sweep import clear_program_cache

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "JaxOptions",
    "LRFindResult",
    "Settings",
    "clear_program_cache",
    "lr_find",
    "lr_find_equinox",
    "lr_find_linen",
    "lr_find_nnx",
    "lr_find_train_state",
    "one_cycle_schedule",
]
