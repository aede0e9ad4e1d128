"""``--log tensorboard``: a run's metrics as TensorBoard event files inside its run directory.

The events are written after the run from what it recorded, with the same numbers as its CSV
files: ``OUT/tensorboard/<setting>/`` holds one event file per setting (a rerun replaces it).
TensorBoard comes with the ``tracking`` extra (``pip install 'foglearn[tracking]'``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from foglearn.errors import InputError

#: What ``--log`` can write.
LOGGERS = ("tensorboard",)

Log = Annotated[str | None, typer.Option(
    "--log", show_default=False,
    help="tensorboard: also write the metrics as TensorBoard event files into OUT/tensorboard/<setting>/ "
    "(needs the tensorboard package: foglearn's extra named tracking)")]


def require_tensorboard(log: str) -> None:
    """Check ``--log`` before any work: a known logger whose package is installed."""
    if log not in LOGGERS:
        raise InputError(f"--log = {log!r}: must be one of {', '.join(LOGGERS)}")
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise InputError("--log tensorboard: the tensorboard package is not installed; install the tracking "
                         "extra: pip install 'foglearn[tracking]'") from None


def _scalar(value: Any) -> float | None:
    """A finite number as float, anything else (text, NaN, missing) as ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def write_tensorboard(out: Path, runs: Mapping[str, tuple[Sequence[Mapping[str, Any]], Mapping[str, Any]]],
                      *, step: str = "slot") -> list[Path]:
    """Write ``OUT/tensorboard/<name>/`` for each ``name -> (rows, totals)`` of ``runs``.

    Every numeric column of each row becomes the scalar ``<column>`` at step ``row[step]`` (the
    CSV rows: ``slots.csv`` of ``foglearn run``, ``runs.csv`` of ``foglearn sweep``); each numeric
    entry of ``totals`` (the costs) becomes ``cost/<key>`` at the last step. NaN (a slot without an
    evaluation) is left out. Old event files of the same names are removed first.
    """
    from torch.utils.tensorboard import SummaryWriter

    folders = []
    for name, (rows, totals) in runs.items():
        folder = out / "tensorboard" / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("events.out.tfevents.*"):
            old.unlink()
        last = 0
        with SummaryWriter(log_dir=str(folder)) as writer:
            for row in rows:
                at = int(row[step])
                last = max(last, at)
                for key, value in row.items():
                    if key != step and (x := _scalar(value)) is not None:
                        writer.add_scalar(key, x, global_step=at)
            for key, value in totals.items():
                if (x := _scalar(value)) is not None:
                    writer.add_scalar(f"cost/{key}", x, global_step=last)
        folders.append(folder)
    return folders
