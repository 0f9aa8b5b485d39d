"""lr_find for the training frameworks people use, one module each (docs/integrations.md).

* :mod:`lrfind_torch.integrations.huggingface`: ``lr_find_trainer(trainer)`` for a
  ``transformers.Trainer``.
* :mod:`lrfind_torch.integrations.lightning`: ``lr_find_lightning(module, datamodule)``
  for a ``LightningModule`` (``lightning`` or ``pytorch_lightning``), no Trainer needed.

An ``accelerate``-prepared model, optimizer and dataloader need no adapter: pass them
to :func:`lrfind_torch.lr_find` as they are.

Nothing here imports a framework: the adapters recognise the framework's objects by
their class hierarchy and call their methods, so ``import lrfind_torch.integrations``
works without transformers or lightning installed.
"""

__all__: list[str] = []
