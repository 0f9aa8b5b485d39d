"""lrfind_core: the framework-free maths of the LR range test (numpy only).

Schedules, EWA smoothing, the stop rule, the suggestion methods, the sweep
config and presets, and the :class:`LRFindResult` both backends return.
"""

from lrfind_core.array_namespace import python_scalars
from lrfind_core.config import DEFAULT_METHODS, PRESETS, FinderConfig, make_config
from lrfind_core.monitor import (
    MonitorSettings,
    MonitorState,
    monitor_fold,
    monitor_init,
    monitor_update,
)
from lrfind_core.result import LRFindResult
from lrfind_core.schedules import SCHEDULES, exponential_schedule, linear_schedule, make_schedule
from lrfind_core.smoothing import EwaState, ewa_init, ewa_smooth, ewa_update
from lrfind_core.stopping import (
    STOP_DIVERGED,
    STOP_NON_FINITE,
    STOP_NONE,
    STOP_REASONS,
    StopState,
    find_stop,
    stop_init,
    stop_update,
)
from lrfind_core.suggestion import (
    Suggestion,
    available_methods,
    register_method,
    suggest,
)
from lrfind_core.suggestion_methods import MethodOutput

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_METHODS",
    "PRESETS",
    "SCHEDULES",
    "STOP_DIVERGED",
    "STOP_NONE",
    "STOP_NON_FINITE",
    "STOP_REASONS",
    "EwaState",
    "FinderConfig",
    "LRFindResult",
    "MethodOutput",
    "MonitorSettings",
    "MonitorState",
    "StopState",
    "Suggestion",
    "available_methods",
    "ewa_init",
    "ewa_smooth",
    "ewa_update",
    "exponential_schedule",
    "find_stop",
    "linear_schedule",
    "make_config",
    "make_schedule",
    "monitor_fold",
    "monitor_init",
    "monitor_update",
    "python_scalars",
    "register_method",
    "stop_init",
    "stop_update",
    "suggest",
]
