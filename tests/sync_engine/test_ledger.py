"""The Beancount export: a real book (tax, discounts, partial payments, credit, refunds, a void
invoice) passes the real ``bean-check`` with zero tolerance, balances match the store, and one cent
off makes ``bean-check`` fail.

Runs on SQLite and (with BILLSYNC_TEST_DATABASE_URL) PostgreSQL; payments are recorded through
``sync_engine.payments`` so allocations, credit and refunds are what production would store.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from beancount import loader
from beancount.core.data import Transaction
from sqlalchemy.orm import Session

from sync_engine.ledger import LedgerError, export_beancount, write_ledger
from sync_engine.payments import Receipt, apply_credit, record_payment, record_refund
from sync_engine.settings import LedgerSettings, Settings
from sync_engine.store.models import Invoice, InvoiceLine, InvoiceTaxLine, Payment
from tests.sync_engine.books import customer_row, invoice_row

D = Decimal


def bean_check_binary() -> str:
    found = shutil.which("bean-check") or str(Path(sys.executable).parent / "bean-check")
    assert Path(found).exists(), "bean-check (from the beancount package) is not installed"
    return found


def bean_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bean_check_binary(), str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def make_settings(**ledger: str) -> Settings:
    return Settings(connections={}, streams=[], destinations=[], ledger=LedgerSettings(**ledger))


def add_customer(session: Session, customer_id: str, name: str, currency: str = "EUR") -> None:
    session.add(customer_row(customer_id, name=name, currency=currency))


def add_invoice(
    session: Session,
    number: str,
    customer_id: str,
    issued: dt.date,
    lines: list[tuple[str, str, str | None, bool]],
    *,
    currency: str = "EUR",
    status: str = "open",
) -> Invoice:
    """``lines``: (amount, discount, tax rate in percent or None, inclusive); totals as billing makes them."""
    # the totals are summed from the lines below
    invoice = invoice_row(
        number,
        "0",
        customer_id=customer_id,
        currency=currency,
        status=status,
        issue=issued,
        due=issued + dt.timedelta(days=30),
        discount_total=D("0"),
    )
    taxes: dict[tuple[str, bool], list[Decimal]] = {}
    subtotal = discount_total = D("0")
    for position, (amount, discount, rate, inclusive) in enumerate(lines):
        gross = D(amount) - D(discount)
        tax = D("0")
        if rate is not None:
            r = D(rate) / 100
            tax = (gross - gross / (1 + r) if inclusive else gross * r).quantize(D("0.01"))
            taxable = gross - tax if inclusive else gross
            entry = taxes.setdefault((rate, inclusive), [D("0"), D("0")])
            entry[0] += taxable
            entry[1] += tax
        invoice.lines.append(
            InvoiceLine(
                position=position,
                source_key=f"{number}:{position}",
                description=f"line {position}",
                quantity=D("1"),
                unit_price=D(amount),
                amount=D(amount),
                discount_amount=D(discount),
                tax_amount=tax,
                tax_id=None if rate is None else f"VAT{rate}",
                tax_rate=None if rate is None else D(rate),
                tax_inclusive=inclusive,
            )
        )
        subtotal += D(amount)
        discount_total += D(discount)
    exclusive = D("0")
    for position, ((rate, inclusive), (taxable, tax)) in enumerate(sorted(taxes.items())):
        invoice.tax_lines.append(
            InvoiceTaxLine(
                position=position,
                tax_id=f"VAT{rate}",
                name=f"VAT {rate}%",
                rate=D(rate),
                inclusive=inclusive,
                taxable=taxable,
                amount=tax,
            )
        )
        exclusive += D("0") if inclusive else tax
    invoice.subtotal = subtotal
    invoice.discount_total = discount_total
    invoice.tax_total = sum((tax for _, tax in taxes.values()), D("0"))
    invoice.total = subtotal - discount_total + exclusive
    session.add(invoice)
    session.flush()
    return invoice


def pay(
    session: Session, settings: Settings, ref: str, customer: str, amount: str, day: dt.date, **kw: object
) -> str:
    fields: dict[str, object] = {
        "source": "bank",
        "source_ref": ref,
        "customer_id": customer,
        "amount": D(amount),
        "currency": "EUR",
        "received_on": day,
        "method": "bank_transfer",
    }
    fields.update(kw)
    return record_payment(session, settings, Receipt(**fields), as_of=day).payment_id  # type: ignore[arg-type]


def build_book(session: Session, settings: Settings) -> dict[str, str]:
    """A quarter of business; returns the payment ids by name."""
    add_customer(session, "cus_a", 'Acme "Quotes" GmbH')
    add_customer(session, "cus_b", "Bolt Inc", "USD")
    add_customer(session, "cus_c", "Corner Café")
    # 150.00 with 10.00 off, 19 % added: 140.00 + 26.60 = 166.60
    add_invoice(
        session,
        "INV-000001",
        "cus_a",
        dt.date(2026, 1, 10),
        [("100.00", "10.00", "19", False), ("50.00", "0", "19", False)],
    )
    # 119.00 with 19 % included (19.00) and 10.00 with 7 % added (0.70): 129.70
    add_invoice(
        session,
        "INV-000002",
        "cus_a",
        dt.date(2026, 1, 15),
        [("119.00", "0", "19", True), ("10.00", "0", "7", False)],
    )
    add_invoice(
        session, "INV-000003", "cus_a", dt.date(2026, 1, 16), [("50.00", "0", None, False)], status="void"
    )
    add_invoice(
        session, "INV-000004", "cus_b", dt.date(2026, 1, 20), [("1000.00", "0", None, False)], currency="USD"
    )
    add_invoice(
        session, "DRAFT", "cus_a", dt.date(2026, 1, 21), [("999.00", "0", None, False)], status="draft"
    )

    ids = {
        "partial": pay(session, settings, "stmt-1", "cus_a", "100.00", dt.date(2026, 1, 20)),
        # pays the rest of INV-000001 (66.60) and INV-000002 (129.70); 103.70 stays as credit
        "over": pay(session, settings, "stmt-2", "cus_a", "300.00", dt.date(2026, 2, 1)),
        "card": pay(
            session,
            settings,
            "pi_1",
            "cus_b",
            "400.00",
            dt.date(2026, 2, 2),
            source="stripe",
            method="card",
            currency="USD",
        ),
        "cash": pay(
            session, settings, "till-1", "cus_c", "5.00", dt.date(2026, 2, 3), source="manual", method="cash"
        ),
    }
    # the next invoice takes 80.00 of the credit when it is finalised
    add_invoice(session, "INV-000005", "cus_a", dt.date(2026, 3, 1), [("80.00", "0", None, False)])
    apply_credit(session, settings, ["cus_a"], as_of=dt.date(2026, 3, 1))
    # 20.00 of the remaining 23.70 credit goes back; 50.00 of the card payment too (reopens INV-000004)
    record_refund(
        session,
        settings,
        payment_id=ids["over"],
        source="bank",
        source_ref="rf-1",
        amount=D("20.00"),
        refunded_on=dt.date(2026, 3, 10),
        reason="asked back",
        as_of=dt.date(2026, 3, 10),
    )
    record_refund(
        session,
        settings,
        payment_id=ids["card"],
        source="stripe",
        source_ref="re_1",
        amount=D("50.00"),
        refunded_on=dt.date(2026, 3, 12),
        as_of=dt.date(2026, 3, 12),
    )
    session.flush()
    return ids


@dataclass(frozen=True)
class Txn:
    """A transaction as beancount parsed it, with the optional fields made plain."""

    date: dt.date
    payee: str
    narration: str
    tags: frozenset[str]
    links: frozenset[str]
    meta: dict[str, Any]
    postings: list[tuple[str, Decimal]]
    currencies: set[str]


def parse(text: str) -> list[Txn]:
    entries, errors, _ = loader.load_string(text)
    assert errors == []
    found = []
    for entry in entries:
        if isinstance(entry, Transaction):
            units = [p.units for p in entry.postings]
            assert all(u is not None and u.number is not None for u in units)
            found.append(
                Txn(
                    date=entry.date,
                    payee=entry.payee or "",
                    narration=entry.narration or "",
                    tags=frozenset(entry.tags or ()),
                    links=frozenset(entry.links or ()),
                    meta=dict(entry.meta or {}),
                    postings=[(p.account, p.units.number) for p in entry.postings],  # type: ignore[union-attr,misc]
                    currencies={p.units.currency for p in entry.postings},  # type: ignore[union-attr]
                )
            )
    return found


def balances(text: str) -> dict[tuple[str, str], Decimal]:
    totals: dict[tuple[str, str], Decimal] = {}
    for txn in parse(text):
        [currency] = txn.currencies
        for account, number in txn.postings:
            totals[(account, currency)] = totals.get((account, currency), D("0")) + number
    return {key: value for key, value in totals.items() if value != 0}


def transactions(text: str, link: str) -> list[Txn]:
    return [txn for txn in parse(text) if link in txn.links]


@pytest.fixture
def settings() -> Settings:
    return make_settings()


def test_a_real_book_passes_bean_check_and_its_balances_are_the_stores(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    build_book(session, settings)
    out = tmp_path / "books" / "billsync.beancount"
    text = write_ledger(session, settings, out)

    result = bean_check(out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_text(encoding="utf-8") == text
    assert 'option "tolerance_multiplier" "0"' in text
    assert 'option "operating_currency" "EUR"' in text and 'option "operating_currency" "USD"' in text
    assert "2000-01-01 open Liabilities:CustomerCredit" in text
    assert "DRAFT" not in text

    # what the customers owe: INV-000004 600.00 + 50.00 refunded = 650.00 USD; INV-000005 is paid
    # by credit; the void invoice and the paid ones owe nothing
    assert balances(text) == {
        ("Assets:Receivable", "USD"): D("650.00"),
        ("Assets:Bank", "EUR"): D("380.00"),  # 100 + 300 - 20 refunded
        ("Assets:Stripe", "USD"): D("350.00"),
        ("Assets:UndepositedFunds", "EUR"): D("5.00"),
        ("Liabilities:CustomerCredit", "EUR"): D("-8.70"),  # 3.70 left of cus_a's, 5.00 of cus_c's
        ("Income:Sales", "EUR"): D("-340.00"),  # 150 + 100 (net of the included 19.00) + 10 + 80
        ("Income:Sales", "USD"): D("-1000.00"),
        ("Income:Discounts", "EUR"): D("10.00"),  # net revenue 330.00
        ("Liabilities:SalesTax", "EUR"): D("-46.30"),  # 26.60 + 19.00 + 0.70
    }
    unapplied = sum((p.unapplied for p in session.query(Payment)), D("0"))
    assert unapplied == D("8.70")


def test_invoices_book_revenue_discounts_and_each_tax_line_and_a_void_one_is_reversed(
    session: Session, settings: Settings
) -> None:
    build_book(session, settings)
    text = export_beancount(session, settings)

    [first] = transactions(text, "INV-000001")[:1]
    assert first.postings == [
        ("Assets:Receivable", D("166.60")),
        ("Income:Sales", D("-150.00")),
        ("Income:Discounts", D("10.00")),
        ("Liabilities:SalesTax", D("-26.60")),
    ]
    assert first.meta["customer"] == "cus_a" and first.meta["invoice"] == "INV-000001"
    assert first.payee == 'Acme "Quotes" GmbH'

    mixed = transactions(text, "INV-000002")[0]
    assert sorted(mixed.postings) == [
        ("Assets:Receivable", D("129.70")),
        ("Income:Sales", D("-110.00")),
        ("Liabilities:SalesTax", D("-19.00")),
        ("Liabilities:SalesTax", D("-0.70")),
    ]

    voided = transactions(text, "INV-000003")
    assert [t.narration for t in voided] == ["Invoice INV-000003", "Invoice INV-000003 voided"]
    assert "void" in voided[1].tags
    assert sum(n for t in voided for a, n in t.postings if a == "Assets:Receivable") == 0


def test_payments_credit_applied_later_and_refunds_move_the_right_accounts(
    session: Session, settings: Settings
) -> None:
    ids = build_book(session, settings)
    text = export_beancount(session, settings)
    numbers = {name: session.get(Payment, pid).number for name, pid in ids.items()}  # type: ignore[union-attr]

    over = [t for t in transactions(text, numbers["over"]) if t.narration.startswith("Payment")]
    assert over[0].postings == [
        ("Assets:Bank", D("300.00")),
        ("Assets:Receivable", D("-66.60")),
        ("Assets:Receivable", D("-129.70")),
        ("Liabilities:CustomerCredit", D("-103.70")),
    ]
    assert over[0].date == dt.date(2026, 2, 1)

    [applied] = [t for t in transactions(text, "INV-000005") if t.narration.startswith("Credit")]
    assert applied.date == dt.date(2026, 3, 1)  # when the invoice existed, not when the money came
    assert applied.postings == [
        ("Liabilities:CustomerCredit", D("80.00")),
        ("Assets:Receivable", D("-80.00")),
    ]

    card = transactions(text, numbers["card"])
    assert card[0].postings[0][0] == "Assets:Stripe"
    [refund] = [t for t in card if t.narration.startswith("Refund")]
    assert (refund.date, refund.postings) == (
        dt.date(2026, 3, 12),
        [("Liabilities:CustomerCredit", D("50.00")), ("Assets:Stripe", D("-50.00"))],
    )
    cash = transactions(text, numbers["cash"])[0]
    assert cash.postings[0][0] == "Assets:UndepositedFunds"


def test_one_cent_off_anywhere_makes_bean_check_fail(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    build_book(session, settings)
    text = export_beancount(session, settings)
    good = tmp_path / "good.beancount"
    good.write_text(text, encoding="utf-8")
    assert bean_check(good).returncode == 0

    # 166.60 -> 166.61 on the receivable of INV-000001: a one-cent imbalance
    pattern = re.compile(r"(Assets:Receivable\s+)166\.60 EUR")
    assert len(pattern.findall(text)) == 1
    bad = tmp_path / "bad.beancount"
    bad.write_text(pattern.sub(r"\g<1>166.61 EUR", text), encoding="utf-8")
    result = bean_check(bad)
    assert result.returncode != 0
    assert "does not balance" in result.stdout + result.stderr

    # even a tenth of a cent fails: the file tolerates nothing (beancount's default would pass it)
    tenth = tmp_path / "tenth.beancount"
    tenth.write_text(pattern.sub(r"\g<1>166.601 EUR", text), encoding="utf-8")
    assert bean_check(tenth).returncode != 0
    lenient = tmp_path / "lenient.beancount"
    lenient.write_text(
        pattern.sub(r"\g<1>166.601 EUR", text).replace(
            '"tolerance_multiplier" "0"', '"tolerance_multiplier" "0.5"'
        ),
        encoding="utf-8",
    )
    assert bean_check(lenient).returncode == 0


def test_until_cuts_the_book_at_a_day(session: Session, settings: Settings, tmp_path: Path) -> None:
    build_book(session, settings)
    text = export_beancount(session, settings, until=dt.date(2026, 1, 31))
    path = tmp_path / "january.beancount"
    path.write_text(text, encoding="utf-8")
    assert bean_check(path).returncode == 0
    dates = [t.date for t in parse(text)]
    assert dates and max(dates) <= dt.date(2026, 1, 31)
    assert "INV-000005" not in text and "Refund" not in text
    # the same export twice is the same file
    assert export_beancount(session, settings, until=dt.date(2026, 1, 31)) == text


def test_amounts_finer_than_the_currency_and_bad_settings_are_refused(session: Session) -> None:
    add_customer(session, "cus_a", "Acme")
    invoice = add_invoice(session, "INV-000001", "cus_a", dt.date(2026, 1, 10), [("10.00", "0", None, False)])
    with pytest.raises(LedgerError, match="account name"):
        export_beancount(session, make_settings(bank="Assets:bank account"))
    with pytest.raises(LedgerError, match="before ledger.opening_date"):
        export_beancount(session, make_settings(opening_date="2026-02-01"))

    invoice.subtotal = invoice.total = D("10.005")
    session.flush()
    with pytest.raises(LedgerError, match="minor units"):
        export_beancount(session, make_settings())

    invoice.total = D("12.00")  # the stored totals disagree: refused rather than plugged
    session.flush()
    with pytest.raises(LedgerError, match="disagree"):
        export_beancount(session, make_settings())
