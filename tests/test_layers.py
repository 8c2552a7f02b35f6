"""The house has floors: each folder of ``edge_sql`` is a layer, imports only point down, and no two modules import
each other (imports inside functions counted). import-linter checks the contracts written in ``pyproject.toml``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_sql", "convert")
#: The longest a module may grow before it is doing more than one job.
MAX_LINES = 400


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter over the packages under ``root``, with ``root``'s pyproject.toml contracts, no cache."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def copy_of_the_project(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_every_import_points_down_and_none_goes_round():
    checked = lint_imports(ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 kept, 0 broken" in checked.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("edge_sql/steps/schema.py", "    from edge_sql.pipeline import Setup\n", "Each layer imports only the layers below it"),
    ("edge_sql/backends/llama.py", "    from edge_sql.steps.prompt import build_prompt\n",
     "Each layer imports only the layers below it"),
    ("edge_sql/steps/terms.py", "    from edge_sql.steps.hints import add_value_hints\n", "No import cycles"),
])
def test_an_upward_import_or_a_cycle_breaks_the_contracts(tmp_path, module, line, broken):
    """The contracts bite: one import added inside a function of a copy of the project breaks them."""
    root = copy_of_the_project(tmp_path)
    with (root / module).open("a") as handle:
        handle.write(f"\n\ndef _added():\n{line}")
    checked = lint_imports(root)
    assert checked.returncode != 0
    assert f"{broken}" in checked.stdout and "BROKEN" in checked.stdout


def test_no_module_does_more_than_one_job():
    long = {str(path.relative_to(ROOT)): lines for package in PACKAGES for path in (ROOT / package).rglob("*.py")
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
