"""Prometheus metrics at ``/metrics``, read from the state store at scrape time.

Why from the store and not from in-process counters: runs happen in the daemon, the CLI and (later)
workers on other machines; the store is the one place that sees them all, and a restart of the web
process loses nothing. Each scrape is a handful of ``GROUP BY`` queries.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from sync_engine.runtime import Runtime
from sync_engine.store.models import CanonicalRecord, DeadLetter, Invoice, OutboxItem, Payment, SyncRun
from sync_engine.web.data import api_calls_today

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StoreCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        with self.runtime.sessions() as session:
            runs = CounterMetricFamily(
                "billsync_runs",
                "Runs recorded, by kind, stream and outcome",
                labels=["kind", "stream", "status"],
            )
            failures = CounterMetricFamily(
                "billsync_run_failures", "Runs that failed or ended partial, by stream", labels=["stream"]
            )
            for kind, stream, status, n in session.execute(
                select(SyncRun.kind, SyncRun.stream, SyncRun.status, func.count()).group_by(
                    SyncRun.kind, SyncRun.stream, SyncRun.status
                )
            ):
                runs.add_metric([kind, stream, status], n)
                if status in ("failed", "partial", "stopped"):
                    failures.add_metric([stream], n)
            yield runs
            yield failures

            last = GaugeMetricFamily(
                "billsync_last_run_timestamp_seconds",
                "Start of the newest run of each stream",
                labels=["stream"],
            )
            for stream, started in session.execute(
                select(SyncRun.stream, func.max(SyncRun.started_at)).group_by(SyncRun.stream)
            ):
                if started is not None:
                    last.add_metric([stream], started.timestamp())
            yield last

            records = GaugeMetricFamily(
                "billsync_records", "Canonical records held, by entity", labels=["entity"]
            )
            for entity, n in session.execute(
                select(CanonicalRecord.entity, func.count()).group_by(CanonicalRecord.entity)
            ):
                records.add_metric([entity], n)
            yield records

            outbox = GaugeMetricFamily(
                "billsync_outbox_items",
                "Outbox rows by destination and state (pending+unknown+failed = depth)",
                labels=["destination", "status"],
            )
            for destination, status, n in session.execute(
                select(OutboxItem.destination, OutboxItem.status, func.count()).group_by(
                    OutboxItem.destination, OutboxItem.status
                )
            ):
                outbox.add_metric([destination, status], n)
            yield outbox

            letters = GaugeMetricFamily(
                "billsync_dead_letters", "Dead letters by stream and state", labels=["stream", "status"]
            )
            for stream, status, n in session.execute(
                select(DeadLetter.stream, DeadLetter.status, func.count()).group_by(
                    DeadLetter.stream, DeadLetter.status
                )
            ):
                letters.add_metric([stream, status], n)
            yield letters

            invoices = GaugeMetricFamily(
                "billsync_invoices", "Invoices by status and currency", labels=["status", "currency"]
            )
            invoiced = GaugeMetricFamily(
                "billsync_invoiced_amount",
                "Total of finalised, not void invoices (major units)",
                labels=["currency"],
            )
            for status, currency, n, total in session.execute(
                select(Invoice.status, Invoice.currency, func.count(), func.sum(Invoice.total)).group_by(
                    Invoice.status, Invoice.currency
                )
            ):
                invoices.add_metric([status, currency], n)
                if status not in ("draft", "void") and total is not None:
                    invoiced.add_metric([currency], float(total))
            yield invoices
            yield invoiced

            payments = GaugeMetricFamily(
                "billsync_payments", "Payments recorded, by source and method", labels=["source", "method"]
            )
            received = GaugeMetricFamily(
                "billsync_payments_amount", "Money received (major units)", labels=["currency"]
            )
            for source, method, n in session.execute(
                select(Payment.source, Payment.method, func.count()).group_by(Payment.source, Payment.method)
            ):
                payments.add_metric([source, method], n)
            for currency, total in session.execute(
                select(Payment.currency, func.sum(Payment.amount)).group_by(Payment.currency)
            ):
                if total is not None:
                    received.add_metric([currency], float(total))
            yield payments
            yield received

        calls = GaugeMetricFamily(
            "billsync_api_calls_today",
            "Vendor API calls made by today's runs (UTC): the daily budget used",
            labels=["system"],
        )
        for system, n in api_calls_today(self.runtime).items():
            calls.add_metric([system], n)
        yield calls


def render(runtime: Runtime) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(runtime))
    return generate_latest(registry)
