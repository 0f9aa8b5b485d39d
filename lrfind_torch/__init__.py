"""lrfind_torch: the LR finder for PyTorch models, with exact state restore.

``lr_find(model, optimizer, train_data, loss_fn)`` returns an
:class:`LRFindResult`; :class:`Settings` (shared with the JAX backend) and
:class:`TorchOptions` hold the rarer settings; :func:`one_cycle_scheduler`
trains with the result.
"""

from lrfind_core.result import LRFindResult
from lrfind_core.settings import Settings
from lrfind_torch.finder import lr_find
from lrfind_torch.one_cycle import one_cycle_scheduler
from lrfind_torch.options import TorchOptions
from lrfind_torch.state import TrainingSnapshot

__all__ = [
    "LRFindResult",
    "Settings",
    "TorchOptions",
    "TrainingSnapshot",
    "lr_find",
    "one_cycle_scheduler",
]
