"""Importing lrfind_torch and its adapters imports no training framework."""

import json
import subprocess
import sys

FRAMEWORKS = ("transformers", "accelerate", "lightning", "pytorch_lightning", "torchmetrics")


def test_importing_lrfind_torch_and_the_adapters_imports_no_framework() -> None:
    code = (
        "import json, sys\n"
        "import lrfind_torch\n"
        "import lrfind_torch.integrations.huggingface\n"
        "import lrfind_torch.integrations.lightning\n"
        f"print(json.dumps(sorted(name for name in sys.modules "
        f"if name.split('.')[0] in {FRAMEWORKS!r})))\n"
        "print(json.dumps('lrfind_torch.integrations.lightning' in sys.modules))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert json.loads(output[0]) == []
    assert json.loads(output[1]) is True
