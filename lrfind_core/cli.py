"""The ``lrfind`` command line: ``lrfind demo`` and ``lrfind show RESULT.json``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
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


DEMO_NEEDS = (
    "lrfind demo runs the torch backend on scikit-learn's bundled digits; install them "
    "with: pip install 'lrfind[demo]'"
)


def _demo(args: argparse.Namespace) -> int:
    """The torch demo; a clear message and exit code 2 when its packages are missing."""
    missing = [name for name in ("torch", "sklearn") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"{DEMO_NEEDS} (missing: {', '.join(missing)})", file=sys.stderr)
        return 2
    demo = importlib.import_module("lrfind_torch.demo")
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
