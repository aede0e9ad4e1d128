"""The sweep's result store: a damaged result file counts as unfinished and is computed again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from foglearn.experiments import ResultStore, RunConfig, run_sweep

CALLS: list[str] = []


def toy_runner(cfg: RunConfig) -> dict[str, Any]:
    CALLS.append(cfg.key())
    return {"key": cfg.key(), "config": cfg.as_dict(), "value": float(cfg.seed)}


@pytest.mark.parametrize("damage", [b"", b'{"key": "abc", "val', b"[1, 2]"])
def test_damaged_result_is_recomputed(tmp_path: Path, damage: bytes) -> None:
    configs = [RunConfig(seed=s, n_devices=4, train=False) for s in range(3)]
    run_sweep(configs, tmp_path, jobs=1, progress=False, runner=toy_runner)
    store = ResultStore(tmp_path)
    victim = configs[1].key()
    store.path(victim).write_bytes(damage)  # a crash before the data reached the disk, a cut copy
    with pytest.warns(RuntimeWarning, match="computed again"):
        assert not store.has(victim) and store.get(victim) is None
    with pytest.raises(FileNotFoundError, match="no readable record"):
        store.load(victim)
    CALLS.clear()
    with pytest.warns(RuntimeWarning, match=f"{victim}.json: .*computed again"):
        out = run_sweep(configs, tmp_path, jobs=1, progress=False, runner=toy_runner)
    assert CALLS == [victim] and out.complete
    assert [r["value"] for r in out.records] == [0.0, 1.0, 2.0]
    assert ResultStore(tmp_path).load(victim)["key"] == victim
