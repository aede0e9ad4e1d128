"""Fog networks over time: :class:`Scenario`, topology and cost generators, traces (SPEC §1, §4, §5)."""

from foglearn.network.generators import PROFILES, default_max_points, synthetic
from foglearn.network.scenario import Scenario, ScenarioError
from foglearn.network.topology import TOPOLOGIES
from foglearn.network.traces import Traces, from_traces, load_traces, write_traces

__all__ = ["PROFILES", "TOPOLOGIES", "Scenario", "ScenarioError", "Traces", "default_max_points",
           "from_traces", "load_traces", "synthetic", "write_traces"]
