"""Devices that join or leave mid-horizon (docs/dynamics.md): a :class:`Scenario` transformation.

The paper's model has an active set ``V(t)`` (docs/model.md §1): an inactive device neither
collects, processes nor receives, and links touching it are down. :func:`with_churn` gives devices
a *presence interval* ``[join, leave)``: outside it a device is inactive in every slot, so it has
no arrivals ``D_i(t)``, no processing (its ``C_i(t)`` counts as 0, docs/model.md §2) and its links
are down.

In this slot model a device holds no backlog: what it collects in a slot is processed in that slot
or, offloaded, by a neighbour in the next. The data a departure strands is what the device
collected in the slot it leaves: ``leave={i: L}`` means device ``i`` collects ``D_i(L)`` and leaves
before processing it. With ``handover`` those points go to a neighbour — a device ``j`` with a link
``i → j`` up in slot ``L`` and present in ``L``, drawn uniformly from ``seed`` — which processes
them as if it had collected them (``D_j(L) += D_i(L)``, its ``c_j`` and ``f_j`` apply); without a
handover, or without such a neighbour, they are lost. Lost points never enter the scenario, so no
plan can process them: they are counted in ``info["churn"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from foglearn.network.scenario import Scenario, ScenarioError

__all__ = ["with_churn"]


def _device(scenario: Scenario, field: str, key: object) -> int:
    """Device ``key``: an index ``0..n-1`` or a name of :attr:`Scenario.device_names`."""
    n = scenario.n_devices
    if isinstance(key, str):
        names = scenario.device_names
        if key in names:
            return names.index(key)
        raise ScenarioError(f"{field}[{key!r}]: no device of that name (names: {names[:5]}{'…' if n > 5 else ''})")
    if isinstance(key, bool) or not isinstance(key, int | np.integer) or not 0 <= key < n:
        raise ScenarioError(f"{field}[{key!r}]: a device must be an index in 0..{n - 1} or a device name")
    return int(key)


def _slots(scenario: Scenario, field: str, mapping: Mapping[Any, Any] | None) -> dict[int, int]:
    """``{device: slot}`` with every slot a whole number in ``0..T-1``."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ScenarioError(f"{field}: must map devices to slots, e.g. {{0: 5}}, got {type(mapping).__name__}")
    T = scenario.horizon
    out: dict[int, int] = {}
    for key, slot in mapping.items():
        i = _device(scenario, field, key)
        if isinstance(slot, bool) or not isinstance(slot, int | np.integer) or not 0 <= slot < T:
            raise ScenarioError(f"{field}[{key!r}] = {slot!r}: must be a slot in 0..{T - 1}")
        if i in out:
            raise ScenarioError(f"{field}[{key!r}]: device {i} is named twice")
        out[i] = int(slot)
    return out


def with_churn(scenario: Scenario, leave: Mapping[Any, int] | None = None, join: Mapping[Any, int] | None = None,
               *, handover: bool = False, seed: int = 0) -> Scenario:
    """``scenario`` with devices present only in ``[join, leave)`` (docs/dynamics.md).

    Parameters
    ----------
    leave : {device: slot}
        Device ``i`` leaves in slot ``L``: it is absent (inactive, no arrivals, links down) in
        slots ``L … T−1``. What it collected in slot ``L`` (``D_i(L)`` of ``scenario``) is
        stranded: handed over or lost.
    join : {device: slot}
        Device ``i`` joins in slot ``J``: absent in slots ``0 … J−1``. A device in both needs
        ``J < L``.
    handover : bool
        Whether a leaving device hands its stranded points to a neighbour (a device ``j`` with the
        link ``i → j`` up in ``L`` and present in ``L``, drawn uniformly with ``seed``); without
        one, or with ``handover=False``, they are lost.
    seed : int
        The draw of the neighbours (``numpy.random.default_rng(seed)``, leaving devices in index
        order).

    Devices are indices ``0..n-1`` or names of :attr:`Scenario.device_names`. Inside its interval
    a device keeps the activity, arrivals and links of ``scenario``. ``info["churn"]`` records
    the intervals and the counts (points): ``stranded`` (collected in a leave slot),
    ``handed_over``, ``lost`` (stranded and not handed over), ``absent`` (``D_i(t)`` of
    ``scenario`` outside the intervals, never collected) and ``handovers`` as ``[slot, from, to,
    points]``; ``Σ D`` of the result ``+ lost + absent = Σ D`` of ``scenario``.
    """
    if not isinstance(scenario, Scenario):
        raise ScenarioError(f"scenario: must be a Scenario, got {type(scenario).__name__}")
    if "churn" in scenario.info:
        raise ScenarioError("scenario: churn is already applied; give every join and leave to one with_churn call")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ScenarioError(f"seed = {seed!r}: must be a whole number ≥ 0")
    if not isinstance(handover, bool):
        raise ScenarioError(f"handover = {handover!r}: must be True or False")
    leaves, joins = _slots(scenario, "leave", leave), _slots(scenario, "join", join)
    T, n = scenario.horizon, scenario.n_devices
    start, stop = np.zeros(n, dtype=np.int64), np.full(n, T, dtype=np.int64)
    for i, slot in joins.items():
        start[i] = slot
    for i, slot in leaves.items():
        stop[i] = slot
    empty = start >= stop
    if empty.any():
        i = int(np.argmax(empty))
        raise ScenarioError(f"join[{i}] = {start[i]}, leave[{i}] = {stop[i]}: device {i} would never be present "
                            "(need join < leave)")
    slots = np.arange(T)[:, None]
    present = (slots >= start) & (slots < stop)
    active = scenario.active & present
    original = scenario.collected
    collected = np.where(present, original, 0)
    link_up = scenario.link_up & present[:, scenario.src] & present[:, scenario.dst]
    rng = np.random.default_rng(seed)
    stranded = lost = 0
    handovers: list[list[int]] = []
    for i in sorted(leaves):
        L, pts = leaves[i], int(original[leaves[i], i])
        stranded += pts
        if pts == 0:
            continue
        out = np.flatnonzero((scenario.src == i) & scenario.link_up[L])
        out = out[active[L, scenario.dst[out]]]
        if not handover or out.size == 0:
            lost += pts
            continue
        j = int(scenario.dst[out[rng.integers(out.size)]])
        collected[L, j] += pts
        handovers.append([L, i, j, pts])
    absent = int(original.sum()) - int(np.where(present, original, 0).sum()) - stranded
    churn = {"join": {str(i): s for i, s in sorted(joins.items())},
             "leave": {str(i): s for i, s in sorted(leaves.items())},
             "handover": handover, "seed": int(seed), "stranded": stranded, "handed_over": stranded - lost,
             "lost": lost, "absent": absent, "handovers": handovers}
    return scenario.replace(collected=collected, active=active, link_up=link_up,
                            info={**scenario.info, "churn": churn})
