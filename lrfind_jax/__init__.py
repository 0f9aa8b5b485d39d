"""lrfind_jax: the LR range test for JAX/optax (and Flax), compiled end to end.

``lr_find(loss_fn, params, optimizer, train_data)`` runs the whole sweep inside
one ``jax.jit``-compiled loop and returns :class:`lrfind_core.LRFindResult`, the
same result the torch backend returns. :func:`lr_find_nnx` and
:func:`lr_find_linen` adapt Flax models.
"""

from lrfind_jax.finder import lr_find

__all__ = ["lr_find"]
