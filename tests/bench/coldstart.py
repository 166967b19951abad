"""Import time of each function's handler module, in a fresh interpreter each time.

Lambda puts the function's CodeUri first on `sys.path` and imports the handler's module; the
layer (here, the installed `meterbill` package) is already importable. The child process does
the same and reports the seconds that import took, so interpreter start-up is left out of
both the handler figures and the `import boto3` baseline they are compared with.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from dataclasses import dataclass

from meterbill.local.template import Template
from tests.bench.deployment import PROJECT_ROOT

__all__ = ["ImportTimes", "measure_imports"]

RUNS = 5
_PROBE = """
import sys, time
start = time.perf_counter()
{statement}
print(time.perf_counter() - start)
"""


@dataclass(frozen=True)
class ImportTimes:
    """Median seconds of `RUNS` fresh imports, by function, and of `import boto3` alone."""

    boto3: float
    handlers: dict[str, float]


def measure_imports(runs: int = RUNS) -> ImportTimes:
    template = Template(PROJECT_ROOT / "template.yaml")
    statements = {"boto3": "import boto3"}
    for function in template.functions():
        source, _ = template.handler_file(function)
        statements[function] = f"sys.path.insert(0, {str(source.parent)!r})\nimport {source.stem}"
    for statement in statements.values():
        _import_once(statement)  # writes the bytecode caches, as a deployed package has them
    # Interleaved, so that a slow moment of the machine does not land on one function only.
    samples: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(runs):
        for name, statement in statements.items():
            samples[name].append(_import_once(statement))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    boto3 = medians.pop("boto3")
    return ImportTimes(boto3=boto3, handlers=medians)


def _import_once(statement: str) -> float:
    environment = {
        **os.environ,
        "TABLE_NAME": "meterbill-bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "meterbill",
    }
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(statement=statement)],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return float(result.stdout.strip().splitlines()[-1])
