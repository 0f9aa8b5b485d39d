"""lrfind_core must stay numpy-only: importing it never pulls in a framework."""

import subprocess
import sys

FRAMEWORKS = ("torch", "jax", "jaxlib", "flax", "optax")


def test_importing_core_imports_no_framework():
    code = (
        "import sys, lrfind_core, lrfind_core.cli, lrfind_core.plotting\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})\n"
        "print(','.join(loaded))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == ""


def test_the_core_names_no_backend():
    """Not even by a string: demos are found through entry points."""
    from pathlib import Path

    import lrfind_core

    for path in Path(lrfind_core.__file__).parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for backend in ("lrfind_torch", "lrfind_jax"):
            assert backend not in text, f"{path.name} names {backend}"


def test_no_import_cycle_between_core_modules():
    """Each core module imports only modules that do not import it back (at any depth)."""
    import ast
    from pathlib import Path

    import lrfind_core

    folder = Path(lrfind_core.__file__).parent
    imports = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "lrfind_core":
                    names |= {alias.name for alias in node.names}
                elif node.module.startswith("lrfind_core."):
                    names.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                names |= {a.name.split(".")[1] for a in node.names
                          if a.name.startswith("lrfind_core.")}
        imports[path.stem] = names & {p.stem for p in folder.glob("*.py")}

    def reaches(start, target, seen=()):
        return any(name == target or (name not in seen and reaches(name, target, (*seen, name)))
                   for name in imports.get(start, ()))

    cycles = sorted(name for name in imports if name != "__init__" and reaches(name, name))
    assert cycles == []
