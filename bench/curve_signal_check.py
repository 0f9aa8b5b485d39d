"""How often the noise warning (:mod:`lrfind_core.curve_signal`) fires, on noise and on real curves.

* On curves of pure noise (independent normal losses around a constant, the
  default smoothing, ``skip_start`` = a tenth): the share of curves it warns on,
  for 50, 100 and 200 points (3,000 curves each, seeded).
* On the real classic and K-sweep curves the quality benchmark recorded
  (``bench/quality_runs/*/seed*_classic.json`` and ``*_k_sweeps.json``) that ran
  to their end (the warning is not given for a curve that stopped): the lowest
  fall in noise units, and how many it warns on (it should be none); and the
  same over every curve, stopped or not, as a stricter check.

    python bench/curve_signal_check.py [--json bench/curve_signal_check.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from lrfind_core.curve_signal import (  # noqa: E402
    MIN_FALL_IN_NOISE,
    fall_in_noise_units,
    sweep_fall_in_noise_units,
)
from lrfind_core.result import LRFindResult  # noqa: E402
from lrfind_core.smoothing import ewa_smooth  # noqa: E402

BETA = 0.98


def noise_shares(seed: int = 0, curves: int = 3000) -> dict[int, float]:
    """Per curve length, the share of pure-noise curves the warning fires on."""
    rng = np.random.default_rng(seed)
    shares = {}
    for points in (50, 100, 200):
        units = []
        for _ in range(curves):
            losses = 1.0 + 0.03 * rng.standard_normal(points)
            measured = fall_in_noise_units(losses, ewa_smooth(losses, BETA, True),
                                           points // 10, BETA)
            units.append(measured[0])
        shares[points] = float(np.mean(np.array(units) < MIN_FALL_IN_NOISE))
    return shares


def real_curves(ran_to_end: bool = True) -> dict[str, float]:
    """Each recorded classic or K-sweep curve's fall in noise units: those the warning
    judges (``ran_to_end``: curves that did not stop), or every one, stopped or not."""
    found = {}
    paths = sorted(HERE.glob("quality_runs/*/seed*_classic.json")) + sorted(
        HERE.glob("quality_runs/*/seed*_k_sweeps.json"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            result = LRFindResult.load(path)
            if ran_to_end:
                measured = sweep_fall_in_noise_units(result)
            else:
                measured = fall_in_noise_units(result.losses, result.smoothed_losses,
                                               result.planned_points // 10,
                                               result.settings.beta)
            if measured is not None:
                found[f"{path.parent.name}/{path.name}"] = measured[0]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    shares = noise_shares()
    real = real_curves()
    warned = sorted(name for name, units in real.items() if units < MIN_FALL_IN_NOISE)
    summary = {
        "threshold": MIN_FALL_IN_NOISE,
        "noise_warned_share_by_points": shares,
        "real_curves": len(real),
        "real_lowest_units": min(real.values()),
        "real_warned": warned,
        "every_real_curve": len(every := real_curves(ran_to_end=False)),
        "every_real_lowest_units": min(every.values()),
    }
    print(json.dumps(summary, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps({**summary, "real_units": real}, indent=1) + "\n")


if __name__ == "__main__":
    main()
