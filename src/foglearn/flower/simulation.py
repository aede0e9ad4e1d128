"""Run the Flower app in Flower's simulation runtime, in this process (Ray backend).

``flwr run flower_app`` does the same through a local SuperLink; this entry point is what the
CLI (``foglearn flower run``), the tests and the benchmark use, because it returns the result
and raises on failure.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from foglearn.flower.config import FlowerRunConfig


def backend_config(client_cpus: float = 1.0) -> dict[str, Any]:
    """Ray backend config: explicit ClientApp resources (Flower's default is 2 CPUs each)."""
    return {"client_resources": {"num_cpus": float(client_cpus), "num_gpus": 0.0},
            "init_args": {"num_cpus": max(1, os.cpu_count() or 1), "include_dashboard": False}}


def run_flower(cfg: FlowerRunConfig, planner: Any = None, client_cpus: float = 1.0,
               verbose: bool = False) -> dict[str, Any]:
    """Run ``cfg`` in Flower's simulation runtime; return ``result.json``'s content.

    Raises :class:`~foglearn.flower.server_app.FlowerRunError` (possibly wrapped by Flower in a
    ``RuntimeError``) when the run learned nothing.
    """
    os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    # Ray's memory monitor kills workers under pressure; here workers are small and a kill
    # must be a failure the run survives, not a silent one.
    from flwr.simulation import run_simulation

    from foglearn.flower.client_app import make_client_app
    from foglearn.flower.server_app import make_server_app

    if not cfg.run_dir:
        import time
        cfg = FlowerRunConfig(**{**cfg.as_dict(), "run_dir": f"runs/flower-{time.strftime('%Y%m%d-%H%M%S')}"})
    run_dir = Path(cfg.run_dir).expanduser().resolve()
    cfg = FlowerRunConfig(**{**cfg.as_dict(), "run_dir": str(run_dir)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(server_app=make_server_app(cfg, planner=planner), client_app=make_client_app(),
                       num_supernodes=cfg.num_devices, backend_config=backend_config(client_cpus),
                       verbose_logging=verbose)
    result_path = run_dir / "result.json"
    if not result_path.exists():
        raise RuntimeError(f"the Flower run wrote no {result_path}")
    return json.loads(result_path.read_text())
