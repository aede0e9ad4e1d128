"""Fog networks over time: :class:`Scenario`, topology and cost generators, traces (docs/model.md §1,
§4, §5; docs/traces.md), devices that join or leave (docs/dynamics.md).

:data:`TOPOLOGIES` and :data:`PROFILES` are the registries of topologies and cost profiles
(``docs/extending.md``).
"""

from foglearn.network.dynamics import with_churn
from foglearn.network.generators import (
           PROFILES,
           Costs,
           ProfileInputs,
           default_max_points,
           synthetic,
)
from foglearn.network.scenario import Scenario, ScenarioError
from foglearn.network.topology import TOPOLOGIES, TopologyInputs
from foglearn.network.traces import Traces, from_traces, load_traces, write_traces

__all__ = ["PROFILES", "TOPOLOGIES", "Costs", "ProfileInputs", "Scenario", "ScenarioError",
           "TopologyInputs", "Traces", "default_max_points", "from_traces", "load_traces", "synthetic",
           "with_churn", "write_traces"]
