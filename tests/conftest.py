"""Hypothesis profiles: deterministic by default, wide exploration on demand.

- ``ci`` (the default for every pytest run: ``make test``, ``CI=1``, a bare ``pytest``):
  derandomized (each property test draws the same examples every run), no example database,
  no deadline (timings on shared machines are noise) — a test passes or fails the same way
  everywhere, so a landing is never blocked by a rare draw.
- ``fuzz`` (``make fuzz``, or ``pytest --hypothesis-profile=fuzz``): random seeds, the example
  database in ``.hypothesis/`` on (failures found are replayed first on the next run), and every
  property test's ``max_examples`` multiplied by ``FOGLEARN_FUZZ_FACTOR`` (default 10).

A failure found by ``make fuzz`` becomes a permanent regression example: copy the arguments of
the "Falsifying example: test_x(a=..., b=...)" it prints into ``@example(a=..., b=...)`` (from
``hypothesis import example``) above the test's ``@given``, and commit it; the ``ci`` profile
runs explicit examples every time.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

FUZZ_FACTOR = int(os.environ.get("FOGLEARN_FUZZ_FACTOR", "10"))

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", derandomize=False, deadline=None, print_blob=True,
                          database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
                          suppress_health_check=[HealthCheck.too_slow])


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Load ``ci`` unless a profile was named with ``--hypothesis-profile``."""
    if not config.getoption("--hypothesis-profile", None):
        settings.load_profile("ci")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``fuzz``, scale each property test's own ``max_examples`` by ``FOGLEARN_FUZZ_FACTOR``
    (tests set it per test, by cost, and a test's own setting overrides any profile)."""
    if settings.get_current_profile_name() != "fuzz":
        return
    for item in items:
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if own is not None:
            test._hypothesis_internal_use_settings = settings(
                own, max_examples=own.max_examples * FUZZ_FACTOR)
