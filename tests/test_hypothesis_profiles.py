"""tests/conftest.py: property tests are deterministic by default; ``fuzz`` explores widely."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


def test_default_profile_is_deterministic(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--hypothesis-profile", None):
        pytest.skip("a profile was chosen on the command line")
    assert settings.get_current_profile_name() == "ci"
    assert settings.default.derandomize and settings.default.database is None
    assert settings.default.deadline is None

    def draws() -> list[int]:
        seen: list[int] = []

        @settings(max_examples=20)
        @given(st.integers())
        def prop(x: int) -> None:
            seen.append(x)

        prop()
        return seen

    assert draws() == draws()  # the same examples on every run (random ones would differ)


def test_fuzz_profile_scales_each_tests_examples(tmp_path: Path) -> None:
    """``--hypothesis-profile=fuzz`` runs FOGLEARN_FUZZ_FACTOR times a test's own max_examples,
    with the example database on."""
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_prop.py").write_text(
        "from hypothesis import given, settings, strategies as st\n"
        "@settings(max_examples=7)\n"
        "@given(st.integers())\n"
        "def test_prop(x):\n"
        "    with open('calls.txt', 'a') as fh:\n"
        "        fh.write(f'{x}\\n')\n"
        "def test_profile():\n"
        "    assert settings.get_current_profile_name() == 'fuzz'\n"
        "    assert settings.default.database is not None and not settings.default.derandomize\n")
    env = {**os.environ, "FOGLEARN_FUZZ_FACTOR": "3"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           "--hypothesis-profile=fuzz", "test_prop.py"]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "2 passed" in res.stdout, res.stdout + res.stderr
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 21
