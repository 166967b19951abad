"""`make bench`: measure meterbill's cost and speed, print a table, write the figures as JSON.

    python -m tests.bench.run            # from the checkout; JSON to $BENCH_OUT

Six parts, each saying how it measured:

1. write units and requests per ingested event, counted from the requests sent (`counts`);
2. read units per proposed invoice, counted the same way;
3. CPU time per event in the ingest and aggregator handlers beside a parse-and-validate floor;
4. cold start: handler module import time beside `import boto3`;
5. the local runtime: bulk ingest throughput and proposed-invoice latency;
6. dollars per million events, from 1 and 3 (and an estimate of Lambda duration from 3).

Counted figures (1, 2) do not depend on the machine; timed ones (3, 4, 5) do. Each target is
printed with PASS or MISS and what the figure is made of; a MISS is a finding, not a failure.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from meterbill.local.template import Template
from tests.bench.coldstart import RUNS, ImportTimes, measure_imports
from tests.bench.costs import PRICES, CostPerMillion, Estimate, cost_per_million
from tests.bench.counts import InvoiceReads, WriteCost, measure_invoice_reads, measure_write_costs
from tests.bench.cpu import CpuTimes, measure_cpu
from tests.bench.deployment import OVERRIDES, PROJECT_ROOT
from tests.bench.local import (
    FIRST_EVENTS,
    LATENCY_SAMPLES,
    SEEDED_SAMPLES,
    InvoiceLatency,
    Throughput,
    measure_invoice_latency,
    measure_throughput,
    percentile,
)

__all__ = ["main"]

WIDTH = 100
HOW = {
    "writes": (
        "Botocore hooks on the store's client price every request sent: item sizes by the "
        "DynamoDB rules, 1 write unit per started KB of the larger of the item before and after, "
        "the gsi1 entry again when the item carries gsi1pk/gsi1sk (projection ALL), a failed "
        "condition at least 1. moto's ConsumedCapacity is ignored. The aggregator gets each "
        "request's events as one stream batch, read from moto's stream with the template's "
        "filter. Warmed first: catalog cached, each counter holding all 16 lane watermarks."
    ),
    "reads": (
        "The same meter on billing.proposed_invoice, once the aggregator counted every event "
        "(the invoice is checked against the events sent). A quarterly plan started 33 days "
        "ago, so 31 days of usage fit one period under the 35-day backdating limit; usage is one "
        "busy quarter-hour a day. 1 read unit per started 4 KB per GetItem item or per Query "
        "response, at least 1; the code reads with ConsistentRead, the eventually consistent "
        "cost (half) is beside. 'Counting' is the aggregator's write units per event for it."
    ),
    "cpu": (
        "time.process_time() over repeated invocations of the handler (imported from its "
        "CodeUri) with a 100-event payload and a store that answers from memory; median of 5 "
        "rounds. Floor: json.loads(parse_float=Decimal) plus EventRequest validation of the "
        "same body, same run."
    ),
    "imports": (
        f"A fresh interpreter per sample imports the handler module the way Lambda does "
        f"(CodeUri first on sys.path, TABLE_NAME set) and reports the import's seconds; median "
        f"of {RUNS}, after one run that writes bytecode caches; `import boto3` the same way."
    ),
    "throughput": (
        "A `meterbill serve` subprocess (moto in-process, handlers under one lock, the stream "
        "pump running); one client posts 100-event bulks back to back. Accepted: first request "
        "to last 202. Counted: until GET usage shows every event."
    ),
    "costs": (
        "Per million events of the 3-feature, 1-customer case at us-east-1 on-demand list "
        "prices of 2026-12-03 (DynamoDB: the November 2024 prices). API Gateway, Lambda "
        "requests and DynamoDB units are the counts above, the aggregator invoked once per "
        "request. Lambda duration is an ESTIMATE: DynamoDB round trips x {latency:g} ms + "
        "measured CPU (handler + botocore per call) x 1,769/{memory} for a {memory} MB "
        "function's share of a vCPU; it errs high."
    ),
    "latency": (
        f"Wall time of {LATENCY_SAMPLES} proposed invoices ({SEEDED_SAMPLES} with 100,000 "
        f"events), nearest-rank percentiles: p99 is the slowest sample. Over HTTP on the serve "
        f"process above; in-process, the billing handler invoked as Lambda does, 100,000 events "
        f"built by Store.put_event, put straight into moto's table and counted by the "
        f"aggregator handler from moto's stream in one batch (through HTTP they would take far "
        f"longer than 5 minutes: moto's Query sorts the whole table on every request)."
    ),
}


@dataclass(frozen=True)
class Target:
    name: str
    measured: float
    unit: str
    target: str
    passed: bool
    made_of: str

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "MISS"


@dataclass(frozen=True)
class Results:
    """Everything one run measured, and what follows from it."""

    imports: ImportTimes
    writes: list[WriteCost]
    reads: list[InvoiceReads]
    cpu: CpuTimes
    throughput: Throughput
    latency: InvoiceLatency
    estimate: Estimate
    costs: list[CostPerMillion]
    targets: list[Target]
    seconds: float
    load_average: tuple[float, float]  # 1-minute load before and after


def main() -> int:
    out = Path(os.environ.get("BENCH_OUT") or "bench-results.json")
    results = measure()
    print("\n".join([*_report(results), *_wrap(f"Figures written to {out}.")]))
    out.write_text(json.dumps(_document(results), indent=2) + "\n")
    return 0


def measure() -> Results:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]

    def progress(message: str) -> None:
        elapsed = time.perf_counter() - started
        print(f"... {elapsed:4.0f} s  {message}", file=sys.stderr, flush=True)

    progress("cold start: importing each handler in fresh interpreters")
    imports = measure_imports()
    progress("write and read units: 7 deployments, two at a time")
    writes, reads = _counted()
    progress("CPU time per event")
    cpu = measure_cpu()
    progress("local throughput over HTTP")
    throughput = measure_throughput()
    progress("proposed invoice latency with 100,000 events stored")
    latency = measure_invoice_latency()
    progress("done")

    estimate = _estimate(cpu)
    costs = [
        cost_per_million(_write_cost(writes, bulk, features=3, customers=1), cpu, estimate)
        for bulk in (1, 100, 1000)
    ]
    return Results(
        imports=imports,
        writes=writes,
        reads=reads,
        cpu=cpu,
        throughput=throughput,
        latency=latency,
        estimate=estimate,
        costs=costs,
        targets=_targets(writes, reads, cpu, imports, throughput),
        seconds=time.perf_counter() - started,
        load_average=(load_before, os.getloadavg()[0]),
    )


def _counted() -> tuple[list[WriteCost], list[InvoiceReads]]:
    """Sections 1 and 2. Counted figures do not depend on timing, so the deployments run in
    parallel processes (moto needs about a minute for the 100-customer ones)."""
    # 100 customers in 10-event bulks is left out (moto would spend ~15 s on it): its shares
    # are those of rows that are measured, see the note under the table.
    write_cases = {
        (3, 100): (1, 100, 1000),
        (1, 100): (1, 100, 1000),
        (3, 1): (1, 10, 100, 1000),
        (1, 1): (1, 10, 100, 1000),
    }  # the slowest first
    read_cases = {
        10: ((1, 100), (31, 100)),
        3: ((1, 100), (31, 100), (1, 1000)),
        1: ((1, 100), (31, 100)),
    }
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        write_jobs = {
            case: pool.submit(measure_write_costs, *case, bulks)
            for case, bulks in write_cases.items()
        }
        read_jobs = {
            features: pool.submit(measure_invoice_reads, features, shapes)
            for features, shapes in read_cases.items()
        }
        writes = [cost for case in sorted(write_jobs) for cost in write_jobs[case].result()]
        reads = [r for features in sorted(read_jobs) for r in read_jobs[features].result()]
    return writes, reads


# --- targets ------------------------------------------------------------------------------------


def _targets(
    writes: list[WriteCost],
    reads: list[InvoiceReads],
    cpu: CpuTimes,
    imports: ImportTimes,
    throughput: Throughput,
) -> list[Target]:
    main_case = _write_cost(writes, bulk=100, features=3, customers=1)
    ingest = main_case.ingest
    aggregator = main_case.aggregator
    by_features: dict[int, list[float]] = {}
    for r in reads:
        by_features.setdefault(r.features, []).append(r.usage.read_units)
    growth = max(max(units) - min(units) for units in by_features.values())
    targets = [
        Target(
            "write units per event: 100-event bulks, 3 features, 1 customer",
            main_case.write_units_per_event,
            "WU",
            "<= 1.05",
            main_case.write_units_per_event <= 1.05,
            f"per 100 events: {_units(ingest.table_write_units)} table + "
            f"{_units(ingest.index_write_units)} gsi1 by ingest, "
            f"{_units(aggregator.write_units)} counters by the aggregator "
            f"({_operations(ingest.operations)} / {_operations(aggregator.operations)})",
        ),
        Target(
            "ingest requests per event: 100-event bulks",
            main_case.ingest_requests_per_event,
            "req",
            "<= 1.05",
            main_case.ingest_requests_per_event <= 1.05,
            f"per 100 events: {_operations(ingest.operations)}",
        ),
        Target(
            "proposed invoice read units: change from 1 to 31 days, 100 to 1,000 events",
            growth,
            "RU",
            "= 0",
            growth == 0,
            "counters are one item per feature and period: "
            + ", ".join(f"{f} features {units[0]:g} RU" for f, units in by_features.items()),
        ),
        Target(
            "ingest CPU per event / floor",
            cpu.ingest / cpu.floor,
            "x",
            "<= 3",
            cpu.ingest / cpu.floor <= 3,
            f"{_us(cpu.ingest)} with {cpu.write_concurrency} writer threads as deployed "
            f"({_us(cpu.ingest_one_writer)} with one) vs floor {_us(cpu.floor)}",
        ),
        Target(
            "aggregator CPU per event / floor",
            cpu.aggregator / cpu.floor,
            "x",
            "<= 2",
            cpu.aggregator / cpu.floor <= 2,
            f"{_us(cpu.aggregator)} vs floor {_us(cpu.floor)}",
        ),
    ]
    for function in ("IngestFunction", "AggregatorFunction"):
        ratio = imports.handlers[function] / imports.boto3
        targets.append(
            Target(
                f"{function} import / import boto3",
                ratio,
                "x",
                "<= 1.3",
                ratio <= 1.3,
                f"{_ms(imports.handlers[function])} vs {_ms(imports.boto3)}",
            )
        )
    targets.append(
        Target(
            "local bulk ingest, events accepted per second",
            throughput.accepted_per_second,
            "ev/s",
            ">= 700",
            throughput.accepted_per_second >= 700,
            f"{throughput.events} events in {throughput.bulk}-event bulks in "
            f"{throughput.accepted_seconds:.1f} s",
        )
    )
    return targets


def _estimate(cpu: CpuTimes) -> Estimate:
    """The Lambda duration assumptions, with memory as the template gives the ingest function."""
    template = Template(PROJECT_ROOT / "template.yaml")
    globals_memory = template.document.get("Globals", {}).get("Function", {}).get("MemorySize")
    memory = template.functions()["IngestFunction"].get("MemorySize", globals_memory or 128)
    return Estimate(memory_mb=int(memory), write_concurrency=cpu.write_concurrency)


def _cost_report(costs: list[CostPerMillion], estimate: Estimate) -> list[str]:
    how = HOW["costs"].format(
        latency=estimate.dynamodb_latency_seconds * 1000, memory=estimate.memory_mb
    )
    lines = ["", "6. Cost per million events, USD", "-" * WIDTH, *_wrap(how, indent="  "), ""]
    lines.append(
        f"{'bulk':>6}{'API Gateway':>13}{'Lambda req':>12}{'Lambda GB-s':>13}"
        f"{'DDB writes':>12}{'DDB reads':>11}{'total':>9}{'ingest ms':>11}{'aggr. ms':>10}"
    )
    for c in costs:
        lines.append(
            f"{c.bulk:>6}{c.api_gateway:>13.4f}{c.lambda_requests:>12.4f}"
            f"{c.lambda_duration:>13.4f}{c.dynamodb_writes:>12.4f}{c.dynamodb_reads:>11.4f}"
            f"{c.total:>9.4f}{c.ingest_seconds * 1000:>11.1f}{c.aggregator_seconds * 1000:>10.1f}"
        )
    return lines


def _write_cost(writes: list[WriteCost], bulk: int, features: int, customers: int) -> WriteCost:
    return next(
        w for w in writes if (w.bulk, w.features, w.customers) == (bulk, features, customers)
    )


# --- the printed report --------------------------------------------------------------------------


def _report(results: Results) -> list[str]:
    meta = _run_metadata()
    lines = [
        "=" * WIDTH,
        f"meterbill bench  {meta['date']}  commit {meta['commit']}"
        f"{' + uncommitted changes' if meta['dirty'] else ''}  Python {meta['python']}  "
        f"{meta['cpus']} CPUs",
        "=" * WIDTH,
    ]
    imports, cpu, throughput, latency = (
        results.imports,
        results.cpu,
        results.throughput,
        results.latency,
    )
    lines += _section("1. Write units and requests per ingested event", "writes")
    lines.append(
        f"{'features':>8}{'customers':>10}{'bulk':>6}{'events':>8}"
        f"{'WU/event':>10}{'ingest':>8}{'aggr.':>8}{'req/event: ingest':>19}{'aggr.':>8}"
    )
    for w in results.writes:
        lines.append(
            f"{w.features:>8}{w.customers:>10}{w.bulk:>6}{w.events:>8}"
            f"{w.write_units_per_event:>10.3f}{w.ingest.write_units / w.events:>8.3f}"
            f"{w.aggregator.write_units / w.events:>8.3f}"
            f"{w.ingest_requests_per_event:>19.3f}{w.aggregator_requests_per_event:>8.3f}"
        )
    lines += _wrap(
        "(100 customers in 10-event bulks is left out to save time: its ingest share is the "
        "1-customer 10-event row's, its aggregator share the 100-customer 100-event row's, "
        "every event of a batch being another customer's.)",
        indent="  ",
    )
    lines += _section("2. Read units per proposed invoice", "reads")
    lines.append(
        f"{'features':>8}{'days':>6}{'events':>8}{'requests':>10}"
        f"{'RU (strong, as coded)':>23}{'RU if eventual':>16}{'counting WU/event':>19}"
    )
    for r in results.reads:
        lines.append(
            f"{r.features:>8}{r.days:>6}{r.events:>8}{r.usage.requests:>10}"
            f"{r.usage.read_units:>23g}{r.usage.eventual_read_units:>16g}"
            f"{r.counting.write_units / r.events:>19.3f}"
        )
    lines += _section("3. CPU time per event (storage stubbed out)", "cpu")
    for name, seconds in (
        ("floor: json.loads + EventRequest", cpu.floor),
        (f"ingest handler, {cpu.write_concurrency} writer threads (deployed)", cpu.ingest),
        ("ingest handler, 1 writer (local runtime)", cpu.ingest_one_writer),
        ("aggregator handler", cpu.aggregator),
        ("left out above: Store.put_event via botocore, no network", cpu.client_put),
    ):
        lines.append(f"  {name:<56}{_us(seconds):>12}{seconds / cpu.floor:>10.2f}x floor")
    lines += _section("4. Cold start: module import in a fresh interpreter", "imports")
    lines.append(f"  {'import boto3':<56}{_ms(imports.boto3):>12}")
    for function, seconds in imports.handlers.items():
        lines.append(f"  {function:<56}{_ms(seconds):>12}{seconds / imports.boto3:>10.2f}x boto3")
    lines += _section("5. Local runtime", "throughput")
    lines.append(
        f"  bulk ingest: {throughput.accepted_per_second:.0f} events/s accepted, "
        f"{throughput.counted_per_second:.0f} events/s counted "
        f"({throughput.events} events, {throughput.bulk} per request)"
    )
    lines += _wrap(HOW["latency"], indent="  ")
    for label, samples in (
        (f"over HTTP, {throughput.events} events stored", throughput.invoice_latencies),
        (f"in-process, {FIRST_EVENTS} events stored", latency.before_seeding),
        (f"in-process, {latency.events:,} events stored", latency.seeded),
    ):
        lines.append(
            f"  proposed invoice {label:<44} p50 {_ms(percentile(samples, 50)):>9}"
            f"  p99 {_ms(percentile(samples, 99)):>9}"
        )
    lines += _wrap(
        f"(seeding {latency.events:,} events and counting them took {latency.seed_seconds:.0f} "
        "s; moto's Query sorts the whole table, DynamoDB's reads only the counters)",
        indent="  ",
    )
    lines += _cost_report(results.costs, results.estimate)
    lines += _target_report(results.targets)
    before, after = results.load_average
    lines += [
        "",
        *_wrap(
            f"Benchmark ran in {results.seconds:.0f} s; 1-minute load average {before:.1f} "
            f"before, {after:.1f} after, on {os.cpu_count()} CPUs (timed figures assume a quiet "
            "machine)."
        ),
    ]
    return lines


def _target_report(targets: list[Target]) -> list[str]:
    lines = ["", "Targets", "-" * WIDTH]
    for t in targets:
        lines.append(f"  {t.status}  {t.name:<74}{_figure(t.measured):>8} {t.unit} {t.target}")
        lines += _wrap(t.made_of, indent="        ")
    overrides = "; ".join(f"{k}={v} ({why})" for k, (v, why) in OVERRIDES.items())
    lines += ["", *_wrap(f"Configuration: template.yaml as deployed, except {overrides}.")]
    return lines


def _section(title: str, how: str) -> list[str]:
    return ["", title, "-" * WIDTH, *_wrap(HOW[how], indent="  "), ""]


def _wrap(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent)


def _figure(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.0f}"


def _units(value: float) -> str:
    return f"{value:g}"


def _operations(operations: dict[str, int]) -> str:
    return " + ".join(f"{count} {name}" for name, count in sorted(operations.items()))


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


# --- the JSON document ---------------------------------------------------------------------------


def _document(results: Results) -> dict[str, Any]:
    writes, reads, cpu, imports = results.writes, results.reads, results.cpu, results.imports
    throughput, latency, estimate = results.throughput, results.latency, results.estimate
    return {
        "run": {
            **_run_metadata(),
            "seconds": round(results.seconds, 1),
            "load_average": {"before": results.load_average[0], "after": results.load_average[1]},
        },
        "configuration_overrides": {k: {"value": v, "why": w} for k, (v, w) in OVERRIDES.items()},
        "write_costs": {
            "how": HOW["writes"],
            "cases": [
                {
                    "bulk": w.bulk,
                    "features": w.features,
                    "customers": w.customers,
                    "events": w.events,
                    "write_units_per_event": w.write_units_per_event,
                    "ingest_write_units_per_event": w.ingest.write_units / w.events,
                    "aggregator_write_units_per_event": w.aggregator.write_units / w.events,
                    "ingest_requests_per_event": w.ingest_requests_per_event,
                    "aggregator_requests_per_event": w.aggregator_requests_per_event,
                    "ingest": asdict(w.ingest),
                    "aggregator": asdict(w.aggregator),
                }
                for w in writes
            ],
        },
        "invoice_reads": {
            "how": HOW["reads"],
            "cases": [
                {
                    "features": r.features,
                    "days": r.days,
                    "events": r.events,
                    **asdict(r.usage),
                    "counting_write_units_per_event": r.counting.write_units / r.events,
                }
                for r in reads
            ],
        },
        "cpu_seconds_per_event": {
            "how": HOW["cpu"],
            **asdict(cpu),
            "ingest_over_floor": cpu.ingest / cpu.floor,
            "ingest_one_writer_over_floor": cpu.ingest_one_writer / cpu.floor,
            "aggregator_over_floor": cpu.aggregator / cpu.floor,
        },
        "import_seconds": {
            "how": HOW["imports"],
            "boto3": imports.boto3,
            "handlers": imports.handlers,
            "over_boto3": {k: v / imports.boto3 for k, v in imports.handlers.items()},
        },
        "local": {
            "throughput": {
                "how": HOW["throughput"],
                "events": throughput.events,
                "bulk": throughput.bulk,
                "accepted_per_second": throughput.accepted_per_second,
                "counted_per_second": throughput.counted_per_second,
            },
            "proposed_invoice_seconds": {
                "how": HOW["latency"],
                "http": _percentiles(throughput.invoice_latencies, throughput.events),
                "in_process_before_seeding": _percentiles(latency.before_seeding, FIRST_EVENTS),
                "in_process_seeded": _percentiles(latency.seeded, latency.events),
                "seed_seconds": latency.seed_seconds,
            },
        },
        "cost_per_million_events": {
            "how": HOW["costs"].format(
                latency=estimate.dynamodb_latency_seconds * 1000, memory=estimate.memory_mb
            ),
            "prices_usd": PRICES,
            "estimate": asdict(estimate),
            "by_bulk": [
                {**asdict(c), "lambda": c.lambda_total, "dynamodb": c.dynamodb, "total": c.total}
                for c in results.costs
            ],
        },
        "targets": [{**asdict(t), "status": t.status} for t in results.targets],
    }


def _percentiles(samples: list[float], events: int) -> dict[str, Any]:
    return {
        "events_stored": events,
        "samples": len(samples),
        "p50": percentile(samples, 50),
        "p99": percentile(samples, 99),
    }


def _run_metadata() -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "versions": {p: version(p) for p in ("boto3", "moto", "pydantic", "aws-lambda-powertools")},
    }


if __name__ == "__main__":
    sys.exit(main())
