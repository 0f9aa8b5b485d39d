"""The ``lrfind`` command line: ``lrfind demo`` and ``lrfind show RESULT.json``.

Demos are found through the ``lrfind.demos`` entry points that installed
backends declare (``name = "package.module:main"``); the core names no backend.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from typing import Any

DEMO_GROUP = "lrfind.demos"
DEMO_ORDER = ("torch", "jax")
"""Which demo runs when several are installed and none is named."""


def _show(args: argparse.Namespace) -> int:
    """Print a saved result; a file that cannot be read is one line on stderr, exit 1."""
    import matplotlib

    matplotlib.use("Agg")
    from lrfind_core.result import LRFindResult

    def fail(error: BaseException) -> int:
        print(f"lrfind show: {' '.join(str(error).splitlines())}", file=sys.stderr)
        return 1

    try:
        result = LRFindResult.load(args.result)
    except (OSError, ValueError) as error:
        return fail(error)
    print(result)
    for detail in result.suggestions.values():
        lr = "None" if detail.lr is None else f"{detail.lr:.3g}"
        print(f"  {detail.method:>8}: {lr}  ({detail.reason})")
    if args.plot:
        try:
            result.plot(path=args.plot)
        except (OSError, ValueError) as error:  # a folder that is not there, a bad suffix
            return fail(error)
        print(f"plot saved to {args.plot}")
    return 0


def installed_demos() -> dict[str, Any]:
    """The demos of installed backends, by name, as entry points."""
    found = importlib.metadata.entry_points(group=DEMO_GROUP)
    return {entry.name: entry for entry in found}


def _demo(args: argparse.Namespace) -> int:
    """Run one installed backend's demo; say which, and what to install when none is."""
    demos = installed_demos()
    if not demos:
        print(
            "lrfind demo needs a backend with its demo: pip install 'lrfind[demo]' "
            "(torch and scikit-learn)",
            file=sys.stderr,
        )
        return 2
    if args.backend is not None and args.backend not in demos:
        print(f"no {args.backend} demo installed; installed: {sorted(demos)}", file=sys.stderr)
        return 2
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        print(f"lrfind demo: --out {args.out!r} is a file; the demo writes a folder there",
              file=sys.stderr)
        return 1
    ranked = sorted(demos, key=lambda name: (*DEMO_ORDER, name).index(name))
    # Every backend's entry point is declared whichever extras are installed: without
    # --backend, the first demo whose framework imports runs.
    candidates = [args.backend] if args.backend else ranked
    failed: dict[str, str] = {}
    for name in candidates:
        try:
            main = demos[name].load()
        except ImportError as error:
            failed[name] = f"the {name} demo cannot run: {error}"
            continue
        others = [other for other in ranked if other != name and other not in failed]
        notes = [f"also installed: {', '.join(others)}; choose with --backend"] if others else []
        note = f" ({'; '.join([*notes, *failed.values()])})" if notes or failed else ""
        print(f"running the {name} demo{note}")
        return int(main(out_dir=args.out, seed=args.seed))
    print("; ".join(failed.values()) + "; pip install 'lrfind[demo]' (torch and scikit-learn), "
          "or 'lrfind[jax]' scikit-learn", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lrfind`` console script."""
    parser = argparse.ArgumentParser(prog="lrfind", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="LR find on bundled digits, then train at the suggestion"
    )
    demo.add_argument("--out", default="lrfind_demo_out", help="folder for the plot and result")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--backend", default=None, help="which installed demo to run")
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
