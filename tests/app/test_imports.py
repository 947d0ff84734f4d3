"""The app's modules import what their job needs and no more: `elastic.app` imports neither
Streamlit nor torch (its functions import torch when they run), the Streamlit glue imports no
torch (the first page draws while torch loads), and every name a page takes from them exists."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_MODULES = [f"elastic.app.{name}" for name in ("paths", "bundles", "requests", "jobs", "lab")]
PAGE_FILES = [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))]


def heavy_modules_after(statement: str) -> list[str]:
    """Which of Streamlit and torch a fresh interpreter holds after `statement`."""
    code = (
        f"{statement}\nimport json, sys\n"
        "print(json.dumps([m for m in ('streamlit', 'torch') if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_apps_own_modules_import_neither_streamlit_nor_torch():
    assert heavy_modules_after("import " + ", ".join(APP_MODULES)) == []


def test_the_streamlit_glue_imports_no_torch():
    assert heavy_modules_after("import elastic.app_support") == ["streamlit"]


def module_aliases(tree: ast.Module) -> dict[str, object]:
    """alias -> module for every `from elastic... import <module> [as alias]` of a file."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("elastic"):
            for name in node.names:
                try:
                    module = importlib.import_module(f"{node.module}.{name.name}")
                except ModuleNotFoundError:
                    continue  # a name, not a module: a missing one fails at import already
                aliases[name.asname or name.name] = module
    return aliases


@pytest.mark.parametrize("page", PAGE_FILES, ids=lambda path: path.name)
def test_every_name_a_page_takes_from_a_module_exists(page):
    """`support.x` fails only when the line runs, which a page test may never reach (a
    measurement in progress, an upload): read the attributes off the source instead."""
    tree = ast.parse(page.read_text())
    aliases = module_aliases(tree)
    missing = [
        f"{node.value.id}.{node.attr} (line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and not hasattr(aliases[node.value.id], node.attr)
    ]
    assert not missing
