"""The plain paper workload on Flower 1.42's simulation runtime: the competitor for bench/trainer.py.

T slots; every slot each of n devices collects ~30 new MNIST points (D_i(t) ~ U{0..60}), takes
one SGD step on them (eq. 3) and the server aggregates every slot (τ = 1, FedAvg-like weights
H_i, eq. 4); no data movement. Same ServerApp/ClientApp as ``foglearn.flower`` with
``movement = false``; ClientApps get 1 CPU each (Flower's default is 2), torch 1 thread.

    python bench/flower_workload.py --devices 10 --slots 20 --model cnn
"""

from __future__ import annotations

import argparse
import tempfile
import time


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--slots", type=int, default=20)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--compare", action="store_true", help="Flower app vs the in-process trainer, same seed and plan")
    a = ap.parse_args()
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
