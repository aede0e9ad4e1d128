"""Data-movement planning for problem (5)-(9): plans, cost accounting and solvers."""

from foglearn.planning.capacities import straggler_capacities
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
           "processed_points", "realise", "straggler_capacities"]
