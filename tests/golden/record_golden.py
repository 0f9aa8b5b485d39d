"""Write golden_results.json: every golden case's result (see golden_cases.py).

Run once before a refactor that must not change behaviour:
``python tests/golden/record_golden.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from golden_cases import JAX_CASES, TORCH_CASES, run_case, summary

OUT = Path(__file__).parent / "golden_results.json"


def main() -> None:
    import torch

    torch.set_num_threads(1)
    results = {name: summary(run_case(name)) for name in (*TORCH_CASES, *JAX_CASES)}
    OUT.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(results)} cases to {OUT}")


if __name__ == "__main__":
    main()
