"""Dollars per million events, from the counted figures and on-demand list prices.

Requests and DynamoDB units are the benchmark's counts. Lambda duration cannot be counted
locally, so it is estimated, and every input of the estimate is named in `Estimate`:

    duration = round trips x latency + CPU seconds x (1,769 MB / memory)

Round trips are the DynamoDB calls on a request's critical path (ingest writes its events
`concurrency` at a time, the aggregator one call after another); CPU seconds are the handler's
(storage stubbed) plus botocore's per call, both measured in this run on this machine; Lambda
gives a function one vCPU per 1,769 MB. The sum ignores any overlap of waiting and computing,
so it errs high.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tests.bench.counts import WriteCost
from tests.bench.cpu import CpuTimes

__all__ = ["PRICES", "CostPerMillion", "Estimate", "cost_per_million"]

# us-east-1 on-demand list prices as of 2026-12-03. DynamoDB's are the November 2024 ones
# (on-demand throughput halved). DynamoDB Streams reads by a Lambda event source are free.
PRICES = {
    "api_gateway_http_per_million_requests": 1.00,
    "lambda_arm64_per_gb_second": 0.0000133334,
    "lambda_per_million_requests": 0.20,
    "dynamodb_per_million_write_units": 0.625,
    "dynamodb_per_million_read_units": 0.125,
}
_MB_PER_VCPU = 1769


@dataclass(frozen=True)
class Estimate:
    """The assumptions behind the Lambda duration estimate."""

    dynamodb_latency_seconds: float = 0.005
    memory_mb: int = 512
    write_concurrency: int = 16


@dataclass(frozen=True)
class CostPerMillion:
    bulk: int
    api_gateway: float
    lambda_requests: float
    lambda_duration: float
    dynamodb_writes: float
    dynamodb_reads: float
    ingest_seconds: float  # estimated duration of one ingest invocation
    aggregator_seconds: float  # estimated duration of one aggregator invocation

    @property
    def lambda_total(self) -> float:
        return self.lambda_requests + self.lambda_duration

    @property
    def dynamodb(self) -> float:
        return self.dynamodb_writes + self.dynamodb_reads

    @property
    def total(self) -> float:
        return self.api_gateway + self.lambda_total + self.dynamodb


def cost_per_million(cost: WriteCost, cpu: CpuTimes, estimate: Estimate) -> CostPerMillion:
    """What a million events cost sent in bulks of `cost.bulk`, the aggregator invoked once
    per request (as measured)."""
    requests = cost.events / cost.bulk
    invocations_per_million = 1e6 / cost.bulk
    cpu_scale = _MB_PER_VCPU / estimate.memory_mb

    ingest_calls = cost.ingest.requests / requests
    puts = cost.ingest.operations.get("PutItem", 0) / requests
    round_trips = (ingest_calls - puts) + math.ceil(puts / estimate.write_concurrency)
    ingest_cpu = cost.bulk * cpu.ingest + ingest_calls * cpu.client_put
    ingest_seconds = round_trips * estimate.dynamodb_latency_seconds + ingest_cpu * cpu_scale

    aggregator_calls = cost.aggregator.requests / requests
    aggregator_cpu = cost.bulk * cpu.aggregator + aggregator_calls * cpu.client_put
    aggregator_seconds = (
        aggregator_calls * estimate.dynamodb_latency_seconds + aggregator_cpu * cpu_scale
    )

    gb_seconds = (
        invocations_per_million * (ingest_seconds + aggregator_seconds) * estimate.memory_mb / 1024
    )
    per_event = 1e6 / cost.events
    return CostPerMillion(
        bulk=cost.bulk,
        api_gateway=invocations_per_million / 1e6 * PRICES["api_gateway_http_per_million_requests"],
        lambda_requests=2 * invocations_per_million / 1e6 * PRICES["lambda_per_million_requests"],
        lambda_duration=gb_seconds * PRICES["lambda_arm64_per_gb_second"],
        dynamodb_writes=(cost.ingest.write_units + cost.aggregator.write_units)
        * per_event
        / 1e6
        * PRICES["dynamodb_per_million_write_units"],
        dynamodb_reads=(cost.ingest.read_units + cost.aggregator.read_units)
        * per_event
        / 1e6
        * PRICES["dynamodb_per_million_read_units"],
        ingest_seconds=ingest_seconds,
        aggregator_seconds=aggregator_seconds,
    )
