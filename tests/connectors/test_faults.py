"""Fault injection in the sandboxes, and the connectors (real client libraries) surviving it.

Client timeouts are set below each sandbox's ``fault_delay`` so an injected timeout is a timeout, and
the retry policy does not sleep, so the whole module runs in a few seconds.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from connectors.errors import AuthError, OutcomeUnknownError, RateLimitedError, RetryableError
from connectors.quickbooks.client import BatchItem, QuickBooksConnector
from connectors.quickbooks.errors import StaleObjectError
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.quickbooks.tokens import MemoryTokenStore
from connectors.retry import RetryPolicy, parse_retry_after
from connectors.salesforce.client import SalesforceConnector
from connectors.salesforce.sandbox import SalesforceSandbox
from connectors.sandbox import FAULT_KINDS, Request, Response, Sandbox
from tests.connectors.salesforce.conftest import make_settings

pytestmark = pytest.mark.integration

NO_SLEEP = RetryPolicy(sleep=lambda seconds: None)
ONE_ATTEMPT = RetryPolicy(attempts=1)


def raw_session(sandbox: Sandbox) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sandbox.cert_file)
    return session


def outcome(send: Any) -> str | requests.Response:
    """The response, or "timeout"/"drop" when no answer came."""
    try:
        response: requests.Response = send()
    except requests.ReadTimeout:
        return "timeout"
    except requests.ConnectionError:
        return "drop"
    return response


# -- the base class ---------------------------------------------------------------------------------------


class Counting(Sandbox):
    """A minimal sandbox: ``POST /api/n`` adds one to a counter; token and WSDL routes are exempt."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.applied = 0
        self.route("POST", r"/api/n", self._add)
        self.route("POST", r"/oauth2/token", lambda request: Response(200, {"token": "t"}))
        wsdl = Response(200, "<definitions/>")
        self.route("GET", r"/ws/Page/Customer", lambda request: wsdl, faults=False)  # NAV-style URL
        self.route("GET", r"/svc/Customer", lambda request: wsdl)  # ?wsdl: exempt by default

    def _add(self, request: Request) -> Response:
        with self._lock:
            self.applied += 1
        return Response(200, {"n": self.applied})


@pytest.fixture
def counting() -> Iterator[Counting]:
    with Counting(faults=1.0, seed=3, fault_delay=0.4) as sandbox:
        yield sandbox


def test_every_fault_kind_is_served_and_counted(counting: Counting) -> None:
    session = raw_session(counting)
    seen: Counter[str] = Counter()
    for _ in range(40):
        result = outcome(lambda: session.post(f"{counting.base_url}/api/n", timeout=0.2))
        if isinstance(result, str):
            seen[result] += 1
        else:
            seen[{429: "throttle", 500: "server_error", 503: "unavailable"}[result.status_code]] += 1
            if result.status_code == 429:
                assert parse_retry_after(result.headers["Retry-After"]) is not None
        if len(seen) == len(FAULT_KINDS):
            break
    assert set(seen) == set(FAULT_KINDS)
    injected = {kind: counting.faults_injected[kind] for kind in FAULT_KINDS}
    assert injected == dict(seen)
    # some timeouts/drops were processed before the answer was lost: the real "outcome unknown"
    assert (
        counting.applied
        == counting.faults_injected["timeout_after_apply"] + counting.faults_injected["drop_after_apply"]
    )
    assert counting.calls == sum(seen.values())


def test_tokens_and_wsdl_documents_are_never_faulted(counting: Counting) -> None:
    session = raw_session(counting)
    for _ in range(10):
        assert session.post(f"{counting.base_url}/oauth2/token", timeout=2).status_code == 200
        assert session.get(f"{counting.base_url}/ws/Page/Customer", timeout=2).status_code == 200
        assert session.get(f"{counting.base_url}/svc/Customer?wsdl", timeout=2).status_code == 200
    assert sum(counting.faults_injected.values()) == 0


def test_a_share_of_zero_turns_injection_off_and_bad_settings_are_refused(counting: Counting) -> None:
    counting.set_faults(0.0)
    session = raw_session(counting)
    assert [session.post(f"{counting.base_url}/api/n", timeout=2).status_code for _ in range(5)] == [200] * 5
    with pytest.raises(ValueError):
        counting.set_faults(1.5)
    with pytest.raises(ValueError):
        counting.set_faults(0.1, kinds=["meteor"])


def test_the_same_seed_gives_the_same_faults() -> None:
    def run() -> list[str]:
        with Counting(faults=0.5, seed=11, fault_kinds=["throttle", "server_error", "unavailable"]) as sb:
            session = raw_session(sb)
            return [str(session.post(f"{sb.base_url}/api/n", timeout=2).status_code) for _ in range(30)]

    first = run()
    assert first == run()
    assert "200" in first and len(set(first)) > 2


def test_a_drop_after_apply_changed_the_state_and_said_nothing(counting: Counting) -> None:
    counting.set_faults(1.0, kinds=["drop"], applied=1.0)
    with pytest.raises(requests.ConnectionError):
        raw_session(counting).post(f"{counting.base_url}/api/n", timeout=2)
    assert counting.applied == 1 and counting.faults_injected["drop_after_apply"] == 1
    counting.set_faults(1.0, kinds=["drop"], applied=0.0)
    with pytest.raises(requests.ConnectionError):
        raw_session(counting).post(f"{counting.base_url}/api/n", timeout=2)
    assert counting.applied == 1


# -- QuickBooks ------------------------------------------------------------------------------------------


@pytest.fixture
def qbo() -> Iterator[QuickBooksSandbox]:
    with QuickBooksSandbox(fault_delay=0.8) as sandbox:
        yield sandbox


def qbo_connector(qbo: QuickBooksSandbox, retry: RetryPolicy = NO_SLEEP) -> QuickBooksConnector:
    return QuickBooksConnector(qbo.settings(timeout_seconds=0.5), MemoryTokenStore(), retry=retry)


def invoice(customer_id: str, item_id: str, doc: str) -> dict[str, Any]:
    return {
        "DocNumber": doc,
        "CustomerRef": {"value": customer_id},
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": Decimal("59.97"),
                "SalesItemLineDetail": {
                    "ItemRef": {"value": item_id},
                    "Qty": Decimal("3"),
                    "UnitPrice": Decimal("19.99"),
                },
            }
        ],
    }


def test_qbo_faults_have_qbo_bodies_and_translate(qbo: QuickBooksSandbox) -> None:
    qb = qbo_connector(qbo, ONE_ATTEMPT)  # the token endpoint is never faulted: this works
    qbo.set_faults(1.0, seed=5)
    seen: dict[str, Exception] = {}
    for _ in range(40):
        try:
            qb.count("Customer")
        except RetryableError as exc:
            seen[type(exc).__name__ + ":" + (exc.code or "")] = exc
        if len(set(qbo.faults_injected) & set(FAULT_KINDS)) == len(FAULT_KINDS):
            break
    assert set(qbo.faults_injected) >= set(FAULT_KINDS)
    throttled = seen["RateLimitedError:3001"]  # the real XML body, read for its code
    assert isinstance(throttled, RateLimitedError) and throttled.retry_after is not None
    assert throttled.retry_after <= 1.0  # from "1" or an HTTP date one second ahead
    assert "RetryableError:10000" in seen  # 500: SystemFault
    assert "RetryableError:503" in seen  # 503: the gateway's HTML page
    assert "RetryableError:" in seen  # timeouts and drops of a read


def test_qbo_batch_of_300_with_a_fifth_of_calls_faulted_lands_each_invoice_once(
    qbo: QuickBooksSandbox,
) -> None:
    customer = qbo.seed("Customer", [{"DisplayName": "Acme GmbH"}])[0]["Id"]
    item = qbo.seed("Item", [{"Name": "Seat", "UnitPrice": Decimal("19.99")}])[0]["Id"]
    qb = qbo_connector(qbo)
    qbo.set_faults(0.2, seed=43)
    docs = [f"F-{n:03d}" for n in range(300)]
    done: dict[str, dict[str, Any]] = {}
    unknown: set[str] = set()
    for run in range(10):  # what the sync engine does run after run
        if unknown:  # lookup before retry: an unanswered write may have been applied
            try:
                found = qb.find_by("Invoice", "DocNumber", sorted(unknown))
            except RetryableError:
                continue
            done.update(found)
            unknown -= set(found)
        todo = [doc for doc in docs if doc not in done]
        if not todo:
            break
        results = qb.batch(
            [BatchItem(f"{doc}#{run}", "Invoice", "create", invoice(customer, item, doc)) for doc in todo]
        )
        for doc, result in zip(todo, results, strict=True):
            if result.ok and result.entity is not None:
                done[doc] = result.entity
                unknown.discard(doc)
            elif isinstance(result.error, OutcomeUnknownError):
                unknown.add(doc)
            else:
                assert isinstance(result.error, RetryableError), result.error
    assert sorted(done) == docs
    stored = qbo.entities("Invoice")
    assert sorted(row["DocNumber"] for row in stored) == docs  # each exactly once
    assert {row["TotalAmt"] for row in stored} == {Decimal("59.97")}
    assert sum(qbo.faults_injected[kind] for kind in FAULT_KINDS) >= 3


def test_a_create_applied_then_dropped_is_unknown_and_its_resend_does_not_duplicate(
    qbo: QuickBooksSandbox,
) -> None:
    qb = qbo_connector(qbo, ONE_ATTEMPT)
    qbo.set_faults(1.0, kinds=["drop"], applied=1.0)
    with pytest.raises(OutcomeUnknownError):
        qb.create("Customer", {"DisplayName": "Maybe Corp"}, request_id="c-maybe")
    assert qbo.count("Customer") == 1  # it happened, nobody was told
    qbo.set_faults(0.0)
    again = qb.create("Customer", {"DisplayName": "Maybe Corp"}, request_id="c-maybe")
    assert qbo.count("Customer") == 1 and again["DisplayName"] == "Maybe Corp"


def test_a_timed_out_batch_that_was_applied_is_answered_from_the_request_id_cache(
    qbo: QuickBooksSandbox,
) -> None:
    qb = qbo_connector(qbo, RetryPolicy(attempts=2, sleep=lambda s: None))
    customer = qbo.seed("Customer", [{"DisplayName": "Acme"}])[0]["Id"]
    item = qbo.seed("Item", [{"Name": "Seat"}])[0]["Id"]
    qbo.set_faults(1.0, kinds=["timeout"], applied=1.0)
    items = [BatchItem(f"k{n}", "Invoice", "create", invoice(customer, item, f"T-{n}")) for n in range(5)]
    results = qb.batch(items)
    assert all(isinstance(r.error, OutcomeUnknownError) for r in results)
    assert qbo.count("Invoice") == 5  # both attempts reached the sandbox; the second changed nothing
    qbo.set_faults(0.0)
    assert all(r.ok for r in qb.batch(items)) and qbo.count("Invoice") == 5


def test_an_auth_failure_after_an_unanswered_write_is_still_unknown(qbo: QuickBooksSandbox) -> None:
    qb = qbo_connector(qbo, RetryPolicy(attempts=2, sleep=lambda s: None))
    qbo.set_faults(1.0, kinds=["drop"], applied=1.0)

    def revoke_after_first_call(seconds: float) -> None:
        qbo.set_faults(0.0)
        qbo.expire_access_tokens()
        qbo._refresh_token = "revoked"  # the company was disconnected meanwhile

    qb.retry = qb.retry.with_(sleep=revoke_after_first_call)
    with pytest.raises(OutcomeUnknownError) as info:
        qb.create("Customer", {"DisplayName": "Half Done"}, request_id="c-half")
    assert isinstance(info.value.__cause__, AuthError)


def test_stale_sync_token_once_is_re_read_and_retried_when_asked(qbo: QuickBooksSandbox) -> None:
    qb = qbo_connector(qbo)
    created = qb.create("Customer", {"DisplayName": "Stale Ltd"}, request_id="c-s")
    qbo.stale_next_update()
    change = {"Id": created["Id"], "SyncToken": "0", "sparse": True, "CompanyName": "Stale"}
    with pytest.raises(StaleObjectError):
        qb.update("Customer", change, request_id="u-1")
    assert qbo.faults_injected["stale_sync_token"] == 1

    qbo.stale_next_update()
    updated = qb.update("Customer", change, request_id="u-2", retry_stale=True)
    assert updated["CompanyName"] == "Stale" and updated["SyncToken"] == "1"
    assert qbo.faults_injected["stale_sync_token"] == 2

    qbo.stale_next_update(2)  # stale twice in a row: raised, not looped
    with pytest.raises(StaleObjectError):
        qb.update("Customer", {**change, "SyncToken": "1"}, request_id="u-3", retry_stale=True)


def test_qbo_run_events_expire_the_token_and_stale_one_batch_update(qbo: QuickBooksSandbox) -> None:
    assert qbo.arm_run_events() == ["expired_token", "stale_sync_token"]  # before the run starts
    store = MemoryTokenStore()
    qb = QuickBooksConnector(qbo.settings(), store, retry=NO_SLEEP)
    issued = store.tokens.refresh_token if store.tokens else None
    created = qb.create("Customer", {"DisplayName": "Run Ltd"}, request_id="c-r")  # 401, refresh, ok
    assert qbo.faults_injected["expired_token"] == 1 and qbo.refreshes == 2
    assert store.tokens is not None and store.tokens.refresh_token not in (issued, None)  # rotated, saved
    update = BatchItem("u", "Customer", "update", {"CompanyName": "x"}, created["Id"], created["SyncToken"])
    assert isinstance(qb.batch([update])[0].error, StaleObjectError)
    assert qbo.faults_injected["stale_sync_token"] == 1
    assert qb.batch([dataclasses.replace(update, key="u2")])[0].ok  # once per run, not forever


# -- Salesforce ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_sf() -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(fault_delay=1.5) as sandbox:
        yield sandbox


@pytest.fixture
def sf(shared_sf: SalesforceSandbox) -> SalesforceSandbox:
    shared_sf.reset()
    return shared_sf


def sf_connector(
    sf: SalesforceSandbox, retry: RetryPolicy = NO_SLEEP, timeout: float = 1.0
) -> SalesforceConnector:
    settings = make_settings(
        username=sf.username,
        password=sf.password,
        security_token=sf.security_token,
        login_url=sf.base_url,
        ca_file=str(sf.cert_file),
        timeout_seconds=timeout,
    )
    return SalesforceConnector(settings, retry=retry)


def test_salesforce_faults_have_salesforce_bodies_and_translate(sf: SalesforceSandbox) -> None:
    sf.set_faults(1.0, seed=8, delay=0.5)
    connector = sf_connector(sf, ONE_ATTEMPT, timeout=0.3)
    connector.connect()  # logins are never faulted
    codes: set[str | None] = set()
    for _ in range(40):
        try:
            list(connector.pull("Account", ["Name"], None))
        except RateLimitedError as exc:
            assert exc.code == "REQUEST_LIMIT_EXCEEDED" and exc.retry_after is not None
            codes.add(exc.code)
        except RetryableError as exc:
            codes.add(exc.code)
        if len(set(sf.faults_injected) & set(FAULT_KINDS)) == len(FAULT_KINDS):
            break
    assert set(sf.faults_injected) >= set(FAULT_KINDS)
    assert codes >= {"REQUEST_LIMIT_EXCEEDED", "UNKNOWN_EXCEPTION", "SERVER_UNAVAILABLE", "timeout"}
    assert codes & {"connection"}  # the drop
    assert connector.logins == 1


def test_salesforce_pull_of_5000_with_a_fifth_of_calls_faulted_and_a_session_expiring(
    sf: SalesforceSandbox,
) -> None:
    sf.add_records("Account", [{"Name": f"Customer {n:04d}"} for n in range(5000)])
    sf.set_faults(0.2, seed=41)
    sf.arm_run_events()
    connector = sf_connector(sf)
    records = list(connector.pull("Account", ["Name"], None))
    assert len(records) == 5000 and len({r["Id"] for r in records}) == 5000
    assert sorted(r["Name"] for r in records) == [f"Customer {n:04d}" for n in range(5000)]
    assert sf.faults_injected["expired_session"] == 1 and connector.logins == 2
    assert sum(sf.faults_injected[kind] for kind in FAULT_KINDS) >= 1


def test_salesforce_upserts_under_faults_create_each_record_once(sf: SalesforceSandbox) -> None:
    sf.define_fields("Account", {"Billsync_Id__c": "string"})
    sf.set_faults(0.2, seed=99, kinds=["throttle", "server_error", "unavailable", "drop"])
    connector = sf_connector(sf, RetryPolicy(attempts=5, sleep=lambda s: None))
    for n in range(100):
        connector.upsert("Account", "Billsync_Id__c", f"A-{n}", {"Name": f"Account {n}"})
    keys = [r["Billsync_Id__c"] for r in sf.records("Account")]
    assert sorted(keys) == sorted(f"A-{n}" for n in range(100))  # applied-then-dropped: no duplicate
    assert sf.faults_injected["drop_after_apply"] >= 1


def test_an_expired_session_is_renewed_once_then_it_is_an_auth_error(sf: SalesforceSandbox) -> None:
    connector = sf_connector(sf)
    connector.connect()
    sf.expire_session_once()
    assert list(connector.pull("Account", ["Name"], None)) == []
    assert connector.logins == 2 and sf.calls_by_kind["login"] == 2

    sf.fail_next(401, count=10)  # every session refused, even a fresh one
    with pytest.raises(AuthError) as caught:
        list(connector.pull("Account", ["Name"], None))
    assert caught.value.code == "INVALID_SESSION_ID"
    assert connector.logins == 3  # one re-login, not simple-salesforce's three


def test_a_slow_upsert_is_retried_and_its_final_silence_is_an_unknown_outcome(sf: SalesforceSandbox) -> None:
    sf.define_fields("Account", {"Billsync_Id__c": "string"})
    connector = sf_connector(sf, RetryPolicy(attempts=2, sleep=lambda s: None), timeout=0.3)
    connector.connect()
    sf.set_faults(1.0, kinds=["timeout"], delay=0.5, applied=1.0)
    with pytest.raises(OutcomeUnknownError):
        connector.upsert("Account", "Billsync_Id__c", "A-1", {"Name": "Slow"})
    sf.set_faults(0.0)
    assert [r["Billsync_Id__c"] for r in sf.records("Account")] == ["A-1"]


def test_faults_stop_with_the_sandbox() -> None:
    """A handler holding an injected timeout does not keep the process waiting after stop()."""
    sandbox = Counting(faults=1.0, fault_kinds=["timeout"], fault_delay=30).start()
    session = raw_session(sandbox)
    thread = threading.Thread(target=outcome, args=(lambda: session.post(f"{sandbox.base_url}/api/n"),))
    thread.start()
    while sandbox.calls == 0:
        threading.Event().wait(0.01)
    sandbox.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
