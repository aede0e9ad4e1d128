"""Theorem 5 (docs/model.md §3): value of offloading, the printed sum's failure, Monte Carlo on graphs."""

from __future__ import annotations

from fractions import Fraction

import networkx as nx
import numpy as np
import pytest

from foglearn.theory import (
    DegreeDistribution,
    TheoryError,
    named_graph,
    offloading_bracket,
    offloading_value,
    printed_bracket,
    scale_free_distribution,
    simulate_offloading_value,
)

GRAPHS = [
    (lambda: nx.barabasi_albert_graph(200, 2, seed=1), 0.2986),
    (lambda: nx.watts_strogatz_graph(50, 10, 0.1, seed=0), 0.4160),
    (lambda: nx.complete_graph(10), 0.4091),
]


@pytest.mark.parametrize(("make", "spec"), GRAPHS)
def test_value_matches_spec(make, spec):
    assert round(offloading_value(make(), 1.0), 4) == spec


@pytest.mark.parametrize(("make", "spec"), GRAPHS)
def test_simulation_matches_closed_form(make, spec):
    g = make()
    sim = simulate_offloading_value(g, 1.0, replications=4000, seed=2)
    assert abs(sim.z_score()) < 4
    assert abs(sim.mean_saving - spec) < 2e-3  # "agrees to 3 decimals"


def test_value_is_linear_in_C():
    g = named_graph("ba", 200, m=2, seed=1)
    base = offloading_value(g, 1.0)
    for C in (0.1, 2.0, 7.5):
        assert offloading_value(g, C) == pytest.approx(C * base, rel=1e-12)
        sim = simulate_offloading_value(g, C, replications=500, seed=4)
        assert abs(sim.mean_saving - C * base) < 4 * sim.stderr


def test_printed_sum_fails_in_floating_point():
    v = printed_bracket(100, 1.0)
    assert v == pytest.approx(-7.9e11, rel=0.01)  # REFERENCE: "at k = 100 it returns -7.9e11"
    assert offloading_bracket(100, 1.0) == pytest.approx(100 / 204)
    assert abs(printed_bracket(20, 1.0) - offloading_bracket(20, 1.0)) < 1e-9  # fine for small k


def test_printed_sum_is_exact_in_rational_arithmetic():
    for k in range(0, 41):
        assert printed_bracket(k, Fraction(3), exact=True) == Fraction(3 * k, 2 * (k + 2))
    assert printed_bracket(100, exact=True) == Fraction(100, 204)


def test_degree_distribution_inputs_agree():
    g = nx.barabasi_albert_graph(100, 3, seed=5)
    d = DegreeDistribution.from_graph(g)
    assert d.total == pytest.approx(1.0)
    mapping = dict(zip(d.degrees.tolist(), d.weights.tolist()))
    assert offloading_value(mapping, 2.0) == pytest.approx(offloading_value(g, 2.0))
    assert offloading_value(d, 2.0) == pytest.approx(offloading_value(g, 2.0))


def test_scale_free_forms():
    norm = scale_free_distribution(2.5, 100)
    printed = scale_free_distribution(2.5, 100, form="printed")
    k = np.arange(1, 101)
    assert norm.weights == pytest.approx(k ** -2.5 / (k ** -2.5).sum())
    assert printed.weights == pytest.approx(k ** -1.5 / (k ** -1.5).sum())
    assert offloading_value(printed) > offloading_value(norm)  # heavier tail, more neighbours
    raw = scale_free_distribution(2.5, 10, form="printed", Gamma=0.3)
    assert raw.weights == pytest.approx(0.3 * np.arange(1, 11) ** -1.5)
    with pytest.raises(TheoryError, match="Gamma"):
        scale_free_distribution(2.5, 10, Gamma=0.3)
    assert offloading_value(norm, printed=True) < -1e5  # the printed sum is useless here


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: offloading_value(nx.complete_graph(3), 0), "C"),
        (lambda: offloading_value([1, 2, 3]), "graph_or_distribution"),
        (lambda: offloading_value({1: -0.5}), "N\\(k\\)"),
        (lambda: offloading_value(nx.DiGraph([(0, 1)])), "undirected"),
        (lambda: DegreeDistribution(np.array([1.5]), np.array([1.0])), "whole"),
        (lambda: DegreeDistribution(np.array([1, 1]), np.array([0.5, 0.5])), "once"),
        (lambda: scale_free_distribution(2.5, 10, form="other"), "form"),
        (lambda: named_graph("ws", 10, p=2.0), "probability"),
    ],
)
def test_invalid_inputs(call, message):
    with pytest.raises(TheoryError, match=message):
        call()
