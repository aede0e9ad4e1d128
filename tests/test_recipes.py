"""docs/recipes.md stays true: its blocks run in order in an empty folder (Python blocks in one
namespace, each ``foglearn`` line of a bash block through the real CLI) and each task produces what
the page says it does: the five user stories of a researcher, end to end, from the docs alone."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from foglearn.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"


def _tasks() -> list[tuple[str, list[tuple[str, str]]]]:
    """``## N. title`` → its (language, code) blocks, in order."""
    parts = re.split(r"^## ", DOC.read_text(encoding="utf-8"), flags=re.M)[1:]
    return [(p.splitlines()[0], re.findall(r"```(python|bash)\n(.*?)```", p, flags=re.S)) for p in parts]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Run the whole page once; return each task's outputs (stdout of Python blocks, CLI stdouts)."""
    folder = tmp_path_factory.mktemp("recipes")
    outputs: dict[str, list[str]] = {}
    ns: dict = {}
    runner = CliRunner()
    with contextlib.chdir(folder):
        for title, blocks in _tasks():
            outs = outputs.setdefault(title.split(".")[0], [])
            for lang, code in blocks:
                if lang == "python":
                    buf = io.StringIO()
                    with contextlib.redirect_stdout(buf):
                        exec(compile(code, f"docs/recipes.md: {title}", "exec"), ns)
                    outs.append(buf.getvalue())
                    continue
                for line in code.splitlines():
                    if line.startswith("foglearn "):
                        res = runner.invoke(app, shlex.split(line)[1:], catch_exceptions=False)
                        assert res.exit_code == 0, f"{line}\n{res.output}"
                        outs.append(res.stdout)
    outputs["folder"] = [str(folder)]
    bn = ns["net"][1]  # the reader's BatchNorm2d: never trained, so still at its initial statistics
    outputs["net untouched"] = [str(int(bn.num_batches_tracked) == 0 and bool((bn.running_mean == 0).all()))]
    return outputs


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_page_has_five_tasks() -> None:
    assert [t.split(".")[0] for t, _ in _tasks()] == ["1", "2", "3", "4", "5"]


def test_plan_own_traces(ran: dict[str, list[str]]) -> None:
    folder = Path(ran["folder"][0])
    doc = json.loads(ran["1"][-1])  # --json: stdout is one JSON document
    assert doc, "foglearn plan --json printed nothing"
    flows = _csv(folder / "flows.csv")
    table = _csv(folder / "devices.csv")
    assert len(table) == 6 * 8  # the traces' own size: 6 devices, 8 slots
    assert flows, "the slow devices should offload"
    slow, fast = {"cam-1", "cam-2", "phone-a", "phone-b"}, {"gateway", "laptop"}
    assert all(r["src_name"] in slow and r["dst_name"] in fast and int(r["points"]) > 0 for r in flows)
    collected = sum(int(r["collected"]) for r in table)
    moved = sum(int(r["points"]) for r in flows)
    assert collected > 0 and moved == sum(int(r["offloaded"]) for r in table)
    assert (folder / "plan.json").is_file()


def test_train_on_traces(ran: dict[str, list[str]]) -> None:
    folder = Path(ran["folder"][0]) / "runs" / "traces"
    result = json.loads((folder / "result.json").read_text())
    text = json.dumps(result)
    assert "no-movement" in text and "network-aware" in text
    assert (folder / "config.toml").is_file()
    assert json.loads(ran["2"][-1])


def test_sweep_with_baseline_and_plot(ran: dict[str, list[str]]) -> None:
    folder = Path(ran["folder"][0]) / "runs" / "sweep"
    rows = _csv(folder / "runs.csv")
    assert len(rows) == 2 * 2 * 2  # topologies × information × seeds
    assert {r["topology"] for r in rows} == {"full", "random"}
    assert all(float(r["baseline_unit"]) > 0 and r["saving"] != "" for r in rows)
    assert (folder / "saving_vs_information.png").stat().st_size > 1000


def test_own_model_instance_with_batchnorm(ran: dict[str, list[str]]) -> None:
    (printed,) = ran["4"]
    acc = float(re.fullmatch(r"accuracy (\d\.\d\d)\n", printed).group(1))  # type: ignore[union-attr]
    assert 0.5 <= acc <= 1.0  # it learns (chance is 0.1)
    assert ran["net untouched"] == ["True"]  # "which itself is left unchanged"


def test_theorem_as_json(ran: dict[str, list[str]]) -> None:
    doc = json.loads(ran["5"][-1])
    assert doc["queue"]["capacity"] == pytest.approx(9.538, abs=5e-4)
    assert doc["sojourn"]["capacity"] == pytest.approx(9.491, abs=5e-4)
