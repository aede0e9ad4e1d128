"""docs/extending.md stays true: every code block of it runs and prints what it says (the toy
entries it registers are removed afterwards), and each toy (a topology, a cost profile, a model, a
solver) works through ``synthetic``, ``plan``, ``train``, the Flower config and the CLI; unknown
names are errors listing the known ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from foglearn.cli import app
from foglearn.errors import InputError
from foglearn.experiments import EXPERIMENTS
from foglearn.learning.models import MODELS
from foglearn.network import PROFILES, TOPOLOGIES, ScenarioError, synthetic
from foglearn.planning import SOLVERS, PlanError, plan
from foglearn.registry import Registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
REGISTRIES: tuple[Registry, ...] = (TOPOLOGIES, PROFILES, MODELS, SOLVERS, EXPERIMENTS)


def _sections() -> dict[str, list[str]]:
    """``## title`` → the page's python code blocks under it."""
    parts = re.split(r"^## ", DOC.read_text(encoding="utf-8"), flags=re.M)[1:]
    return {p.splitlines()[0].strip(): re.findall(r"```python\n(.*?)```", p, flags=re.S) for p in parts}


def _expected_output(block: str) -> list[str]:
    """What a block says it prints: the ``# comment`` after each ``print(...)`` line."""
    return [m.group(1).strip() for m in re.finditer(r"^print\(.*\)\s+#\s*(.*)$", block, flags=re.M)]


@pytest.fixture(scope="module")
def doc_namespaces():
    """Run each section's blocks in one namespace (as a reader would); unregister the toys after."""
    before = {id(r): set(r) for r in REGISTRIES}
    spaces: dict[str, dict] = {}
    try:
        for title, blocks in _sections().items():
            ns: dict = {}
            for i, block in enumerate(blocks):
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    exec(compile(block, f"docs/extending.md: {title}, block {i + 1}", "exec"), ns)
                assert out.getvalue().splitlines() == _expected_output(block), (title, i + 1)
            spaces[title] = ns
        yield spaces
    finally:
        for r in REGISTRIES:
            for name in set(r) - before[id(r)]:
                r.remove(name)


def test_every_kind_has_a_worked_example(doc_namespaces):
    for title in ("A topology", "A cost profile", "A model", "A solver"):
        assert doc_namespaces[title], f"docs/extending.md: section {title!r} has no code"
    assert "An experiment" in _sections()
    assert {"ring"} <= set(TOPOLOGIES) and {"flat-links"} <= set(PROFILES)
    assert {"logreg"} <= set(MODELS) and {"local"} <= set(SOLVERS)


def test_toy_topology(doc_namespaces):
    ns = doc_namespaces["A topology"]
    sc = ns["ring_scenario"]
    assert sc.info["topology"] == "ring"
    assert sorted(zip(sc.src.tolist(), sc.dst.tolist())) == sorted(
        (i, (i + d) % 6) for i in range(6) for d in (1, -1))
    assert list(zip(sc.src, sc.dst)) == sorted(zip(sc.src, sc.dst))  # build() sorts
    # parameters reach the function; small rings have no duplicate links or self-loops
    assert TOPOLOGIES["ring"].params == {"k": 1}
    for n in (1, 2, 3):
        s = synthetic(n_devices=n, horizon=2, topology="ring")
        assert s.n_edges == {1: 0, 2: 2, 3: 6}[n]
    assert ns["ring_plan"].costs.violations == 0
    # repeatable from the seed, like the built-in topologies
    assert (synthetic(n_devices=6, horizon=20, topology="ring", seed=0).link_cost == sc.link_cost).all()


def test_toy_profile(doc_namespaces):
    sc = doc_namespaces["A cost profile"]["flat_scenario"]
    assert sc.info["profile"] == "flat-links"
    assert (sc.link_cost == 0.02).all() and sc.link_cost.shape == (10, sc.n_edges)
    # the profile's costs go with any topology, including one drawn from the processing costs
    h = synthetic(n_devices=6, horizon=5, topology="hierarchical", profile="flat-links", seed=1)
    assert h.n_edges == 4 and (h.link_cost == 0.02).all()
    assert plan(h).costs.total > 0


def test_toy_model(doc_namespaces):
    ns = doc_namespaces["A model"]
    run = ns["logreg_run"]
    assert run.config["model"] == "logreg"
    assert set(run.final_state) == {"fc.weight", "fc.bias"}
    assert MODELS["logreg"].params == {"input_shape": (1, 28, 28), "n_classes": 10}


def test_toy_solver(doc_namespaces):
    p = doc_namespaces["A solver"]["local_plan"]
    sc = synthetic(n_devices=5, horizon=10, seed=0)
    assert p.costs.offloaded == 0 and p.costs.violations == 0
    # without links it is optimal: it matches Theorem 3's greedy solver on an edgeless scenario
    alone = sc.replace(src=sc.src[:0], dst=sc.dst[:0], link_cost=sc.link_cost[:, :0], link_cap=None,
                       link_up=None)
    assert plan(alone, solver="local").costs.total == pytest.approx(plan(alone, solver="greedy").costs.total)
    # auto never picks it (the built-ins come first); estimated information runs it per window
    assert plan(sc).stats.solver == "greedy"
    assert plan(sc, solver="local", information=5).stats.solver == "local(windowed)"
    # its parameters are enforced: linear error only, no capacities
    with pytest.raises(PlanError, match=r"solver = 'local' solves the linear error model.*sqrt"):
        plan(sc, error="sqrt", solver="local")
    with pytest.raises(PlanError, match="'local' ignores capacities"):
        plan(synthetic(n_devices=5, horizon=10, capacities=True), solver="local")


def test_toys_in_the_flower_config_and_device_task(doc_namespaces):
    from foglearn.flower import task
    from foglearn.flower.config import FlowerConfigError, FlowerRunConfig

    cfg = FlowerRunConfig(num_devices=3, horizon=4, dataset="tiny", model="logreg", topology="ring",
                          profile="flat-links")
    assert type(task.new_model(cfg)).__name__ == "LogReg"
    sc = task.scenario(cfg)
    assert sc.n_edges == 6 and (sc.link_cost == 0.02).all()
    # the run config names registered code only: no import paths for devices
    with pytest.raises(FlowerConfigError, match="model-factory: unknown foglearn run-config key"):
        FlowerRunConfig.from_user_config({"model-factory": "os:system"})
    with pytest.raises(FlowerConfigError, match=r"model = 'os:system': unknown model; known: cnn, mlp, .*logreg"):
        FlowerRunConfig(model="os:system")


def test_toys_in_the_cli(doc_namespaces, tmp_path):
    out = tmp_path / "plan.json"
    res = CliRunner().invoke(app, ["plan", "--devices", "5", "--slots", "6", "--topology", "ring", "--profile",
                                   "flat-links", "--solver", "local", "--out", str(out)])
    assert res.exit_code == 0, res.output
    aware = json.loads(out.read_text())["plans"][1]
    assert aware["solver"]["solver"] == "local" and aware["offload_rate"] == 0


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: synthetic(topology="torus"), ScenarioError,
     lambda: f"topology = 'torus': unknown topology; known: {', '.join(TOPOLOGIES)}"),
    (lambda: synthetic(profile="5g"), ScenarioError,
     lambda: f"profile = '5g': unknown profile; known: {', '.join(PROFILES)}"),
    (lambda: plan(synthetic(n_devices=2, horizon=2), solver="simplex"), PlanError,
     lambda: f"solver = 'simplex': unknown solver; known: {', '.join(SOLVERS)}, or auto"),
])
def test_unknown_names_list_the_known_ones(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, InputError) and str(info.value) == message()


def test_unknown_model_lists_the_known_ones():
    from foglearn.learning.models import make_model

    with pytest.raises(InputError, match=r"^model = 'resnet': unknown model; known: cnn, mlp\b"):
        make_model("resnet")


def test_registry_rules():
    reg: Registry = Registry("widget")
    reg.add("a", len, "the first")
    with pytest.raises(InputError, match="widget 'a': already registered"):
        reg.add("a", len, "again")
    with pytest.raises(InputError, match="must be a non-empty word"):
        reg.add(" b", len, "padded")
    with pytest.raises(ScenarioError, match="^field = 'z': unknown widget; known: a$"):
        reg.get_entry("z", "field", ScenarioError)
    assert "a" in reg and "z" not in reg and reg.get("z") is None and reg["a"].description == "the first"
    reg.remove("a")
    assert "a" not in reg and len(reg) == 0


def test_a_broken_topology_is_an_input_error():
    TOPOLOGIES.add("lopsided", lambda g: ([0, 1], [1]), "two sources, one destination")
    TOPOLOGIES.add("loop", lambda g: ([0], [0]), "a self-loop")
    try:
        with pytest.raises(ScenarioError, match="topology = 'lopsided': returned 2 sources but 1 destinations"):
            synthetic(n_devices=3, horizon=2, topology="lopsided")
        with pytest.raises(ScenarioError, match="self-loops are not links"):
            synthetic(n_devices=3, horizon=2, topology="loop")
    finally:
        TOPOLOGIES.remove("lopsided")
        TOPOLOGIES.remove("loop")
    assert "loop" not in TOPOLOGIES
