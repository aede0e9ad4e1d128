"""Fog networks over time: :class:`Scenario`, topology and cost generators, traces (SPEC §1, §4, §5)."""

from foglearn.network.scenario import Scenario, ScenarioError

__all__ = ["Scenario", "ScenarioError"]
