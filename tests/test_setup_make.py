"""The set-up commands: `make`'s install step honours TORCH_INDEX_URL (README, "PyTorch build")."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _install_lines(*args: str) -> list[str]:
    # -n: print, do not run; -W pyproject.toml: pretend it changed so the install rule is shown.
    out = subprocess.run(["make", "-n", "-W", "pyproject.toml", ".venv/.foglearn-installed", *args],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "pip install" in line and "torch==" in line]


def test_torch_pinned_from_default_index() -> None:
    (line,) = _install_lines()
    assert "torch==2.13.0" in line and "--index-url" not in line


def test_torch_index_url_selects_the_build() -> None:
    url = "https://download.pytorch.org/whl/cpu"
    (line,) = _install_lines(f"TORCH_INDEX_URL={url}")
    assert line.split()[-2:] == ["--index-url", url]
