"""The README's Python API example runs as printed and prints what its comments say: it plans, and it
trains a real model on real MNIST (the MLP to ~93 %, in seconds)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from foglearn.learning import load_dataset

README = Path(__file__).resolve().parents[1] / "README.md"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def _api_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The Python API"):]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)  # type: ignore[union-attr]


def _claims(block: str) -> list[str]:
    """The ``# comment`` after each ``print(...)``: what the reader is told it prints."""
    return [m.group(1) for m in re.finditer(r"^print\(.*\)[ \t]+#[ \t]*(.*)$", block, flags=re.M)]


def _agree(printed: str, claim: str) -> bool:
    """The printed line is the claim, or its text up to a ': ' / ' (' remark; numbers within 1 %."""
    said = claim.strip()
    if NUMBER.sub("#", printed) != NUMBER.sub("#", said):
        said = re.split(r":\s| \(", claim, maxsplit=1)[0].strip()
    if NUMBER.sub("#", printed) != NUMBER.sub("#", said):
        return False
    return all(abs(float(a) - float(b)) <= max(0.01 * abs(float(b)), 0.005)
               for a, b in zip(NUMBER.findall(printed), NUMBER.findall(said)))


def test_readme_python_api_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    try:
        load_dataset("mnist")
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"real MNIST cannot be obtained here: {exc}")
    block = _api_block()
    out = io.StringIO()
    with contextlib.chdir(tmp_path), contextlib.redirect_stdout(out):
        exec(compile(block, "README.md: The Python API", "exec"), {})
    printed = out.getvalue().splitlines()
    claims = _claims(block)
    assert len(printed) == len(claims) >= 4
    for line, claim in zip(printed, claims):
        assert _agree(line, claim), f"README says {claim!r}, the code printed {line!r}"
