"""The ``lrfind`` command line: ``lrfind demo`` and ``lrfind show RESULT.json``."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence


def _show(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from lrfind_core.result import LRFindResult

    result = LRFindResult.load(args.result)
    print(result)
    for detail in result.suggestion_details.values():
        lr = "None" if detail.lr is None else f"{detail.lr:.3g}"
        print(f"  {detail.method:>8}: {lr}  ({detail.reason})")
    if args.plot:
        result.plot(path=args.plot)
        print(f"plot saved to {args.plot}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    try:
        demo = importlib.import_module("lrfind_torch.demo")
    except ImportError:
        # Until the torch backend lands: judge a generated curve with the core alone.
        import os

        import matplotlib
        import numpy as np

        matplotlib.use("Agg")
        from lrfind_core.result import LRFindResult
        from lrfind_core.schedules import exponential_schedule

        lrs = exponential_schedule(1e-7, 10.0, 100)
        decades = np.log10(lrs)
        noise = np.random.default_rng(args.seed).normal(0.0, 0.02, lrs.shape)
        losses = 2.3 - 1.5 / (1 + np.exp(-2 * (decades + 3))) + np.exp(4 * (decades + 0.5)) + noise
        result = LRFindResult.from_curve(lrs, losses)
        os.makedirs(args.out, exist_ok=True)
        result.plot(path=os.path.join(args.out, "lr_find.png"))
        print(result)
        return 0
    return int(demo.main(out_dir=args.out, seed=args.seed))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lrfind`` console script."""
    parser = argparse.ArgumentParser(prog="lrfind", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="LR find on bundled digits, then train at the suggestion"
    )
    demo.add_argument("--out", default="lrfind_demo_out", help="folder for the plot and result")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    show = commands.add_parser(
        "show", help="print a saved result's suggestions, optionally plot it"
    )
    show.add_argument("result", help="a JSON file written by LRFindResult.save")
    show.add_argument("--plot", help="save the plot as this PNG")
    show.set_defaults(run=_show)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
