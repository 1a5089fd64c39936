"""The vendors' real limits: the sandboxes enforce them when asked (``limits="real"``), and the
connectors live within them (QBO paced per company, Salesforce stopping at its reserve)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.errors import FatalError, RateLimitedError
from connectors.nav.sandbox import NavSandbox
from connectors.quickbooks.client import BatchItem, QuickBooksConnector
from connectors.quickbooks.sandbox import THROTTLE_XML, QuickBooksSandbox
from connectors.quickbooks.tokens import MemoryTokenStore
from connectors.ratelimit import Rate, RateLimiter
from connectors.retry import RetryPolicy
from connectors.salesforce.client import SalesforceConnector
from connectors.salesforce.errors import ApiBudgetError
from connectors.salesforce.sandbox import SalesforceSandbox
from connectors.salesforce.settings import SalesforceSettings
from connectors.sandbox import ConcurrencyGate, SlidingWindow

pytestmark = pytest.mark.integration

SF_FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "salesforce"
LIMIT_EXCEEDED = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
NO_CLIENT_LIMITS = {
    "rate_limit_requests": None,
    "rate_limit_batch_requests": None,
    "max_concurrent_requests": None,
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the shared parts --------------------------------------------------------------------------------
def test_a_sliding_window_refuses_the_event_over_its_limit_until_the_oldest_leaves():
    clock = FakeClock()
    window = SlidingWindow(3, 60.0, clock=clock)
    assert [window.admit("realm") for _ in range(4)] == [True, True, True, False]
    assert window.admit("other realm")  # per key
    clock.now += 59.9
    assert not window.admit("realm") and window.retry_after("realm") == pytest.approx(0.1)
    clock.now += 0.1
    assert window.admit("realm") and window.count("realm") == 1


def test_a_concurrency_gate_refuses_one_more_in_flight_and_reopens_when_one_leaves():
    gate = ConcurrencyGate(2)
    assert gate.enter("r") and gate.enter("r") and not gate.enter("r")
    gate.leave("r")
    assert gate.enter("r") and gate.peak["r"] == 2


# -- QBO sandbox: the throttles of one company -------------------------------------------------------
def qbo_session(qbo: QuickBooksSandbox, token: str | None = None) -> tuple[requests.Session, str]:
    """A plain HTTPS session with a valid access token, to look at the sandbox's own answers."""
    if token is None:
        token = QuickBooksConnector(
            qbo.settings(**NO_CLIENT_LIMITS), MemoryTokenStore()
        ).tokens.access_token()
    session = requests.Session()
    session.trust_env = False
    session.verify = str(qbo.cert_file)
    session.headers["Authorization"] = f"Bearer {token}"
    session.headers["Accept"] = "application/json"
    return session, f"{qbo.base_url}/v3/company/{qbo.realm_id}"


def query(session: requests.Session, company: str) -> requests.Response:
    return session.post(
        f"{company}/query", data="SELECT COUNT(*) FROM Customer", headers={"Content-Type": "application/text"}
    )


def batch(session: requests.Session, company: str) -> requests.Response:
    body = {"BatchItemRequest": [{"bId": "1", "Query": "SELECT * FROM Customer"}]}
    return session.post(f"{company}/batch", json=body)


def test_qbo_refuses_the_501st_request_of_a_minute_with_its_throttle_body_and_no_retry_after():
    clock = FakeClock()
    with QuickBooksSandbox(limits="real", limits_clock=clock) as qbo:
        session, company = qbo_session(qbo)
        statuses = [query(session, company).status_code for _ in range(500)]
        refused = query(session, company)
        clock.now += 59.0
        still_refused = query(session, company).status_code
        clock.now += 1.0  # the first requests leave the window
        again = query(session, company).status_code

    assert statuses == [200] * 500
    assert refused.status_code == 429
    assert refused.text == THROTTLE_XML  # QBO's 3001 ThrottleExceeded, as XML even to a JSON client
    assert "Retry-After" not in refused.headers  # Intuit documents none: "wait 60 seconds"
    assert (still_refused, again) == (429, 200)
    assert qbo.limit_refusals == {"requests_per_minute": 2}


def test_qbo_answers_the_11th_request_in_flight_with_429():
    with QuickBooksSandbox(limits="real") as qbo:
        session, company = qbo_session(qbo)
        token = session.headers["Authorization"].split()[1]
        sessions = [qbo_session(qbo, str(token))[0] for _ in range(11)]
        for own in sessions:  # connected before the race, so no connection waits in the listen queue
            assert query(own, company).status_code == 200
        qbo.latency = 0.4
        start = threading.Barrier(11)
        statuses: list[int] = []

        def call(own: requests.Session) -> None:
            start.wait()
            statuses.append(query(own, company).status_code)

        threads = [threading.Thread(target=call, args=(own,)) for own in sessions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = query(session, company).status_code

    assert sorted(statuses) == [200] * 10 + [429]
    assert after == 200  # nothing left in flight
    assert qbo.limit_refusals == {"concurrent": 1} and qbo.peak_in_flight == 10


def test_qbo_refuses_the_41st_batch_request_of_a_minute_but_not_other_requests():
    clock = FakeClock()
    with QuickBooksSandbox(limits="real", limits_clock=clock) as qbo:
        session, company = qbo_session(qbo)
        statuses = [batch(session, company).status_code for _ in range(40)]
        refused = batch(session, company)
        plain = query(session, company).status_code
        clock.now += 60.0
        again = batch(session, company).status_code

    assert statuses == [200] * 40
    assert refused.status_code == 429 and refused.text == THROTTLE_XML
    assert (plain, again) == (200, 200)
    assert qbo.limit_refusals == {"batch_requests_per_minute": 1}


def test_qbo_caps_a_query_page_at_1000_rows_and_a_batch_at_30_items():
    with QuickBooksSandbox(limits="real") as qbo:
        qbo.seed("Customer", [{"DisplayName": f"Customer {n}"} for n in range(1005)])
        session, company = qbo_session(qbo)
        page = session.post(
            f"{company}/query",
            data="SELECT * FROM Customer STARTPOSITION 1 MAXRESULTS 1500",
            headers={"Content-Type": "application/text"},
        ).json()["QueryResponse"]
        items = [{"bId": str(n), "Query": "SELECT COUNT(*) FROM Customer"} for n in range(31)]
        too_big = session.post(f"{company}/batch", json={"BatchItemRequest": items})

    assert len(page["Customer"]) == page["maxResults"] == 1000  # capped, as QBO does, not refused
    assert too_big.status_code == 400 and "at most 30" in too_big.text


@pytest.mark.parametrize("kind", ["quickbooks", "salesforce", "nav"])
def test_the_sandboxes_hold_each_answer_for_their_latency(kind):
    boxes: dict[str, Callable[[], Any]] = {
        "quickbooks": lambda: QuickBooksSandbox(latency=0.2),
        "salesforce": lambda: SalesforceSandbox(latency=0.2),
        "nav": lambda: NavSandbox(latency=0.2),
    }
    with boxes[kind]() as box:
        url = {
            "quickbooks": lambda: box.discovery_url,
            "salesforce": lambda: f"{box.base_url}/services/data/",
            "nav": lambda: f"{box.company_url}Page/Customer",
        }[kind]()
        session = requests.Session()
        session.trust_env = False
        session.verify = str(box.cert_file)
        session.get(url)  # connected first: the TLS handshake is not the sandbox's latency
        started = time.monotonic()
        answer = session.get(url)
        elapsed = time.monotonic() - started
    assert answer.status_code < 500
    assert 0.2 <= elapsed < 1.0


def test_without_limits_the_qbo_sandbox_throttles_nothing_and_asks_the_client_for_no_pacing():
    with QuickBooksSandbox() as qbo:
        connector = QuickBooksConnector(qbo.settings(), MemoryTokenStore())
        session, company = qbo_session(qbo, connector.tokens.access_token())
        assert all(batch(session, company).status_code == 200 for _ in range(45))
        assert connector.rate_limiter is None


# -- QBO connector: paced, never throttled ------------------------------------------------------------
def customers(n: int, prefix: str = "C") -> list[BatchItem]:
    return [
        BatchItem(f"{prefix}{i}", "Customer", "create", {"DisplayName": f"{prefix} {i}"}) for i in range(n)
    ]


def test_the_connector_pushing_more_than_a_windows_worth_of_batches_waits_instead_of_being_throttled():
    with QuickBooksSandbox(
        limits="real", window_seconds=0.5, requests_per_window=100, batch_requests_per_window=3
    ) as qbo:
        connector = QuickBooksConnector(qbo.settings(), MemoryTokenStore())
        arrivals: list[float] = []
        admit = qbo.admit

        def recording(request: Any, label: str) -> Any:
            if label.endswith("/batch"):
                arrivals.append(time.monotonic())
            return admit(request, label)

        qbo.admit = recording  # type: ignore[method-assign]
        results = connector.batch(customers(300))  # 10 batch calls, 3 allowed in any 0.5 s

    assert all(result.ok for result in results) and qbo.count("Customer") == 300
    assert not qbo.limit_refusals  # not one 429
    assert len(arrivals) == 10
    for first, fourth in zip(arrivals, arrivals[3:], strict=False):
        assert fourth - first >= 0.5  # never 4 in one window: the calls are spaced
    assert connector.rate_limiter is not None and connector.rate_limiter.waited > 1.0


def test_threads_of_one_process_share_the_companys_limits():
    """Eight worker threads, each with its own connector: together they keep 3 in flight and 20
    requests per window, so the sandbox throttles none of their 80 calls."""
    with QuickBooksSandbox(
        limits="real", latency=0.02, window_seconds=0.4, requests_per_window=20, max_concurrent=3
    ) as qbo:
        settings, store = qbo.settings(), MemoryTokenStore()  # the workers share the tokens, as in billsync
        connectors = [QuickBooksConnector(settings, store) for _ in range(8)]
        counts: list[int] = []
        errors: list[BaseException] = []

        def work(connector: QuickBooksConnector) -> None:
            try:
                for _ in range(10):
                    counts.append(connector.count("Customer"))
            except BaseException as exc:  # pragma: no cover - reported by the assertion below
                errors.append(exc)

        started = time.monotonic()
        threads = [threading.Thread(target=work, args=(connector,)) for connector in connectors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started

    assert not errors and len(counts) == 80
    assert not qbo.limit_refusals and qbo.peak_in_flight <= 3
    assert {id(c.rate_limiter) for c in connectors} == {id(connectors[0].rate_limiter)}
    # 80 calls at 20 per 0.4 s take at least 3 windows beyond the first, and not much more
    assert 1.2 <= elapsed <= 2.4


def test_a_throttle_that_still_comes_is_retried_after_its_retry_after():
    waits: list[float] = []
    with QuickBooksSandbox(limits="real") as qbo:
        connector = QuickBooksConnector(
            qbo.settings(), MemoryTokenStore(), retry=RetryPolicy(sleep=waits.append, jitter=0)
        )
        qbo.throttle_next(1, retry_after=0.05)  # e.g. another app used the company's budget
        assert connector.count("Customer") == 0
    assert waits == [0.05]


def test_a_throttle_without_retry_after_goes_back_to_the_job_layer_instead_of_sleeping_a_minute():
    waits: list[float] = []
    with QuickBooksSandbox(limits="real", requests_per_window=1) as qbo:
        connector = QuickBooksConnector(  # client limits off: as if a second process shared the company
            qbo.settings(**NO_CLIENT_LIMITS), MemoryTokenStore(), retry=RetryPolicy(sleep=waits.append)
        )
        connector.count("Customer")
        with pytest.raises(RateLimitedError) as caught:
            connector.count("Customer")
    assert caught.value.retry_after == 60.0 and waits == []  # Intuit's advice, longer than max_wait


def test_the_client_limiter_never_has_more_than_its_limit_in_any_window_counted_from_answers():
    clock_start = time.monotonic()
    limiter = RateLimiter({"request": Rate(5, 0.3)}, max_in_flight=2)
    stamps: list[tuple[float, float]] = []
    lock = threading.Lock()

    def call() -> None:
        with limiter.slot("request"):
            sent = time.monotonic()
            time.sleep(0.01)  # the server counts the call somewhere in here
            done = time.monotonic()
        with lock:
            stamps.append((sent, done))

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stamps) == 20 and limiter.peak_in_flight <= 2
    for sent, _ in stamps:  # whatever instant the server counted each call, never 6 in 0.3 s
        in_window = [s for s, done in stamps if sent - 0.3 < done and s <= sent]
        assert len(in_window) <= 5
    assert time.monotonic() - clock_start >= 0.9  # 20 calls, 5 per 0.3 s


# -- Salesforce: the daily allowance -----------------------------------------------------------------
def sf_settings(sf: SalesforceSandbox, **overrides: Any) -> SalesforceSettings:
    values: dict[str, Any] = {
        "type": "salesforce",
        "username": sf.username,
        "password": sf.password,
        "security_token": sf.security_token,
        "login_url": sf.base_url,
        "ca_file": str(sf.cert_file),
    }
    values.update(overrides)
    return SalesforceSettings(**values)


def sf_session(sf: SalesforceSandbox) -> tuple[requests.Session, str]:
    connector = SalesforceConnector(sf_settings(sf))
    connector.connect()
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sf.cert_file)
    session.headers["Authorization"] = f"Bearer {connector.client.session_id}"
    return session, f"{sf.base_url}/services/data/v59.0"


@pytest.fixture
def limited_sf() -> Iterator[Callable[..., SalesforceSandbox]]:
    boxes: list[SalesforceSandbox] = []

    def make(**options: Any) -> SalesforceSandbox:
        boxes.append(SalesforceSandbox(limits="real", **options).start())
        return boxes[-1]

    yield make
    for box in boxes:
        box.stop()


def test_salesforce_counts_every_call_against_a_rolling_daily_allowance(limited_sf):
    clock = FakeClock()
    sf = limited_sf(daily_requests=3, limits_clock=clock)
    session, base = sf_session(sf)  # a login is not an API call
    answers = [session.get(f"{base}/query/", params={"q": "SELECT Id FROM Account"}) for _ in range(4)]
    clock.now += 86_400.0  # the first calls leave the 24 hours
    later = session.get(f"{base}/limits/")

    assert [a.status_code for a in answers] == [200, 200, 200, 403]
    assert [a.headers["Sforce-Limit-Info"] for a in answers] == [f"api-usage={n}/3" for n in (1, 2, 3, 4)]
    assert answers[3].json() == LIMIT_EXCEEDED
    assert later.status_code == 200 and later.json()["DailyApiRequests"] == {"Max": 3, "Remaining": 2}


def test_salesforce_limits_resource_has_the_real_shape_and_a_developer_orgs_allowance(limited_sf):
    sf = limited_sf()
    session, base = sf_session(sf)
    limits = session.get(f"{base}/limits/")
    assert limits.headers["Sforce-Limit-Info"] == "api-usage=1/15000"
    assert limits.json()["DailyApiRequests"] == {"Max": 15000, "Remaining": 14999}
    recorded = SF_FIXTURES / "simple-salesforce" / "limits_response.json"
    if recorded.exists():
        assert set(limits.json()) == set(json.loads(recorded.read_text(encoding="utf-8")))
        assert all(set(entry) == {"Max", "Remaining"} for entry in limits.json().values())


def test_salesforce_keeps_2000_records_a_page_and_200_a_collection(limited_sf):
    sf = limited_sf()
    sf.add_records("Account", [{"Name": f"A{n}"} for n in range(2001)])
    session, base = sf_session(sf)
    page = session.get(f"{base}/query/", params={"q": "SELECT Id FROM Account"}).json()
    records = [{"attributes": {"type": "Account"}, "Name": f"B{n}"} for n in range(201)]
    too_many = session.patch(f"{base}/composite/sobjects", json={"allOrNone": False, "records": records})
    assert len(page["records"]) == 2000 and page["done"] is False
    assert too_many.status_code == 400 and too_many.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_the_salesforce_connector_stops_at_its_reserve_with_a_clear_error(limited_sf):
    sf = limited_sf(daily_requests=20)
    connector = SalesforceConnector(
        sf_settings(sf, daily_api_reserve_percent=25), retry=RetryPolicy(sleep=lambda s: None)
    )
    pulled = 0
    with pytest.raises(ApiBudgetError) as caught:
        for _ in range(30):
            list(connector.pull("Account", ["Name"], None))
            pulled += 1

    assert isinstance(caught.value, FatalError)  # the stream stops and a person is told
    assert pulled == 15 and sf.api_usage == 15  # 5 of 20 left to the org's other integrations
    assert sf.calls_by_kind["query"] == 15  # the refused call was never sent
    assert "15 of 20" in str(caught.value) and "daily_api_reserve_percent" in str(caught.value)
    assert connector.api_budget.used == 15 and connector.api_budget.max == 20


def test_connectors_of_one_org_share_its_budget_across_threads(limited_sf):
    sf = limited_sf(daily_requests=40)
    settings = sf_settings(sf, daily_api_reserve_percent=50)
    refused: list[BaseException] = []

    def work() -> None:
        connector = SalesforceConnector(settings, retry=RetryPolicy(sleep=lambda s: None))
        try:
            for _ in range(20):
                list(connector.pull("Account", ["Name"], None))
        except ApiBudgetError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 4 and sf.api_usage <= 20


def test_the_connector_learns_the_allowance_from_every_answer():
    with SalesforceSandbox() as sf:  # the default sandbox: a million a day, never near the reserve
        connector = SalesforceConnector(sf_settings(sf))
        assert connector.api_budget.max is None  # nothing known before the first answer
        list(connector.pull("Account", ["Name"], None))
        list(connector.pull("Account", ["Name"], None))
    assert (connector.api_budget.used, connector.api_budget.max) == (2, 1_000_000)
    assert connector.api_budget.reserve == 100_000  # 10 % by default
