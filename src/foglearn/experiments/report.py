"""Report pieces: claims of the paper checked on our numbers, prose templates, Markdown sections.

An experiment states what it checks as a table of :class:`Claim` rows (the claim, the metric,
the comparison and its threshold, the paper's value from :mod:`foglearn.experiments.paper`) and
writes its prose as templates filled by :func:`render`; no sentence of a report is assembled
from f-strings in the experiment's code.
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foglearn.experiments.tables import fmt


@dataclass(frozen=True)
class Check:
    """One claim of the paper tested on our numbers: the claim, whether it holds, the evidence."""

    claim: str
    holds: bool
    evidence: str

    def markdown(self) -> str:
        mark = "holds" if self.holds else "**does not hold**"
        return f"- {self.claim}: {mark} — {self.evidence}"


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Claim:
    """One row of an experiment's table of claims.

    The claim holds when ``metric op threshold`` and every extra condition in ``also`` hold.
    ``metric`` names a value the experiment measured; ``threshold`` is a number or the name of
    another measured value. ``claim`` and ``evidence`` are :func:`render` templates over the
    measured values, ``threshold`` and ``paper`` (the paper's numbers, taken from
    :mod:`foglearn.experiments.paper`). With ``scope`` the values of ``values[scope]`` (one model,
    one topology, …) come first. A claim whose values were not measured (a setting missing, no
    training) is left out of the report; a value that is NaN makes the claim fail.
    """

    claim: str
    metric: str
    op: str
    threshold: float | str
    evidence: str
    paper: Mapping[str, Any] = field(default_factory=dict)
    also: tuple[tuple[str, str, float | str], ...] = ()
    scope: str | None = None

    def __post_init__(self) -> None:
        for _, op, _ in ((self.metric, self.op, self.threshold), *self.also):
            if op not in _OPS:
                raise ValueError(f"Claim.op = {op!r}: must be one of {tuple(_OPS)}")

    def check(self, values: Mapping[str, Any]) -> Check | None:
        """The claim tested on ``values``, or ``None`` when a value it needs was not measured."""
        if self.scope is not None:
            if not isinstance(values.get(self.scope), Mapping):
                return None
            values = {**values, **values[self.scope]}
        tests = ((self.metric, self.op, self.threshold), *self.also)
        names = [n for m, _, t in tests for n in (m, t) if isinstance(n, str)]
        if any(values.get(n) is None for n in names):
            return None

        def value(x: float | str) -> Any:
            return values[x] if isinstance(x, str) else x

        holds = all(bool(_OPS[op](value(m), value(t))) for m, op, t in tests)
        ns = {**values, "threshold": value(self.threshold), "paper": self.paper}
        return Check(render(self.claim, ns), holds, render(self.evidence, ns))


def check_all(claims: Sequence[Claim], values: Mapping[str, Any]) -> list[Check]:
    """The checks of ``claims`` on ``values``, in table order, without the unmeasured ones."""
    return [c for c in (claim.check(values) for claim in claims) if c is not None]


def pct(x: float, digits: int = 1) -> str:
    """``12.3 %`` (a fraction as a percentage)."""
    return f"{100 * x:.{digits}f} %"


def signed_pct(x: float, digits: int = 0) -> str:
    """``−46 %`` / ``+3 %`` (a typographic minus)."""
    return f"{'−' if x < 0 else '+'}{abs(100 * x):.{digits}f} %"


_SPECS: dict[str, Callable[[Any, int | None], str]] = {
    "pct": lambda v, d: pct(v, 1 if d is None else d),
    "spct": lambda v, d: signed_pct(v, 0 if d is None else d),
    "fmt": lambda v, d: fmt(v, 3 if d is None else d),
    "pts": lambda v, d: f"{abs(100 * v):g}",
}
_SPEC = re.compile(r"(pct|spct|fmt|pts)(\d*)")
_ITEM_FIELD = re.compile(r"<([^<>]*)>")


class _Formatter(string.Formatter):
    """``str.format`` plus four number styles and lists.

    ``{x:pct}`` → ``12.3 %`` (``pct0``, ``pct2``: digits), ``{x:spct}`` → ``−46 %``,
    ``{x:fmt}`` → :func:`~foglearn.experiments.tables.fmt` (``fmt4``: 4 significant digits),
    ``{x:pts}`` → the size of ``x`` in percentage points (``-0.001`` → ``0.1``).
    A list with a spec ``*S`` formats each item with ``S`` and joins them with ``, ``; ``S`` may
    be an item template in angle brackets over the item's fields ``x`` and ``y`` (a pair) or its
    keys (a mapping): ``{offload:*n=<x>: <y:pct>}`` → ``n=5: 30.0 %, n=10: 52.1 %``.
    """

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec.startswith("*"):
            spec = format_spec[1:]
            if "<" in spec:
                item = _ITEM_FIELD.sub(r"{\1}", spec)
                return ", ".join(self.format(item, **_item_fields(v)) for v in value)
            return ", ".join(self.format_field(v, spec) for v in value)
        m = _SPEC.fullmatch(format_spec)
        if m:
            return _SPECS[m.group(1)](value, int(m.group(2)) if m.group(2) else None)
        return super().format_field(value, format_spec)


def _item_fields(v: Any) -> dict[str, Any]:
    if isinstance(v, Mapping):
        return dict(v)
    x, y = v
    return {"x": x, "y": y}


_FORMATTER = _Formatter()


def render(template: str, values: Mapping[str, Any] | None = None, **more: Any) -> str:
    """Fill a prose template with measured values (:class:`_Formatter` has the number styles)."""
    return _FORMATTER.vformat(template, (), {**(values or {}), **more})


@dataclass
class Section:
    """What an experiment contributes to the report."""

    name: str
    title: str
    body: str
    plots: list[Path] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    seconds: float = 0.0
    run_seconds: float = 0.0
    runs: int = 0
    computed: int = 0
    note: str = ""

    def markdown(self, level: int = 2, image_prefix: str = "") -> str:
        h = "#" * level
        lines = [f"{h} {self.title}", ""]
        lines.append(
            render(
                TEXT["section_runs"],
                runs=self.runs,
                s="s" if self.runs != 1 else "",
                computed=self.computed,
                seconds=self.seconds,
                run_seconds=self.run_seconds,
            )
        )
        lines.append("")
        if self.note:
            lines += [self.note, ""]
        lines += [self.body.rstrip(), ""]
        for p in self.plots:
            lines += [f"![{p.stem}]({image_prefix}{p.name})", ""]
        if self.checks:
            lines += [f"{h}# Claims checked", ""]
            lines += [c.markdown() for c in self.checks]
            lines.append("")
        if self.differences:
            lines += [f"{h}# Differences from the paper", ""]
            lines += [f"- {d}" for d in self.differences]
            lines.append("")
        return "\n".join(lines)


#: The report's own sentences (each experiment keeps its prose in its module's ``TEXT``).
TEXT: dict[str, str] = {
    "section_runs": (
        "_{runs} run{s}; this invocation computed {computed} of them in {seconds:.1f} s wall time; "
        "the runs took {run_seconds:.1f} s of worker time in all._"
    ),
    "title": "# foglearn reproduction of Tu et al. (INFOCOM 2020), Section V",
    "wall_time": "Wall time of this invocation: {seconds:.0f} s.",
    "options_quick": "quick mode (first {quick_seeds} seeds, horizon T = {horizon}, n = {n})",
    "options_full": "full mode (T = {horizon}, n = {n})",
    "options_window": (
        "; estimated-information windows scaled with T (W = {full} at T = {horizon} → W = {window}) "
        "so that the horizon holds as many windows"
    ),
    "options": (
        "Configuration: {mode}; seeds {seeds}; dataset {dataset}; model {model} (Table II trains "
        "both); training {training}; {jobs} worker process(es) with one torch thread each; "
        "machine: {machine}, Python {python}."
    ),
    "summary_title": "## Summary of checked claims",
    "summary": "{held} of {total} claims hold on our numbers.",
    "not_reproduced": "Not reproduced: {claim} — {evidence}.",
    "produced_by": "Produced by `{command}` (raw runs in `{run_dir}`, git-ignored).",
}
