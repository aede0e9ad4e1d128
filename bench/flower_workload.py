"""The plain paper workload on Flower 1.42's simulation runtime: the competitor for bench/trainer.py.

T slots; every slot each of n devices collects ~30 new MNIST points (D_i(t) ~ U{0..60}), takes
one SGD step on them (eq. 3) and the server aggregates every slot (τ = 1, FedAvg-like weights
H_i, eq. 4); no data movement. Same ServerApp/ClientApp as ``foglearn.flower`` with
``movement = false``; ClientApps get 1 CPU each (Flower's default is 2), torch 1 thread.

    python bench/flower_workload.py --devices 10 --slots 20 --model cnn

``--deploy`` times the same run (n = 3, T = 6, τ = 3, tiny set, MLP by default) twice in one
session: in Flower's simulation runtime (``run_flower``, Ray start-up included) and on a live
deployment on 127.0.0.1 (SuperLink + n SuperNodes, TLS + node authentication, already running;
timed from ``flwr run`` to its exit), and checks that both processed the same points and ended
with the same global model:

    python bench/flower_workload.py --deploy --clientapp worker      # long-running ClientApp
    python bench/flower_workload.py --deploy --clientapp subprocess  # Flower's default
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_flower_workload(n_devices: int, horizon: int, model: str, dataset: str = "mnist",
                        points: int = 30, seed: int = 0) -> float:
    """Wall seconds of the whole Flower simulation (Ray start-up included) of the plain workload."""
    from foglearn.flower.config import FlowerRunConfig
    from foglearn.flower.simulation import run_flower

    with tempfile.TemporaryDirectory(prefix="flower-bench-") as tmp:
        cfg = FlowerRunConfig(num_devices=n_devices, horizon=horizon, period=1, dataset=dataset, model=model,
                              lr=0.01, seed=seed, movement=False, max_points=2 * points, run_dir=tmp,
                              eval_points=1000, slot_timeout=600)
        t0 = time.perf_counter()
        result = run_flower(cfg, client_cpus=1.0)
        seconds = time.perf_counter() - t0
    run_flower_workload.last_result = result  # type: ignore[attr-defined]
    return seconds


def compare_with_trainer(n_devices: int = 3, horizon: int = 6, period: int = 3, dataset: str = "tiny",
                         model: str = "mlp", lr: float = 0.1, seed: int = 3, max_points: int = 30) -> dict:
    """Same seed, scenario and (perfect-information) plan: Flower app vs ``foglearn.learning.train``."""
    import foglearn.planning as planning
    from foglearn.flower import task
    from foglearn.flower.config import FlowerRunConfig
    from foglearn.flower.simulation import run_flower
    from foglearn.learning.trainer import train

    planner = planning.plan
    with tempfile.TemporaryDirectory(prefix="flower-cmp-") as tmp:
        cfg = FlowerRunConfig(num_devices=n_devices, horizon=horizon, period=period, dataset=dataset, model=model,
                              lr=lr, seed=seed, max_points=max_points, information="perfect", run_dir=tmp)
        sc = task.scenario(cfg)
        plan = planner(sc, error="linear", information="perfect", movement=True)
        t0 = time.perf_counter()
        fl = run_flower(cfg, planner=planner)
        fl_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr = train(sc, plan, dataset=dataset, model=model, period=period, lr=lr, seed=seed, threads=1)
    tr_s = time.perf_counter() - t0
    import numpy as np
    return {"flower_accuracy": fl["final_accuracy"], "flower_seconds": fl_s,
            "flower_serverapp_seconds": fl["wall_seconds"], "trainer_accuracy": tr.accuracy,
            "trainer_seconds": tr_s, "same_processed": bool(np.array_equal(np.array(fl["movement"]["processed"]),
                                                                           np.asarray(tr.processed))),
            "flower_processed": int(np.array(fl["movement"]["processed"]).sum()),
            "trainer_processed": int(np.asarray(tr.processed).sum())}


def deploy_vs_simulation(n_devices: int = 3, horizon: int = 6, period: int = 3, clientapp: str = "worker",
                         dataset: str = "tiny", model: str = "mlp", seed: int = 3, runs: int = 1) -> dict:
    """Wall seconds of the same run in the simulation runtime and on a local deployment (see the module doc).

    ``runs`` deployment runs on one standing deployment (the first also warms the SuperNodes' workers).
    """
    import numpy as np

    from foglearn.flower.config import FlowerRunConfig
    from foglearn.flower.local import LocalDeployment
    from foglearn.flower.simulation import run_flower

    def config(run_dir: Path) -> FlowerRunConfig:
        return FlowerRunConfig(num_devices=n_devices, horizon=horizon, period=period, dataset=dataset, model=model,
                               lr=0.1, max_points=30, seed=seed, slot_timeout=300, run_dir=str(run_dir))

    with tempfile.TemporaryDirectory(prefix="flower-deploy-") as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        sim = run_flower(config(tmp / "sim"))
        sim_s = time.perf_counter() - t0
        subprocess.run(["bash", str(ROOT / "flower_app" / "tls_setup.sh"), str(tmp), str(n_devices)], check=True,
                       capture_output=True, timeout=120)
        dep_s, dep = [], []
        with LocalDeployment(tmp, n_devices, tls_dir=tmp, clientapp=clientapp) as d:
            d.start()
            for k in range(runs):
                t0 = time.perf_counter()
                p = d.flwr_run(ROOT / "flower_app", config(tmp / f"dep-{k}"))
                out, _ = p.communicate(timeout=1800)
                dep_s.append(time.perf_counter() - t0)
                if p.returncode != 0:
                    raise RuntimeError(out[-3000:])
                dep.append(json.loads((tmp / f"dep-{k}" / "result.json").read_text()))
                with np.load(tmp / f"dep-{k}" / "model.npz") as a, np.load(tmp / "sim" / "model.npz") as b:
                    dep[-1]["same_model"] = sorted(a.files) == sorted(b.files) and all(
                        np.allclose(a[f], b[f], rtol=1e-6, atol=1e-7) for f in a.files)
    last = dep[-1]
    return {"clientapp": clientapp, "n": n_devices, "T": horizon, "simulation_seconds": sim_s,
            "simulation_serverapp_seconds": sim["wall_seconds"], "deploy_seconds": dep_s,
            "deploy_serverapp_seconds": [r["wall_seconds"] for r in dep],
            "deploy_slot_seconds": last["slot_seconds"], "simulation_slot_seconds": sim["slot_seconds"],
            "ratio": min(dep_s) / sim_s, "status": [r["status"] for r in dep],
            "same_processed": all(r["movement"]["processed"] == sim["movement"]["processed"] for r in dep),
            "same_accuracy": all(np.isclose(r["final_accuracy"], sim["final_accuracy"]) for r in dep),
            "same_final_model": all(r["same_model"] for r in dep),
            "final_accuracy": sim["final_accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--slots", type=int, default=20)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--compare", action="store_true", help="Flower app vs the in-process trainer, same seed and plan")
    ap.add_argument("--deploy", action="store_true",
                    help="the same run in the simulation runtime and on a local SuperLink + SuperNodes")
    ap.add_argument("--clientapp", choices=["worker", "subprocess"], default="worker",
                    help="with --deploy: a long-running worker per SuperNode, or a process per message")
    ap.add_argument("--runs", type=int, default=1, help="with --deploy: deployment runs on one deployment")
    a = ap.parse_args()
    if a.deploy:
        r = deploy_vs_simulation(clientapp=a.clientapp, runs=a.runs)
        print(json.dumps(r, indent=1, default=float))
        return
    if a.compare:
        print(compare_with_trainer(a.devices, a.slots, dataset=a.dataset, model=a.model))
        return
    s = run_flower_workload(a.devices, a.slots, a.model, dataset=a.dataset)
    r = run_flower_workload.last_result  # type: ignore[attr-defined]
    print(f"flower: n={a.devices} T={a.slots} model={a.model}: {s:.2f} s total "
          f"({r['wall_seconds']:.2f} s in the ServerApp, {s / a.slots:.3f} s/slot), "
          f"final accuracy {r['final_accuracy']:.4f}")
    print(f"{s:.3f}")


if __name__ == "__main__":
    main()
