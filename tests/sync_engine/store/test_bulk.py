"""Bulk inserts (COPY on PostgreSQL, executemany on SQLite) store what the ORM would have stored,
refuse what it would have refused, and are all or nothing with the caller's transaction."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sync_engine.bindings import canonical_json, payload_hash, text_hash
from sync_engine.store.bulk import JSONText, insert_rows
from sync_engine.store.models import CanonicalRecord, Invoice, InvoiceLine, OutboxItem


def _invoice(invoice_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "customer_id": "cus-1",
        "series": "INV",
        "number": f"INV-{invoice_id}",
        "currency": "EUR",
        "issue_date": dt.date(2026, 12, 1),
        "due_date": dt.date(2026, 12, 31),
        "subtotal": Decimal("12345678901234.123456"),
        "tax_total": Decimal("0.000001"),
        "total": Decimal("-19.99"),
        **extra,
    }


def _line(source_key: str, **extra: Any) -> dict[str, Any]:
    return {
        "invoice_id": "1",
        "position": 1,
        "source_key": source_key,
        "description": "Plan",
        "quantity": Decimal("1"),
        "unit_price": Decimal("10"),
        "amount": Decimal("10"),
        **extra,
    }


def test_rows_read_back_as_the_orm_wrote_them_with_python_defaults_filled(
    session_factory: sessionmaker[Session],
) -> None:
    before = dt.datetime.now(dt.UTC)
    with session_factory.begin() as session:
        insert_rows(session, Invoice, [_invoice("1"), _invoice("2", delivery_status="pending")])
        insert_rows(
            session,
            InvoiceLine,
            [
                _line(
                    "sub:1",
                    description="Plan — Müller GmbH",
                    quantity=Decimal("3"),
                    unit_price=Decimal("0.333333"),
                    amount=Decimal("0.999999"),
                    tax_inclusive=True,
                    explanation={"kind": "recurring", "details": [["billed", "in advance"]]},
                )
            ],
        )
        insert_rows(
            session,
            CanonicalRecord,
            [{"id": "cus_1", "entity": "customer", "data": {"name": "Ä\tB\nC\\"}, "payload_hash": "h"}],
        )
    with session_factory() as session:
        first, second = session.scalars(select(Invoice).order_by(Invoice.id)).all()
        line = session.scalars(select(InvoiceLine)).one()
        record = session.get(CanonicalRecord, "cus_1")
    assert (first.subtotal, first.tax_total, first.total) == (
        Decimal("12345678901234.123456"),
        Decimal("0.000001"),
        Decimal("-19.99"),
    )
    assert (first.status, first.dunning_level, first.amount_paid, first.delivery_status) == (
        "draft",
        "none",
        Decimal("0"),
        None,
    )
    assert second.delivery_status == "pending"
    assert first.created_at.tzinfo is not None and first.created_at >= before - dt.timedelta(seconds=1)
    assert line.id is not None and line.invoice_id == "1" and line.tax_amount == Decimal("0")
    assert line.description == "Plan — Müller GmbH" and line.tax_inclusive is True
    assert line.explanation == {"kind": "recurring", "details": [["billed", "in advance"]]}
    assert record is not None and record.data == {"name": "Ä\tB\nC\\"}


def test_dates_and_money_are_stored_as_the_orm_stores_them(session_factory: sessionmaker[Session]) -> None:
    """Byte for byte: the bulk path's own conversions (a date's ISO text, money's check) must not
    store another spelling, or equality lookups and ordering on those columns would differ."""
    early = {"issue_date": dt.date(987, 6, 5), "subtotal": Decimal("1.5"), "total": Decimal("-0.000001")}
    with session_factory.begin() as session:
        session.add(Invoice(**_invoice("orm", **early)))
        session.flush()
        insert_rows(session, Invoice, [_invoice("bulk", **early)])
    with session_factory() as session:
        orm, bulk = session.execute(
            select(
                func.cast(Invoice.issue_date, Invoice.series.type),
                func.cast(Invoice.due_date, Invoice.series.type),
                func.cast(Invoice.subtotal, Invoice.series.type),
                func.cast(Invoice.total, Invoice.series.type),
            ).order_by(Invoice.id.desc())
        ).all()
    assert tuple(orm) == tuple(bulk)
    assert orm[0] == "0987-06-05"


@pytest.mark.parametrize(
    ("amount", "error", "message"),
    [
        (Decimal("0.0000001"), ValueError, "refusing to round"),
        (Decimal("-123456789012345"), ValueError, "refusing to round"),
        (Decimal("NaN"), ValueError, "refusing to round"),
        ("1E+40", ValueError, "not a storable decimal amount"),
        (19.99, TypeError, "never float"),
    ],
)
def test_money_that_would_be_rounded_is_refused_and_nothing_is_stored(
    session_factory: sessionmaker[Session], amount: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        with session_factory.begin() as session:
            insert_rows(session, Invoice, [_invoice("1"), _invoice("2", total=amount)])
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Invoice)) == 0


def test_a_duplicate_key_fails_the_batch_and_the_transaction(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        insert_rows(
            session,
            OutboxItem,
            [{"destination": "qbo", "entity": "invoice", "canonical_id": "inv-1", "idempotency_key": "k1"}],
        )
    with pytest.raises(IntegrityError):
        with session_factory.begin() as session:
            insert_rows(
                session,
                OutboxItem,
                [
                    {
                        "destination": "qbo",
                        "entity": "invoice",
                        "canonical_id": "inv-2",
                        "idempotency_key": "k2",
                    },
                    {
                        "destination": "qbo",
                        "entity": "invoice",
                        "canonical_id": "inv-1",
                        "idempotency_key": "k1",
                    },
                ],
            )
    with session_factory() as session:
        rows = session.scalars(select(OutboxItem)).all()
    assert [(r.idempotency_key, r.status, r.attempts) for r in rows] == [("k1", "pending", 0)]


def test_rows_may_refer_to_pending_orm_objects(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        session.add(Invoice(**_invoice("1")))  # not flushed yet: insert_rows flushes first
        insert_rows(session, InvoiceLine, [_line("sub:1")])
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(InvoiceLine)) == 1


def test_mistakes_in_the_rows_are_named(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        with pytest.raises(ValueError, match="invoices has no column colour"):
            insert_rows(session, Invoice, [_invoice("1", colour="red")])
        # one statement names a column or not: a server default cannot fill only some rows
        table = Table(
            "t", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer, server_default="0")
        )
        with pytest.raises(ValueError, match=r"t\.n: name it in every row or in none"):
            insert_rows(session, table, [{"id": 1, "n": 5}, {"id": 2}])
        assert insert_rows(session, Invoice, []) == 0


def test_json_serialised_by_the_caller_is_stored_as_it_is(session_factory: sessionmaker[Session]) -> None:
    data = {"name": "Müller GmbH", "currency": "EUR", "billing_address": {"city": "Köln"}}
    text = canonical_json(data)
    with session_factory.begin() as session:
        insert_rows(
            session,
            CanonicalRecord,
            [{"id": "cus_1", "entity": "customer", "data": JSONText(text), "payload_hash": text_hash(text)}],
        )
    with session_factory() as session:
        record = session.get(CanonicalRecord, "cus_1")
    assert record is not None and record.data == data and record.payload_hash == payload_hash(data)
