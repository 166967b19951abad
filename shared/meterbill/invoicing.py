"""Final invoices: each subscription period invoiced exactly once, numbered without gaps.

Closing a period is a sequence of idempotent steps, so a retry after a crash at any point, or
two closes running at once, end with the same single invoice:

1. **Claim.** The invoice id is derived from (subscription, period). A conditional put stores
   the draft with its frozen lines; a second close finds it and carries on with those lines.
2. **Number.** The tenant's numbering item holds `last_number` and at most one `pending`
   invoice. Taking a number is a conditional update that needs no pending invoice; whoever
   finds one pending completes it first (writes its number, settles it, clears `pending`).
   A number is therefore never taken without reaching its invoice: no gaps, no repeats.
3. **Settle.** What the invoice billed per period is recorded (`SETTLED#<period>`), so usage
   that arrives later is billed once, on the next invoice, as its own "late usage" line.
4. **Publish** `invoice.finalized` (at least once: a retry after a crash before the advance
   publishes again), and
5. **Advance** the subscription to its next period (conditional on where it was).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from aws_lambda_powertools import Logger

from meterbill.billing import late_lines, period_lines, plan_features, settlement_of
from meterbill.catalog import get_plan, get_subscription
from meterbill.errors import Conflict, NotFound, StorageUnavailable
from meterbill.ids import derived_id
from meterbill.models import Invoice, InvoiceStatus, Subscription
from meterbill.notifications import EventPublisher
from meterbill.periods import Period, format_instant
from meterbill.storage import Store

__all__ = ["cancel_subscription", "close_due_periods", "finalize_period", "void_invoice"]

logger = Logger(service="meterbill", child=True)

# A message closes at most this many periods; a subscription further behind (after a long
# outage, or time travel) catches up over the next runs.
MAX_PERIODS_PER_CLOSE = 24
_NUMBERING_ATTEMPTS = 20


def close_due_periods(
    store: Store, publisher: EventPublisher, tenant_id: str, subscription_id: str, now: datetime
) -> list[Invoice]:
    """Invoice every period of the subscription that ended more than the grace period ago."""
    grace = timedelta(seconds=store.get_settings(tenant_id).invoice_grace_period_seconds)
    invoices = []
    for _ in range(MAX_PERIODS_PER_CLOSE):
        subscription = get_subscription(store, tenant_id, subscription_id)
        period = next_period_to_close(subscription)
        if period is None or now < period.end + grace:
            break
        invoices.append(_close(store, publisher, tenant_id, subscription, period, now, grace))
    return invoices


def finalize_period(
    store: Store,
    tenant_id: str,
    subscription: Subscription,
    period: Period,
    now: datetime,
    full_period: Period | None = None,
) -> Invoice:
    """Steps 1 to 3 for one period: the finalized invoice, whoever got there first."""
    invoice_id = derived_id("inv", tenant_id, subscription.id, format_instant(period.start))
    invoice = store.get_invoice(tenant_id, invoice_id)
    if invoice is None:
        draft = _draft(store, tenant_id, subscription, period, now, full_period, invoice_id)
        invoice = store.claim_invoice(tenant_id, draft)
    if invoice.status is InvoiceStatus.DRAFT:
        _take_number(store, tenant_id, invoice, now)
        finalized = store.get_invoice(tenant_id, invoice_id)
        assert finalized is not None
        invoice = finalized
    return invoice


def next_period_to_close(subscription: Subscription) -> Period | None:
    if subscription.next_close_start is None:
        return None
    period = _period_at(subscription, subscription.next_close_start)
    if subscription.ended_at is not None and subscription.ended_at < period.end:
        return Period(period.start, subscription.ended_at)
    return period


def cancel_subscription(
    store: Store,
    publisher: EventPublisher,
    tenant_id: str,
    subscription_id: str,
    at: str,
    now: datetime,
) -> tuple[Subscription, list[Invoice]]:
    """`period_end`: the current period is the last. `now`: usage stops now, and every period
    not invoiced yet is invoiced at once, the last one partial with flat fees prorated."""
    subscription = get_subscription(store, tenant_id, subscription_id)
    if subscription.status == "canceled" or subscription.next_close_start is None:
        raise Conflict(f"subscription {subscription_id!r} is already canceled")

    if at == "period_end":
        # The period running now is the last, even while an earlier one awaits its close.
        running = _period_at(subscription, max(now, subscription.start_date))
        updated = subscription.model_copy(
            update={"cancel_at_period_end": True, "ended_at": running.end}
        )
        period = next_period_to_close(subscription)
        assert period is not None
        grace = timedelta(seconds=store.get_settings(tenant_id).invoice_grace_period_seconds)
        if not store.replace_subscription(
            tenant_id, updated, subscription.next_close_start, _due(subscription, grace)
        ):
            raise Conflict("the subscription changed meanwhile; retry")
        return updated, []

    ended = subscription.model_copy(update={"ended_at": max(now, subscription.start_date)})
    if not store.replace_subscription(tenant_id, ended, subscription.next_close_start, None):
        raise Conflict("the subscription changed meanwhile; retry")
    grace = timedelta(0)
    invoices = []
    while (period := next_period_to_close(ended)) is not None:
        invoices.append(_close(store, publisher, tenant_id, ended, period, now, grace))
        ended = get_subscription(store, tenant_id, subscription_id)
    return ended, invoices


def void_invoice(
    store: Store, publisher: EventPublisher, tenant_id: str, invoice_id: str, now: datetime
) -> Invoice:
    invoice = store.get_invoice(tenant_id, invoice_id)
    if invoice is None or invoice.status is InvoiceStatus.DRAFT:
        raise NotFound(f"invoice {invoice_id!r} was not found")
    if invoice.status is InvoiceStatus.VOID:
        return invoice
    voided = invoice.model_copy(update={"status": InvoiceStatus.VOID, "voided_at": now})
    store.save_invoice(tenant_id, voided, listed=True)
    publisher.publish("invoice.voided", voided)
    return voided


def _close(
    store: Store,
    publisher: EventPublisher,
    tenant_id: str,
    subscription: Subscription,
    period: Period,
    now: datetime,
    grace: timedelta,
) -> Invoice:
    full = _period_at(subscription, period.start)
    invoice = finalize_period(store, tenant_id, subscription, period, now, full)

    last = subscription.ended_at is not None and subscription.ended_at <= period.end
    updates: dict[str, object]
    if last:
        updates = {"next_close_start": None, "status": "canceled"}
        if subscription.ended_at is None:
            updates["ended_at"] = period.end
    else:
        updates = {"next_close_start": period.end}
    advanced = subscription.model_copy(update=updates)
    due = None if last else _due(advanced, grace)
    # Before the advance: once the subscription has moved on, no retry comes back here.
    publisher.publish("invoice.finalized", invoice)
    if store.replace_subscription(tenant_id, advanced, period.start, due):
        logger.info(
            "period invoiced",
            extra={"tenant_id": tenant_id, "invoice_id": invoice.id, "number": invoice.number},
        )
    return invoice


def _draft(
    store: Store,
    tenant_id: str,
    subscription: Subscription,
    period: Period,
    now: datetime,
    full_period: Period | None,
    invoice_id: str,
) -> Invoice:
    plan = get_plan(store, tenant_id, subscription.plan_id)
    features = plan_features(store, tenant_id, plan)
    counters = store.period_counters(tenant_id, subscription.id, period.start)
    share = _share(period, full_period)
    lines = period_lines(plan, features, counters, period, share)
    late, late_settlements = late_lines(
        store, tenant_id, subscription, plan, features, period.start, now
    )
    total = sum((line.amount for line in lines + late), Decimal(0))
    return Invoice(
        id=invoice_id,
        status=InvoiceStatus.DRAFT,
        subscription_id=subscription.id,
        customer_id=subscription.customer_id,
        currency=plan.currency,
        period_start=period.start,
        period_end=period.end,
        line_items=lines + late,
        subtotal=total,
        total=total,
        settlements=[settlement_of(period, lines), *late_settlements],
        created_at=now,
    )


def _take_number(store: Store, tenant_id: str, invoice: Invoice, now: datetime) -> None:
    for _ in range(_NUMBERING_ATTEMPTS):
        sequence = store.invoice_sequence(tenant_id)
        last = int(sequence.get("last_number", 0))
        pending = sequence.get("pending")
        if pending == invoice.id:
            _complete(store, tenant_id, invoice.id, last, now)
            return
        if pending is not None:
            _complete(store, tenant_id, str(pending), last, now)
            continue
        if store.reserve_invoice_number(tenant_id, last, invoice.id):
            _complete(store, tenant_id, invoice.id, last + 1, now)
            return
    raise StorageUnavailable("invoice numbering is contended; the close will be retried")


def _complete(store: Store, tenant_id: str, invoice_id: str, number: int, now: datetime) -> None:
    """Give a pending invoice its number, record its settlements, and free the numbering."""
    invoice = store.get_invoice(tenant_id, invoice_id)
    assert invoice is not None, "an invoice is claimed before it takes a number"
    if invoice.status is InvoiceStatus.DRAFT:
        invoice = invoice.model_copy(
            update={
                "number": f"INV-{number:06d}",
                "status": InvoiceStatus.FINALIZED,
                "finalized_at": now,
            }
        )
        store.save_invoice(tenant_id, invoice, listed=True)
    for settlement in invoice.settlements:
        try:
            store.settle(tenant_id, invoice.subscription_id, settlement, invoice.id)
        except Conflict:
            logger.warning(
                "period already settled by another invoice", extra={"invoice_id": invoice.id}
            )
    store.release_invoice_number(tenant_id, invoice.id)


def _share(period: Period, full_period: Period | None) -> Decimal:
    if full_period is None or full_period == period:
        return Decimal(1)
    # Prorated by the second: the share of the period's seconds the partial period lasted.
    part = Decimal((period.end - period.start) // timedelta(seconds=1))
    whole = Decimal((full_period.end - full_period.start) // timedelta(seconds=1))
    return part / whole


def _period_at(subscription: Subscription, instant: datetime) -> Period:
    period = subscription.period_at(instant)
    assert period is not None
    return period


def _due(subscription: Subscription, grace: timedelta) -> datetime | None:
    period = next_period_to_close(subscription)
    return None if period is None else period.end + grace
