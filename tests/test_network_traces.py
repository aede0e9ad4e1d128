"""Measured traces (docs/traces.md): the documented example loads, measured arrivals and error
weights replace the draws, sizes default to the traces' own and tile only on request, names."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from foglearn.network import Scenario, ScenarioError, from_traces, load_traces, synthetic, write_traces

DOC = Path(__file__).resolve().parents[1] / "docs" / "traces.md"


def _doc_example(directory: Path) -> Path:
    """Write the ```csv blocks that follow `nodes.csv`: and `links.csv`: in docs/traces.md."""
    text = DOC.read_text(encoding="utf-8")
    for name in ("nodes.csv", "links.csv"):
        block = re.search(rf"^`{re.escape(name)}`:\n\n```csv\n(.*?)```", text, re.S | re.M)
        assert block, f"docs/traces.md: no csv example for {name}"
        (directory / name).write_text(block.group(1), encoding="utf-8")
    return directory


def _edit_nodes(directory: Path, line: int, column: str, value: str) -> None:
    """Set ``column`` of the row on ``line`` (1-based, the header is line 1) of nodes.csv."""
    lines = (directory / "nodes.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    (directory / "nodes.csv").write_text("\n".join(lines) + "\n")


def test_the_documented_example_loads_with_the_documented_values(tmp_path):
    d = _doc_example(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the traces' own size: nothing tiled, no warning
        s = from_traces(d)
    assert (s.n_devices, s.horizon) == (3, 2)
    assert s.device_names == ["pi-a", "pi-b", "laptop"] and s.info["trace_nodes"] == ["pi-a", "pi-b", "laptop"]
    assert s.info["reference_s"] == pytest.approx(0.02)
    np.testing.assert_allclose(s.proc_cost, [[1.0, 1.2, 0.125], [1.1, 0.0, 0.15]])
    assert s.collected.tolist() == [[40, 35, 10], [42, 0, 12]]
    np.testing.assert_allclose(s.error_weight, [[1.0, 0.5, 1.5], [1.0, 0.5, 1.5]])
    assert s.info["arrivals"] == s.info["error_weight"] == "traces"
    assert s.active.tolist() == [[True, True, True], [True, False, True]]
    edges = {(s.device_names[a], s.device_names[b]): e for e, (a, b) in enumerate(zip(s.src, s.dst))}
    assert set(edges) == {("pi-a", "laptop"), ("pi-b", "laptop"), ("laptop", "pi-a")}
    e = edges[("pi-a", "laptop")]
    assert s.link_cost[0, e] == pytest.approx(0.4) and s.link_up[:, e].tolist() == [True, False]
    assert s.link_up[:, edges[("pi-b", "laptop")]].tolist() == [True, False]  # no row in slot 1: down
    assert s.proc_cap[0].tolist() == [50.0, np.inf, np.inf] and s.link_cap[0, edges[("pi-b", "laptop")]] == np.inf


def test_measured_arrivals_and_weights_replace_the_draws_and_leave_the_other_draw_alone(tmp_path):
    s = synthetic(4, 5, seed=3)
    write_traces(tmp_path / "plain", s)
    write_traces(tmp_path / "data", s, data=True)
    drawn = from_traces(tmp_path / "plain", seed=7)
    assert drawn.info["arrivals"] == drawn.info["error_weight"] == "drawn"
    measured = from_traces(tmp_path / "data", seed=7)
    assert np.array_equal(measured.collected, s.collected) and np.array_equal(measured.error_weight, s.error_weight)
    # only the arrivals column: D from the trace, f the same draw as without any data column
    lines = [",".join(row.split(",")[:-1]) for row in (tmp_path / "data" / "nodes.csv").read_text().splitlines()]
    (tmp_path / "data" / "nodes.csv").write_text("\n".join(lines) + "\n")
    half = from_traces(tmp_path / "data", seed=7)
    assert half.info["arrivals"] == "traces" and half.info["error_weight"] == "drawn"
    assert np.array_equal(half.collected, s.collected) and np.array_equal(half.error_weight, drawn.error_weight)


def test_write_traces_with_data_round_trips_more_than_ten_devices_in_order(tmp_path):
    s = synthetic(12, 3, capacities=True, link_failure=0.2, seed=5)
    r = from_traces(write_traces(tmp_path, s, data=True), reference_s=0.01)
    assert r.device_names == [f"d{i}" for i in range(12)]  # d10, d11 stay devices 10 and 11
    assert np.array_equal(r.collected, s.collected) and np.array_equal(r.error_weight, s.error_weight)
    np.testing.assert_allclose(r.proc_cost, s.proc_cost, rtol=1e-12)
    assert sorted(zip(r.src.tolist(), r.dst.tolist())) == sorted(zip(s.src.tolist(), s.dst.tolist()))


@pytest.mark.parametrize("line, column, value, message", [
    (2, "arrivals", "2.5", r"nodes.csv:2 arrivals = '2.5': must be a whole number of points"),
    (3, "arrivals", "-1", r"nodes.csv:3 arrivals = '-1': must be ≥ 0"),
    (4, "arrivals", "", r"nodes.csv:4 arrivals = '': must be a number"),
    (2, "arrivals", "1e300", r"nodes.csv:2 arrivals = '1e300': must be at most 2\^53"),
    (6, "arrivals", "3", r"nodes.csv:6 arrivals = '3': must be 0 where active = 0 \(an inactive node collects"),
    (5, "error_weight", "nan", r"nodes.csv:5 error_weight = 'nan': must be a number"),
    (5, "error_weight", "-0.5", r"nodes.csv:5 error_weight = '-0.5': must be ≥ 0"),
    (7, "error_weight", "inf", r"nodes.csv:7 error_weight = 'inf': must be finite"),
])
def test_bad_arrivals_and_error_weights_name_file_line_column_and_rule(tmp_path, line, column, value, message):
    d = _doc_example(tmp_path)
    _edit_nodes(d, line, column, value)
    with pytest.raises(ScenarioError, match=message):
        load_traces(d)


def test_a_link_from_a_node_to_itself_is_refused(tmp_path):
    d = _doc_example(tmp_path)
    with (d / "links.csv").open("a") as fh:
        fh.write("1,laptop,laptop,1,100,0.1,\n")
    with pytest.raises(ScenarioError, match=r"links.csv:7 dst = 'laptop': a link joins two different nodes"):
        load_traces(d)


def test_more_devices_or_slots_than_traced_need_repeat(tmp_path):
    d = _doc_example(tmp_path)
    with pytest.raises(ScenarioError, match=r"n_devices = 5 > the 3 traced nodes: .* pass repeat=True"):
        from_traces(d, n_devices=5)
    with pytest.raises(ScenarioError, match=r"horizon = 4 > the 2 traced slots: .*slot t replays slot t mod 2"):
        from_traces(d, horizon=4)
    with pytest.raises(ScenarioError, match=r"n_devices = 0, horizon = None: both must be whole numbers ≥ 1"):
        from_traces(d, n_devices=0)
    with pytest.warns(UserWarning, match=r"traces tiled: 5 devices replay the 3 traced nodes \(device i replays "
                                         r"node i mod 3\); 5 slots replay the 2 traced slots"):
        s = from_traces(d, n_devices=5, horizon=5, repeat=True)
    tr = load_traces(d)
    assert s.device_names == ["pi-a", "pi-b", "laptop", "pi-a#1", "pi-b#1"]
    for t in range(5):
        for i in range(5):
            assert s.collected[t, i] == tr.arrivals[t % 2, i % 3]
    names = s.device_names
    links = {(names[a], names[b]) for a, b in zip(s.src, s.dst)}
    assert ("pi-a#1", "laptop") in links and ("laptop", "pi-a#1") in links and ("pi-a", "pi-a#1") not in links
    with pytest.warns(UserWarning, match=r"traces tiled: 4 slots") as record:
        from_traces(d, horizon=4, repeat=True)
    assert "devices" not in str(record[0].message)


def test_fewer_devices_and_slots_replay_the_first_ones_silently(tmp_path):
    d = _doc_example(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = from_traces(d, n_devices=2, horizon=1, repeat=True)
    assert s.device_names == ["pi-a", "pi-b"] and s.collected.tolist() == [[40, 35]]
    assert s.n_edges == 0  # both traced links of pi-a and pi-b go to the laptop


def test_device_names_survive_save_load_and_window_and_default_to_indices(tmp_path):
    s = from_traces(_doc_example(tmp_path))
    back = Scenario.load(s.save(tmp_path / "s.npz"))
    assert back.device_names == ["pi-a", "pi-b", "laptop"] and back.window(1, 2).device_names == back.device_names
    assert synthetic(3, 2, seed=0).device_names == ["0", "1", "2"]
    assert s.replace(info={"device_names": ["x"]}).device_names == ["0", "1", "2"]  # not one per device


def test_tiled_names_that_clash_with_a_node_id_are_refused(tmp_path):
    """Tiled copies are named `node#k`; a traced node already called that would make names ambiguous."""
    d = _doc_example(tmp_path)
    for name in ("nodes.csv", "links.csv"):
        (d / name).write_text((d / name).read_text().replace("pi-b", "pi-a#1"))
    assert from_traces(d).device_names == ["pi-a", "pi-a#1", "laptop"]
    with pytest.raises(ScenarioError, match=r"tiled copy 'pi-a#1' has the name of a node of nodes.csv"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from_traces(d, n_devices=4, repeat=True)
