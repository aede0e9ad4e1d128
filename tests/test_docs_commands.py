"""Every `foglearn …` command the README, the docs and the Makefile show is one the CLI accepts.

Commands are found in ```bash blocks (lines starting with ``foglearn``), after a ``$ `` prompt in any
block, in inline code spans (`` `foglearn …` ``) and in the Makefile. Each is parsed by the real CLI
(Click's parser, nothing runs): an unknown command or option, a missing value or a value of the wrong
type fails the test with the file and line; a bare command name in prose only has to exist. Lines
that show a choice or a placeholder (``|``, ``…``, an upper-case metavariable such as ``DIR`` or
``minibatch:B``) are templates, not commands: skipped.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from typer.main import get_command

from foglearn.cli import app

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"(^|[:=])[A-Z][A-Z_]*$")


def _sources() -> list[Path]:
    docs = sorted((ROOT / "docs").rglob("*.md"))
    return [ROOT / "README.md", *docs]


def _commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command) for every foglearn command shown in a Markdown file."""
    found: list[tuple[int, str]] = []
    lang: str | None = None
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            lang = None if lang is not None else fence.group(1)
            continue
        if lang is not None:
            text = line.strip()
            if text.startswith("$ foglearn "):
                found.append((no, text[2:]))
            elif lang in ("bash", "sh", "console") and text.startswith("foglearn "):
                found.append((no, text))
        else:
            found += [(no, m) for m in re.findall(r"`(foglearn [^`]+)`", line)]
    return found


def _makefile_commands() -> list[tuple[int, str]]:
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    return [(no, "foglearn " + line.split("/foglearn ", 1)[1])
            for no, line in enumerate(lines, 1) if "/foglearn " in line]


def _argv(command: str) -> list[str] | None:
    """The command's arguments, or None for a template (choices, ellipses, metavariables)."""
    command = re.sub(r"\s+#.*$", "", command).rstrip("\\ ")
    if any(mark in command for mark in ("|", "…", "...", "<", ">")):
        return None
    argv = shlex.split(command)[1:]
    if any(PLACEHOLDER.search(tok) for tok in argv if not tok.startswith("-")):
        return None
    return argv


def _parse(argv: list[str]) -> None:
    """Parse ``foglearn ARGV`` down to the leaf command with the real CLI; nothing is run."""
    cmd: click.Command = get_command(app)
    ctx = cmd.make_context("foglearn", list(argv))
    while isinstance(cmd, click.Group):
        name, sub, rest = cmd.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert sub is not None and name is not None
        cmd = sub
        ctx = cmd.make_context(name, rest, parent=ctx)


CASES = [(f"{p.relative_to(ROOT)}:{no}", cmd) for p in _sources() for no, cmd in _commands(p)]
CASES += [(f"Makefile:{no}", cmd) for no, cmd in _makefile_commands()]


def test_the_docs_show_commands() -> None:
    """The extraction finds the README's worked example and the Makefile's main job."""
    where = {w.split(":")[0] for w, cmd in CASES if _argv(cmd) is not None}
    assert {"README.md", "Makefile"} <= where
    assert len(CASES) >= 20


@pytest.mark.parametrize(("where", "command"), CASES, ids=[w for w, _ in CASES])
def test_documented_command_parses(where: str, command: str) -> None:
    argv = _argv(command)
    if argv is None:
        pytest.skip(f"{where}: a template, not a command: {command}")
    try:
        _parse(argv)
    except click.exceptions.Exit:
        pass  # --help
    except click.MissingParameter:
        if any(tok.startswith("-") for tok in argv):
            raise
        # a command named in prose (`foglearn reproduce`): the name resolved, which is what it claims
    except click.UsageError as exc:
        pytest.fail(f"{where}: `{command}` is not accepted by the CLI: {exc.format_message()}")
