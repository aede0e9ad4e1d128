"""Data-movement planning for problem (5)-(9): plans, cost accounting and solvers."""

from foglearn.planning.capacities import queue_wait_capacity, sojourn_capacity, straggler_capacities
from foglearn.planning.plan import (
    CostBreakdown,
    Plan,
    PlanError,
    SolverStats,
    check_feasible,
    processed_points,
    realise,
)
from foglearn.planning.solve import SOLVERS, plan

__all__ = ["CostBreakdown", "Plan", "PlanError", "SOLVERS", "SolverStats", "check_feasible", "plan",
           "processed_points", "queue_wait_capacity", "realise", "sojourn_capacity", "straggler_capacities"]
