"""One progress bar for a whole call, however many plans its runs take."""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """A tqdm bar (imported when first shown) whose total grows with each plan.

    A call of ``lr_find`` may run several plans (a search: the sweep, then each
    rung); they all advance the same bar, which closes with the call's session.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None

    def grow(self, steps: int) -> None:
        """Add ``steps`` optimizer steps to the total (opening the bar on first use)."""
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=steps, desc="lr_find", leave=False, disable=not self.enabled)
            return
        self._bar.total += steps
        self._bar.refresh()

    def update(self, steps: int) -> None:
        """Advance by ``steps`` optimizer steps."""
        if self._bar is not None and steps:
            self._bar.update(steps)

    def close(self) -> None:
        """Close the bar (safe to call twice)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


__all__ = ["ProgressBar"]
