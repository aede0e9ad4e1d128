"""Theorems 2, 4, 5 and 6 of Tu et al. (INFOCOM 2020) as functions, each with a numerical check.

=========  ==========================================  =============================================
theorem    closed form                                 counterpart
=========  ==========================================  =============================================
2          :func:`straggler_capacity`, :func:`phi`,    :func:`simulate_queue_wait` (D/M/1, Lindley)
           :func:`queue_wait`, :func:`sojourn_time`
4          :func:`hierarchical_optimum`                :func:`solve_hierarchical_numeric` (scipy)
5          :func:`offloading_value`,                   :func:`simulate_offloading_value`
           :func:`printed_bracket` (the printed (15))
6          :func:`expected_violations` (mean-field,    :func:`simulate_violations`
           exact)
=========  ==========================================  =============================================

docs/model.md §3 is authoritative where it corrects the paper. This package is mathematics only:
numpy, scipy, numba and networkx (plots add matplotlib); it imports neither the network model nor
the planner. Comparisons of a theorem with the planner, and the report that prints every number,
live above both, in :mod:`foglearn.experiments.theorems` and :mod:`foglearn.experiments.theory_report`.
"""

from __future__ import annotations

from foglearn.theory._checks import TheoryError
from foglearn.theory.hierarchy import (
    HierarchyInstance,
    HierarchySolution,
    hierarchical_objective,
    hierarchical_optimum,
    solve_augmented_numeric,
    solve_hierarchical_numeric,
)
from foglearn.theory.offloading import (
    DegreeDistribution,
    OffloadingSimulation,
    named_graph,
    offloading_bracket,
    offloading_value,
    printed_bracket,
    scale_free_distribution,
    simulate_offloading_value,
)
from foglearn.theory.straggler import (
    QueueSimulation,
    phi,
    queue_wait,
    simulate_queue_wait,
    sojourn_time,
    straggler_capacity,
    target_phi,
)
from foglearn.theory.violations import (
    Capacity,
    ViolationSimulation,
    expected_violations,
    mean_field_loads,
    offload_probability,
    simulate_violations,
    uniform_capacity,
    violation_probabilities,
)

__all__ = [
    "Capacity",
    "DegreeDistribution",
    "HierarchyInstance",
    "HierarchySolution",
    "OffloadingSimulation",
    "QueueSimulation",
    "TheoryError",
    "ViolationSimulation",
    "expected_violations",
    "hierarchical_objective",
    "hierarchical_optimum",
    "mean_field_loads",
    "named_graph",
    "offload_probability",
    "offloading_bracket",
    "offloading_value",
    "phi",
    "printed_bracket",
    "queue_wait",
    "scale_free_distribution",
    "simulate_offloading_value",
    "simulate_queue_wait",
    "simulate_violations",
    "sojourn_time",
    "solve_augmented_numeric",
    "solve_hierarchical_numeric",
    "straggler_capacity",
    "target_phi",
    "uniform_capacity",
    "violation_probabilities",
]
