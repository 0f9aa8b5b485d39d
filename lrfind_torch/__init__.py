"""lrfind_torch: the LR range test for PyTorch models, with exact state restore."""

from lrfind_torch.finder import lr_find
from lrfind_torch.schedules import one_cycle_scheduler
from lrfind_torch.state import TrainingSnapshot

__all__ = ["TrainingSnapshot", "lr_find", "one_cycle_scheduler"]
