"""lrfind_core: the framework-free part of lrfind (numpy only).

For users:

* :class:`Settings` and :data:`PRESETS`: every setting of a range test, shared by
  both backends (``lr_find(..., settings=Settings(beta=0.9))`` or ``settings="fastai"``);
* :class:`LRFindResult`: what every ``lr_find`` returns, and
  ``LRFindResult.from_curve(lrs, losses)`` to judge a curve recorded by any tool;
  ``LRFindResult.load(path)`` reads a saved one;
* :class:`Suggestion`, :func:`register_method` and :func:`available_methods`: the
  suggestion methods (:class:`MethodOutput` is what a method returns);
* :func:`make_schedule`, :func:`ewa_smooth` and :func:`find_stop`: the sweep's LR
  schedule, its smoothing and its stop rule, over whole curves.

For backends: :mod:`lrfind_core.shell` (the shared run), :mod:`lrfind_core.plan`
(runs and records), :mod:`lrfind_core.monitor` (the online stop rule, written
against an array namespace), :mod:`lrfind_core.arguments` (argument checks) and
:mod:`lrfind_core.batch_source` (iterating the user's batches).
"""

from lrfind_core.result import LRFindResult
from lrfind_core.schedules import make_schedule
from lrfind_core.settings import PRESETS, Settings
from lrfind_core.smoothing import ewa_smooth
from lrfind_core.stopping import find_stop
from lrfind_core.suggestion import Suggestion, available_methods, register_method
from lrfind_core.suggestion_methods import MethodOutput
from lrfind_core.version import __version__

__all__ = [
    "PRESETS",
    "LRFindResult",
    "MethodOutput",
    "Settings",
    "Suggestion",
    "__version__",
    "available_methods",
    "ewa_smooth",
    "find_stop",
    "make_schedule",
    "register_method",
]
