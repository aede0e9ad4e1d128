"""Report pieces: checks of the paper's claims and the Markdown sections an experiment writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Check:
    """One claim of the paper tested on our numbers: the claim, whether it holds, the evidence."""

    claim: str
    holds: bool
    evidence: str

    def markdown(self) -> str:
        mark = "holds" if self.holds else "**does not hold**"
        return f"- {self.claim}: {mark} — {self.evidence}"


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
        lines.append(f"_{self.runs} run{'s' if self.runs != 1 else ''}; this invocation computed {self.computed} of them in "
                     f"{self.seconds:.1f} s wall time; the runs took {self.run_seconds:.1f} s of worker time in all._")
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


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f} %"
