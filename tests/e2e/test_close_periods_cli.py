"""`meterbill close-periods` against a running `meterbill serve`, found through its discovery
file: time travel to after a period's end invoices that period."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

from meterbill.periods import format_instant, parse_instant
from tests.e2e.conftest import PROJECT_ROOT, LocalServer


def test_close_periods_at_a_future_instant_invoices_the_ended_period(server: LocalServer) -> None:
    client = server.client()
    tag = uuid.uuid4().hex[:10]
    plan = client.post(
        "/v1/plans",
        {
            "name": "Daily seat",
            "lookup_key": f"daily-seat-{tag}",
            "currency": "USD",
            "billing_period": "DAILY",
            "prices": [{"billing_model": "FLAT_FEE", "amount": "10.00"}],
        },
    )
    assert plan.status == 201, plan.body
    customer = client.post("/v1/customers", {"external_id": f"close-{tag}", "name": "Close"})
    assert customer.status == 201, customer.body
    subscription = client.post(
        "/v1/subscriptions", {"customer_id": customer.body["id"], "plan_id": plan.body["id"]}
    )
    assert subscription.status == 201, subscription.body
    start = parse_instant(subscription.body["start_date"])
    # The first period ends in a day; its invoice waits one more hour for late events.
    after_grace = start + timedelta(days=1, hours=1, minutes=5)

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "meterbill.cli",
            "close-periods",
            "--now",
            format_instant(after_grace),
        ],
        cwd=PROJECT_ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "failed (will be retried): 0" in result.stdout
    listed = client.get(f"/v1/invoices?subscription_id={subscription.body['id']}")
    assert listed.status == 200, listed.body
    [invoice] = listed.body["items"]
    assert invoice["status"] == "finalized"
    assert invoice["number"].startswith("INV-")
    assert parse_instant(invoice["period_start"]) == start
    assert parse_instant(invoice["period_end"]) == start + timedelta(days=1)
    assert invoice["total"] == "10.00"
