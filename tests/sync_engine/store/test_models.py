"""The schema keeps money exact and enforces the uniqueness the sync relies on, on both backends."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from sync_engine.store.models import Binding, DeadLetter, Invoice, InvoiceLine, OutboxItem, SyncRun

BIG = Decimal("12345678901234.123456")


def _invoice(invoice_id: str = "inv-1", **overrides: object) -> Invoice:
    values: dict[str, object] = {
        "id": invoice_id,
        "customer_id": "cus-1",
        "series": "INV",
        "currency": "EUR",
        "issue_date": dt.date(2024, 5, 1),
        "due_date": dt.date(2024, 5, 31),
        "subtotal": BIG,
        "tax_total": Decimal("0.000001"),
        "total": Decimal("-19.99"),
    }
    values.update(overrides)
    return Invoice(**values)


def _binding(**overrides: str) -> Binding:
    values = {"system": "salesforce", "entity": "customer", "external_id": "001A", "canonical_id": "cus-1"}
    values.update(overrides)
    return Binding(**values)


def test_money_round_trips_exactly(session: Session) -> None:
    invoice = _invoice()
    invoice.lines.append(
        InvoiceLine(
            position=1,
            source_key="order-line:1",
            description="Widgets",
            quantity=Decimal("3"),
            unit_price=Decimal("0.333333"),
            amount=Decimal("0.999999"),
        )
    )
    session.add(invoice)
    session.commit()
    session.expire_all()

    stored = session.get(Invoice, "inv-1")

    assert stored is not None
    assert (stored.subtotal, stored.tax_total, stored.total) == (BIG, Decimal("0.000001"), Decimal("-19.99"))
    assert all(isinstance(v, Decimal) for v in (stored.subtotal, stored.tax_total, stored.total))
    assert str(stored.subtotal) == "12345678901234.123456"
    line = stored.lines[0]
    assert (line.quantity, line.unit_price, line.amount, line.tax_amount) == (
        Decimal("3"),
        Decimal("0.333333"),
        Decimal("0.999999"),
        Decimal("0"),
    )


def test_float_money_is_refused(session: Session) -> None:
    session.add(_invoice(total=19.99))
    with pytest.raises(StatementError, match="never float"):
        session.flush()


@pytest.mark.parametrize("amount", [Decimal("0.0000001"), Decimal("123456789012345"), Decimal("NaN")])
def test_money_that_would_be_rounded_is_refused(session: Session, amount: Decimal) -> None:
    session.add(_invoice(total=amount))
    with pytest.raises(StatementError, match="does not fit|not a storable"):
        session.flush()


def test_an_external_record_binds_to_one_canonical_record(session: Session) -> None:
    session.add(_binding(canonical_id="cus-1"))
    session.commit()

    session.add(_binding(canonical_id="cus-2"))  # same (system, entity, external_id)
    with pytest.raises(IntegrityError):
        session.commit()


def test_a_canonical_record_has_one_binding_per_system_and_entity(session: Session) -> None:
    session.add(_binding(external_id="001A"))
    session.commit()

    session.add(_binding(external_id="001B"))  # same (system, entity, canonical_id)
    with pytest.raises(IntegrityError):
        session.commit()


def test_the_same_record_may_be_bound_in_several_systems(session: Session) -> None:
    session.add_all([_binding(), _binding(system="quickbooks", external_id="42")])
    session.commit()

    systems = session.scalars(select(Binding.system).where(Binding.canonical_id == "cus-1")).all()
    assert sorted(systems) == ["quickbooks", "salesforce"]


def test_a_dead_letter_keeps_its_payload_and_run(session: Session) -> None:
    run = SyncRun(kind="pull", stream="salesforce.Account")
    session.add(run)
    session.flush()
    payload = {"Id": "001A", "AnnualRevenue": Decimal("1234.56"), "Tags": ["a", None], "Nested": {"k": 1}}
    session.add(
        DeadLetter(
            stream="salesforce.Account",
            system="salesforce",
            entity="customer",
            external_id="001A",
            payload=payload,
            error="BillingCountry 'Narnia' is not an ISO 3166 code",
            error_type="RecordError",
            run_id=run.id,
        )
    )
    session.commit()
    session.expire_all()

    letter = session.scalars(select(DeadLetter)).one()

    # Decimal is stored as a string, never a float; everything else comes back as written
    assert letter.payload == {
        "Id": "001A",
        "AnnualRevenue": "1234.56",
        "Tags": ["a", None],
        "Nested": {"k": 1},
    }
    assert (letter.status, letter.attempts, letter.run_id) == ("open", 1, run.id)
    assert letter.created_at.tzinfo is not None


def test_json_numbers_with_a_fraction_are_read_as_decimal(session: Session) -> None:
    session.add(
        DeadLetter(
            stream="s",
            system="quickbooks",
            entity="invoice",
            payload={"TotalAmt": 0.1},
            error="e",
            error_type="RecordError",
        )
    )
    session.commit()
    session.expire_all()

    assert session.scalars(select(DeadLetter.payload)).one() == {"TotalAmt": Decimal("0.1")}


def test_a_dead_letter_cannot_point_to_a_missing_run(session: Session) -> None:
    session.add(
        DeadLetter(
            stream="s", system="x", entity="y", payload={}, error="e", error_type="RecordError", run_id=999
        )
    )
    with pytest.raises(IntegrityError):
        session.commit()


def _outbox(key: str) -> OutboxItem:
    return OutboxItem(destination="quickbooks", entity="invoice", canonical_id="inv-1", idempotency_key=key)


def test_outbox_rows_start_pending_and_a_change_is_queued_once(session: Session) -> None:
    session.add(_outbox("quickbooks:invoice:inv-1:upsert:1"))
    session.commit()

    item = session.scalars(select(OutboxItem)).one()
    assert (item.status, item.action, item.attempts, item.done_at) == ("pending", "upsert", 0, None)

    session.add(_outbox("quickbooks:invoice:inv-1:upsert:1"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_a_source_line_is_billed_at_most_once(session: Session) -> None:
    line = {
        "position": 1,
        "source_key": "sub-1:2024-05",
        "description": "Plan",
        "quantity": Decimal(1),
        "unit_price": Decimal(10),
        "amount": Decimal(10),
    }
    session.add(_invoice("inv-1", lines=[InvoiceLine(**line)]))
    session.commit()

    session.add(_invoice("inv-2", lines=[InvoiceLine(**line)]))
    with pytest.raises(IntegrityError):
        session.commit()


def test_invoice_numbers_are_unique_per_series(session: Session) -> None:
    session.add_all([_invoice("inv-1", number="1"), _invoice("inv-2", number="1", series="CN")])
    session.commit()

    session.add(_invoice("inv-3", number="1"))
    with pytest.raises(IntegrityError):
        session.commit()
