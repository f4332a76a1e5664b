"""The layering: ``finetunekit/core/`` is the engine, and the engine knows nothing above it.

The built-in plugins, the command line, the demo and the benchmarks are built on the
core; the core reaches the built-in plugins only by name (``BUILTINS_PACKAGE``), as it
reaches installed ones through the entry-point group.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import finetunekit

CORE = Path(finetunekit.__file__).parent / "core"
ABOVE_CORE = ("finetunekit.plugins", "finetunekit.cli", "finetunekit.demo", "finetunekit.bench")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at module level or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against finetunekit.core
                base = ["finetunekit", "core"][: 3 - node.level]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_imports_nothing_above_it(path):
    bad = [f"{path.name}:{line} imports {module}" for line, module in _imports(path)
           if any(module == top or module.startswith(f"{top}.") for top in ABOVE_CORE)]
    assert not bad, "finetunekit/core must not import the layers above it: " + "; ".join(bad)


def test_the_walk_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from finetunekit.plugins.data import folder\n"
                      "    import finetunekit.demo\n")
    assert [m for _, m in _imports(sample)] == [
        "finetunekit.plugins.data", "finetunekit.plugins.data.folder", "finetunekit.demo"]


PLUGINS = CORE.parent / "plugins"
APPS = ("finetunekit.cli", "finetunekit.demo", "finetunekit.bench")


@pytest.mark.parametrize("path", sorted(PLUGINS.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PLUGINS)))
def test_built_in_plugins_import_no_app(path):
    bad = [f"{path.name}:{line} imports {module}" for line, module in _imports(path)
           if any(module == top or module.startswith(f"{top}.") for top in APPS)]
    assert not bad, "a built-in plugin must not need the apps above it: " + "; ".join(bad)
