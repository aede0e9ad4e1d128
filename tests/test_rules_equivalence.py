"""The in-process trainer and the Flower app apply the same rules (planning.rules) to the same scenario.

The Flower side is driven through its own pieces without the Flower runtime: the server's
:class:`FogStrategy` books each device's report and plans each window, every device splits its
points with ``split_counts`` as the ClientApp does, and the strategy prices what was realised.
The simulator side is ``foglearn.plan`` and the trainer. Movement, eq. (4) weights and costs must
be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import foglearn
from foglearn.flower.config import FlowerRunConfig
from foglearn.flower.protocol import scenario_report, split_counts
from foglearn.flower.strategy import FogStrategy
from foglearn.learning import load_dataset, schedule, train
from foglearn.network import synthetic
from foglearn.planning.information import windowed_fractions
from foglearn.planning.rules import aggregation_weights, realised_costs, transfer_cost, whole_points

torch.set_num_threads(1)
N, T, TAU = 4, 12, 3


def _flower(s, error, information):
    """Run the Flower server's planning and bookkeeping and the clients' split for every slot."""
    cfg = FlowerRunConfig(num_devices=N, horizon=T, period=TAU, information=information, error=error)
    strat = FogStrategy(cfg, {i: 100 + i for i in range(N)}, s.src, s.dst, planner=foglearn.plan, true_scenario=s)
    received = np.zeros((T + 1, N), dtype=np.int64)
    h = np.zeros(N, dtype=np.int64)
    weights = []
    for t in range(T):
        if t % cfg.plan_window == 0:
            strat._plan_window(t)
        for i in range(N):  # the ClientApp of device i in slot t (flower/client_app.py)
            out = np.flatnonzero(s.src == i)
            D = int(s.collected[t, i])
            counts = split_counts(D, [strat.plan_keep[t, i], *strat.plan_offload[t, out]])
            sent = np.minimum(counts[1:-1], whole_points(s.link_cap[t, out]))  # a link carries ⌊C_ij⌋
            strat.active[t, i] = True
            strat.collected[t, i], strat.kept[t, i], strat.discarded[t, i] = D, counts[0], D - counts[0] - sent.sum()
            strat.sent[t, out] = sent
            np.add.at(received[t + 1], s.dst[out], sent)
            strat.received[t, i] = received[t, i]
            strat.processed[t, i] = min(counts[0] + received[t, i], whole_points(s.proc_cap[t, i]))  # ⌊C_i⌋
            strat.dropped[t, i] = counts[1:-1].sum() - sent.sum() + counts[0] + received[t, i] - strat.processed[t, i]
            h[i] += strat.processed[t, i]
            strat._measure(t, i, {"collected": D, "proc-seconds-per-point": -1.0, "measured-link": [-1.0, -1.0],
                                  **scenario_report(s, t, i)})
        if (t + 1) % TAU == 0 or t == T - 1:  # the server aggregates by eq. (4); devices resync
            weights.append(h.copy())
            h[:] = 0
    return strat, weights


@pytest.mark.parametrize("error, information, capacities", [("linear", "estimated", False),
                                                            ("sqrt", "estimated", False),
                                                            ("linear", "perfect", True)])
def test_trainer_and_flower_move_weight_and_charge_alike(error, information, capacities):
    s = synthetic(N, T, seed=3, max_points=6 if not capacities else 40, capacities=capacities)
    strat, flower_weights = _flower(s, error, information)

    # the same planned fractions from the same measurements
    def solve(est):
        p = foglearn.plan(est, error=error)
        return p.keep, p.offload

    if information == "estimated":
        keep, offload = windowed_fractions(s, TAU, solve)
    else:
        keep, offload = solve(s)
        keep = np.where(s.collected == 0, 1.0, keep)  # no data: nothing to split
    assert np.allclose(strat.plan_keep, keep, rtol=0, atol=1e-12)
    assert np.allclose(strat.plan_offload, offload, rtol=0, atol=1e-12)

    # the same movement: the trainer's schedule of the simulator's plan vs the clients' split
    plan = foglearn.plan(s, error=error, information=TAU if information == "estimated" else "perfect")
    assert plan.stats.status == "optimal" and plan.costs.violations == 0
    sched = schedule(s, plan)
    sent = np.zeros((T, s.n_edges), dtype=np.int64)
    sent[sched.offloaded[0], sched.offloaded[1]] = sched.offloaded[2]
    if capacities:  # rounding the fractions overruns ⌊C⌋ somewhere: both hold the excess back alike
        assert (strat.dropped > 0).any()
        assert np.array_equal(sched.dropped, strat.kept + strat.received - strat.processed)
    if error == "linear":
        assert sent.sum() > 0, "the scenario should move data"
    else:  # the square-root plans keep part of D: the split has remainders to round
        assert ((plan.keep > 0.01) & (plan.keep < 0.99) & (s.collected > 1)).any()
    assert np.array_equal(sched.kept, strat.kept) and np.array_equal(sched.discarded, strat.discarded)
    assert np.array_equal(sent, strat.sent) and np.array_equal(sched.processed, strat.processed)

    # the trainer processes exactly that and weights eq. (4) by the same H_i
    r = train(s, plan, dataset=load_dataset("tiny"), model="mlp", period=TAU, lr=0.1, seed=0, eval_every=0)
    assert np.array_equal(r.processed, strat.processed)
    trainer_H = [r.processed[a:a + TAU].sum(axis=0) for a in range(0, T, TAU)]
    for hf, ht in zip(flower_weights, trainer_H, strict=True):
        assert np.array_equal(hf, ht)
        assert np.array_equal(aggregation_weights(hf), aggregation_weights(ht))

    # the same realised costs
    flower = strat.realised_costs()
    assert flower is not None and (flower["violations"] == 0 or capacities)
    if error == "linear" and not capacities:  # Theorem 3's plans are all-or-nothing: whole points
        want = r.costs
    else:  # fractional plans: price the trainer's whole points with the same rule
        want = realised_costs(collected=s.collected, processed=sched.processed,
                              discarded=sched.discarded + sched.dropped, proc_cost=s.proc_cost,
                              error_weight=s.error_weight, transfer=transfer_cost(sent, s.link_cost),
                              offloaded=float(sent.sum()), error=error).as_dict()
    for key in ("processing", "transfer", "discard", "total", "collected", "processed", "offloaded", "discarded"):
        assert np.isclose(flower[key], want[key], rtol=1e-12, atol=1e-12), key


def test_same_reports_same_plan_under_link_failures_and_churn():
    """Links fail and devices leave: the server's booked reports and the simulator's observations
    give the same estimates (the link-up and activity rules of planning.rules) and the same plans."""
    s = synthetic(N, T, seed=5, max_points=8, link_failure=0.4, leave_prob=0.3, capacities=True)
    assert not s.link_up.all() and not s.active.all()
    cfg = FlowerRunConfig(num_devices=N, horizon=T, period=TAU, information="estimated")
    strat = FogStrategy(cfg, {i: i for i in range(N)}, s.src, s.dst, planner=foglearn.plan, true_scenario=s)
    for t in range(T):
        if t % TAU == 0:
            strat._plan_window(t)
        for i in np.flatnonzero(s.active[t]):  # inactive devices do not reply
            strat._measure(t, int(i), {"collected": int(s.collected[t, i]), "proc-seconds-per-point": -1.0,
                                       "measured-link": [-1.0, -1.0], **scenario_report(s, t, int(i))})

    def solve(est):
        p = foglearn.plan(est)
        return p.keep, p.offload

    keep, offload = windowed_fractions(s, TAU, solve)
    assert np.allclose(strat.plan_keep, keep, rtol=0, atol=1e-12)
    assert np.allclose(strat.plan_offload, offload, rtol=0, atol=1e-12)
    assert offload.sum() > 0
