"""The code passes ruff's lint and format checks (rules in pyproject.toml), and no module grows past ~400 lines."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

MAX_LINES = 420  # "about 400": a module past this should be split where its parts are


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_lint_passes():
    result = ruff("check", ".", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied():
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, "run `.venv/bin/ruff format .`:\n" + result.stdout + result.stderr


def test_no_module_is_too_long():
    folders = ["llm", "rag", "ui", "server", "team", "pages", "bench", "scripts", "core", "personas"]
    long = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py") if (ROOT / folder).is_dir() else []:
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES:
                long[str(path.relative_to(ROOT))] = lines
    app_lines = len(Path(ROOT / "app.py").read_text().splitlines())
    assert app_lines <= MAX_LINES
    assert long == {}, f"split these modules: {long}"
