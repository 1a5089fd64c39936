"""Failure scenarios found in review: each once let a record go out twice or not at all."""

from __future__ import annotations

import datetime as dt

import pytest

from sync_engine import push as push_module
from sync_engine.bindings import bindings_by_external
from sync_engine.cycle import run_cycle
from tests.sync_engine.company import TODAY, Company

pytestmark = pytest.mark.integration


def crash_after_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed after QuickBooks applied the batch")

    monkeypatch.setattr(push_module, "_apply_results", crash)


def good_account(company: Company) -> dict[str, object]:
    return next(a for a in company.sf.records("Account") if a.get("CurrencyIsoCode") != "XTS")


def test_a_rename_while_the_create_was_in_flight_does_not_duplicate_the_customer(
    company: Company, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_cycle(company.runtime, as_of=TODAY, steps=("pull", "bill"))
    with monkeypatch.context() as patch:
        crash_after_batch(patch)
        with pytest.raises(KeyboardInterrupt):
            run_cycle(company.runtime, as_of=TODAY, steps=("push",))
    account = good_account(company)
    company.sf.touch("Account", str(account["Id"]), Name="Renamed While In Flight")
    run_cycle(company.fresh_runtime(), as_of=TODAY)
    run_cycle(company.runtime, as_of=TODAY)
    names = [c["DisplayName"] for c in company.qbo.entities("Customer")]
    assert len(names) == 40 and "Renamed While In Flight" in names


def test_a_change_made_while_a_write_was_in_flight_still_reaches_quickbooks(
    company: Company, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_cycle(company.runtime, as_of=TODAY, steps=("pull", "bill"))
    with monkeypatch.context() as patch:
        crash_after_batch(patch)
        with pytest.raises(KeyboardInterrupt):
            run_cycle(company.runtime, as_of=TODAY, steps=("push",))
    company.sf.touch("Account", str(good_account(company)["Id"]), Phone="+1 555 0199")
    run_cycle(company.fresh_runtime(), as_of=TODAY)
    run_cycle(company.runtime, as_of=TODAY)
    phones = [c.get("PrimaryPhone", {}).get("FreeFormNumber") for c in company.qbo.entities("Customer")]
    assert "+1 555 0199" in phones


def test_a_value_that_comes_back_is_written_again(company: Company) -> None:
    run_cycle(company.runtime, as_of=TODAY)
    account = good_account(company)
    original = str(account["Name"]).strip()
    company.sf.touch("Account", str(account["Id"]), Name="Temporary Name Inc")
    run_cycle(company.runtime, as_of=TODAY)
    company.sf.touch("Account", str(account["Id"]), Name=original)
    run_cycle(company.runtime, as_of=TODAY)
    names = {c["DisplayName"] for c in company.qbo.entities("Customer")}
    assert original in names and "Temporary Name Inc" not in names


def test_an_order_waiting_for_its_account_is_imported_once_the_account_is_fixed(company: Company) -> None:
    clock = {"now": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)}  # after the seeded records
    company.sf.now = lambda: clock["now"]
    company.runtime.settings.connections["salesforce"].lookback_seconds = 0  # type: ignore[union-attr]
    run_cycle(company.runtime, as_of=TODAY)
    clock["now"] += dt.timedelta(hours=1)
    [account] = company.sf.add_records("Account", [{"Name": "Late Co", "CurrencyIsoCode": "XTS"}])
    [order] = company.sf.add_records(
        "Order",
        [
            {
                "AccountId": account,
                "Status": "Activated",
                "EffectiveDate": "2026-11-01",
                "CurrencyIsoCode": "USD",
            }
        ],
    )
    run_cycle(company.runtime, as_of=TODAY)  # account refused (currency), order waits for it
    clock["now"] += dt.timedelta(hours=1)
    company.sf.add_records(  # a later order moves the cursor past the waiting one
        "Order",
        [
            {
                "AccountId": good_account(company)["Id"],
                "Status": "Draft",
                "EffectiveDate": "2026-11-02",
                "CurrencyIsoCode": "USD",
            }
        ],
    )
    run_cycle(company.runtime, as_of=TODAY)
    with company.runtime.sessions() as session:
        assert not bindings_by_external(session, "salesforce", "order", [order])
    clock["now"] += dt.timedelta(hours=1)
    company.sf.touch("Account", account, CurrencyIsoCode="USD")  # support fixes the account
    run_cycle(company.runtime, as_of=TODAY)
    with company.runtime.sessions() as session:
        assert bindings_by_external(session, "salesforce", "customer", [account])
        assert bindings_by_external(session, "salesforce", "order", [order])
