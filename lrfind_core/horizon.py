"""The horizon correction: from the best LR of a short run to the best LR of the
planned training.

A search measures its candidates over ``h`` optimizer steps, usually far fewer
than the ``T`` the user will train. Short runs favour higher LRs: on lrfind's
suggestion-quality benchmark (15 tasks, both schedules, budgets of 0.3, 1 and 3
times ``T``; ``bench/RESULTS.md``) the best LR of the last rung's ``h``-step runs
was a median 0.65 to 0.86 decades above the grid search's best for ``T`` steps
at budgets of 0.3x and 1x, and 0.34 decades at 3x. Taking the best LR for ``T``
steps as the best for ``h`` steps times ``(h / T) ** HORIZON_EXPONENT`` removes
that bias. One exponent serves both schedules: fit per schedule, the benchmark's
best exponents were 0.85 (one-cycle) and 0.75 (constant), and anything from 0.7 to
0.95 scored within seed noise of the best.
"""

from __future__ import annotations

HORIZON_EXPONENT = 0.8
"""The best LR scales as ``steps ** -HORIZON_EXPONENT`` between the measured and the
planned run length (see the module)."""


def horizon_factor(
    measured_steps: int, training_steps: int, exponent: float = HORIZON_EXPONENT
) -> float:
    """The factor from the best LR of ``measured_steps``-step runs to the best LR of
    ``training_steps`` steps: ``(measured / training) ** exponent``, or 1 when the runs
    were at least as long as the training."""
    if measured_steps <= 0 or training_steps <= 0:
        raise ValueError(
            f"steps must be positive, got measured_steps={measured_steps}, "
            f"training_steps={training_steps}"
        )
    if measured_steps >= training_steps:
        return 1.0
    return float((measured_steps / training_steps) ** exponent)


__all__ = ["HORIZON_EXPONENT", "horizon_factor"]
