"""End to end through the real client libraries: Salesforce sandbox -> billsync -> QBO sandbox.

Runs on SQLite and (when BILLSYNC_TEST_DATABASE_URL is set) PostgreSQL. Each test asserts what a
user would check in QuickBooks afterwards: every invoice there exactly once, nothing lost.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
from sqlalchemy import select

from sync_engine import pull as pull_module
from sync_engine import push as push_module
from sync_engine.cycle import run_cycle
from sync_engine.store.models import CanonicalRecord, DeadLetter, Invoice, OutboxItem, StreamCursor
from tests.sync_engine.company import TODAY, Company, count

pytestmark = pytest.mark.integration


def test_a_cycle_puts_every_invoice_in_quickbooks_once_and_a_rerun_adds_nothing(company: Company) -> None:
    result = run_cycle(company.runtime, as_of=TODAY)
    created = result.bill.invoices_created if result.bill else 0
    assert created > 0
    numbers = company.qbo_invoice_numbers()
    assert sum(numbers.values()) == created and max(numbers.values()) == 1
    erp = company.erp_invoice_numbers()
    assert erp == numbers  # the ERP holds the same invoices, once each
    # the two accounts with an unsupported currency wait in the dead letters, with the reason
    with company.runtime.sessions() as session:
        letters = session.scalars(select(DeadLetter).where(DeadLetter.status == "open")).all()
    assert len(letters) == 2 and all("XTS" in letter.error for letter in letters)

    routes_before = Counter(company.qbo.calls_by_route)
    again = run_cycle(company.fresh_runtime(), as_of=TODAY)
    assert again.bill is not None and again.bill.invoices_created == 0
    assert sum(company.qbo_invoice_numbers().values()) == created
    # nothing pushed, not even a token refresh: one read, of the payments entered in QuickBooks since
    assert Counter(company.qbo.calls_by_route) - routes_before == Counter(
        {"POST /v3/company/{realm}/query": 1}
    )


def test_api_calls_stay_within_page_and_batch_sizes(company: Company) -> None:
    sf_before = company.sf.calls
    result = run_cycle(company.runtime, as_of=TODAY)
    records = {p.stream: p.read for p in result.pulls}
    allowed_sf = sum(math.ceil(n / 2000) or 1 for n in records.values()) + 1  # + login
    status_upserts = company.sf.calls_by_kind["collection_upsert"]  # invoice statuses back to the CRM
    invoices_billed = result.bill.invoices_created if result.bill else 0
    assert status_upserts <= math.ceil(invoices_billed / 200)
    assert company.sf.calls - sf_before - status_upserts <= allowed_sf
    invoices = result.bill.invoices_created if result.bill else 0
    batches = company.qbo.calls_by_route["POST /v3/company/{realm}/batch"]
    customers, items = 40, 6
    assert batches <= math.ceil(invoices / 30) + math.ceil(customers / 30) + math.ceil(items / 30)


def test_a_crash_after_quickbooks_accepted_a_batch_does_not_duplicate_on_restart(
    company: Company, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_cycle(company.runtime, as_of=TODAY, steps=("pull", "bill"))
    real_apply = push_module._apply_results

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed after the batch call, before recording its results")

    monkeypatch.setattr(push_module, "_apply_results", crash)
    with pytest.raises(KeyboardInterrupt):
        run_cycle(company.runtime, as_of=TODAY, steps=("push",))
    assert company.qbo.count("Customer") > 0  # QuickBooks did apply the first batch
    monkeypatch.setattr(push_module, "_apply_results", real_apply)

    run_cycle(company.fresh_runtime(), as_of=TODAY, steps=("push",))
    assert company.qbo.count("Customer") == 40 and company.erp.count("Customer") == 40
    numbers = company.qbo_invoice_numbers()
    assert numbers and max(numbers.values()) == 1
    assert sum(numbers.values()) == count(company.runtime, Invoice)
    assert company.erp_invoice_numbers() == numbers
    assert count(company.runtime, OutboxItem, OutboxItem.status != "sent") == 0


def test_a_page_that_fails_half_way_is_not_half_imported(
    company: Company, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = company.runtime.settings.streams[0]
    real_validate = pull_module.validate_entity
    seen = {"n": 0}

    def flaky(entity: str, data: dict[str, object]) -> dict[str, object]:
        seen["n"] += 1
        if seen["n"] == 10:
            raise ConnectionResetError("database went away mid-page")
        return real_validate(entity, data)

    monkeypatch.setattr(pull_module, "validate_entity", flaky)
    with pytest.raises(ConnectionResetError):
        pull_module.pull_stream(company.runtime, stream)
    assert count(company.runtime, CanonicalRecord) == 0
    assert count(company.runtime, StreamCursor) == 0

    monkeypatch.setattr(pull_module, "validate_entity", real_validate)
    result = pull_module.pull_stream(company.fresh_runtime(), stream)
    assert result.written == 40 and count(company.runtime, CanonicalRecord) == 40


def test_a_renamed_account_updates_the_quickbooks_customer_in_place(company: Company) -> None:
    run_cycle(company.runtime, as_of=TODAY)
    account = company.sf.records("Account")[0]
    company.sf.touch("Account", account["Id"], Name="Renamed Customer Ltd")
    result = run_cycle(company.fresh_runtime(), as_of=TODAY)
    assert result.pushes[0].sent == {"customer": 1}
    names = [c["DisplayName"] for c in company.qbo.entities("Customer")]
    assert "Renamed Customer Ltd" in names and len(names) == 40
    assert result.bill is not None and result.bill.invoices_created == 0


def test_a_throttled_push_loses_nothing_and_finishes_on_the_next_run(company: Company) -> None:
    run_cycle(company.runtime, as_of=TODAY, steps=("pull", "bill"))
    company.qbo.throttle_next(1, retry_after=120)  # longer than the in-call wait: left to the next run
    first = run_cycle(company.runtime, as_of=TODAY, steps=("push",))
    assert first.pushes[0].retry_later > 0
    run_cycle(company.fresh_runtime(), as_of=TODAY, steps=("push",))
    numbers = company.qbo_invoice_numbers()
    assert sum(numbers.values()) == count(company.runtime, Invoice) and max(numbers.values()) == 1
    assert company.qbo.count("Customer") == 40
