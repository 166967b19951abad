"""The reference suite's runtime and the report of how many generated cases agreed.

`HYPOTHESIS_PROFILE=long .venv/bin/pytest tests/reference` runs the long profile (see
`harness.examples`). The totals are printed after the run and written to
`.hypothesis/reference_cases-<profile>.json` so that a run can be quoted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from meterbill.local.runtime import LocalRuntime
from tests.conftest import PROJECT_ROOT, TABLE_NAME
from tests.reference.harness import PASSED_CASES, PROFILE, RuntimePool

_REPORTS = PROJECT_ROOT / ".hypothesis"


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    """One local runtime (moto, template.yaml's table and routes, stream pump) per module."""
    saved = os.environ.get("INGEST_RATE_LIMIT")
    os.environ["INGEST_RATE_LIMIT"] = "0"
    local = LocalRuntime(PROJECT_ROOT, table_name=TABLE_NAME)
    local.start()
    try:
        yield local
    finally:
        local.stop()
        if saved is None:
            os.environ.pop("INGEST_RATE_LIMIT", None)
        else:
            os.environ["INGEST_RATE_LIMIT"] = saved


@pytest.fixture(scope="module")
def runtimes() -> Iterator[RuntimePool]:
    """Local runtimes for generated cases, a fresh one every few dozen cases."""
    saved = os.environ.get("INGEST_RATE_LIMIT")
    os.environ["INGEST_RATE_LIMIT"] = "0"
    pool = RuntimePool(PROJECT_ROOT, TABLE_NAME)
    try:
        yield pool
    finally:
        pool.stop()
        if saved is None:
            os.environ.pop("INGEST_RATE_LIMIT", None)
        else:
            os.environ["INGEST_RATE_LIMIT"] = saved


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not PASSED_CASES:
        return
    counts = dict(sorted(PASSED_CASES.items()))
    total = sum(counts.values())
    terminalreporter.write_line(
        f"reference model: {total} generated cases agreed with the pipeline "
        f"(Hypothesis profile {PROFILE}): {counts}"
    )
    _REPORTS.mkdir(parents=True, exist_ok=True)
    report = {"profile": PROFILE, "total": total, "cases": counts}
    (_REPORTS / f"reference_cases-{PROFILE}.json").write_text(json.dumps(report, indent=2) + "\n")
