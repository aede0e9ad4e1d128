"""The paper's evaluation (Tu et al., INFOCOM 2020, Sec. V) as reproducible experiments.

``run_experiment("table3", ExperimentOptions(...))`` runs seeds × settings (a process pool,
resumable, one result file per run keyed by a hash of its :class:`RunConfig`) and writes a run
directory with ``config.toml``, raw results, mean/spread over seeds, PNG plots and a Markdown
report beside the paper's numbers. :data:`EXPERIMENTS` maps each experiment's name to its entry
(one module per table or figure in :mod:`foglearn.experiments.paper`, which also holds the
paper's numbers); each checks the paper's claims from a declarative table of :class:`Claim`
rows. The CLI is ``foglearn reproduce NAME``.
"""

from foglearn.experiments.config import (
    ConfigError,
    ExperimentOptions,
    RunConfig,
    SweepSpec,
    read_config_toml,
    write_config_toml,
)
from foglearn.experiments.core import Interrupted, export_docs, run_experiment
from foglearn.experiments.definitions import EXPERIMENTS, Experiment, Results, Summary, names
from foglearn.experiments.report import Check, Claim, Section, render
from foglearn.experiments.runner import RunFailed, SweepOutcome, build_scenario, run_one, run_sweep
from foglearn.experiments.storage import ResultStore
from foglearn.experiments.tables import aggregate, flatten

__all__ = ["EXPERIMENTS", "Check", "Claim", "ConfigError", "Experiment", "ExperimentOptions", "Interrupted",
           "ResultStore", "Results", "RunConfig", "RunFailed", "Section", "Summary", "SweepOutcome", "SweepSpec",
           "aggregate", "build_scenario", "export_docs", "flatten", "names", "read_config_toml", "render",
           "run_experiment", "run_one", "run_sweep", "write_config_toml"]
