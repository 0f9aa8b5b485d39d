"""Online sweep monitor: smoothing plus stop rule, one call per recorded loss.

This is what a backend runs while sweeping (the torch backend on host floats,
the JAX backend on ``jax.numpy`` inside its compiled loop). The final result is
always recomputed in float64 from the raw losses by :mod:`lrfind_core.result`,
so both backends report the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from lrfind_core.array_namespace import python_scalars
from lrfind_core.smoothing import EwaState, ewa_init, ewa_update
from lrfind_core.stopping import StopState, stop_init, stop_update


class MonitorSettings(NamedTuple):
    """Static settings: EWA ``beta``, ``debias`` and the ``diverge_factor``."""

    beta: float
    debias: bool
    diverge_factor: float


class MonitorState(NamedTuple):
    """The online smoothing and stop-rule state."""

    ewa: EwaState
    stop: StopState


def monitor_init(xp: Any = python_scalars, dtype: Any = None) -> MonitorState:
    """Fresh monitor state; ``dtype`` is the float dtype of the running values."""
    return MonitorState(ewa_init(xp, dtype), stop_init(xp, dtype))


def monitor_update(
    state: MonitorState, loss: Any, settings: MonitorSettings, xp: Any = python_scalars
) -> tuple[MonitorState, Any, Any]:
    """Fold in one raw loss; return ``(state, smoothed_loss, stop_code)``."""
    is_first = state.ewa.count == 0
    ewa, smoothed = ewa_update(state.ewa, loss, beta=settings.beta, debias=settings.debias, xp=xp)
    stop, code = stop_update(
        state.stop, loss, smoothed, is_first, diverge_factor=settings.diverge_factor, xp=xp
    )
    return MonitorState(ewa, stop), smoothed, code


def monitor_fold(
    state: MonitorState, losses: Iterable[float], settings: MonitorSettings
) -> tuple[MonitorState, int | None]:
    """Fold raw losses into the monitor in order, up to the first that fires the rule.

    Returns the state after the last loss folded and that loss's offset from the
    start of ``losses`` (None when none fired). A backend checks a growing curve with it,
    a chunk at a time, in time linear in the curve's length.
    """
    for offset, value in enumerate(losses):
        state, _, code = monitor_update(state, value, settings)
        if code:
            return state, offset
    return state, None
