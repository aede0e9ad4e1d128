"""Data-movement planning for problem (5)-(9): plans, cost accounting and solvers."""

from foglearn.planning.plan import (
    CostBreakdown,
    Plan,
    PlanError,
    SolverStats,
    check_feasible,
    processed_points,
    realise,
)

__all__ = ["CostBreakdown", "Plan", "PlanError", "SolverStats", "check_feasible", "processed_points", "realise"]
