"""schemathesis against the API's own OpenAPI document: no request, however odd, gets a 5xx.

Why: the API is what scripts and other systems call, and they send what the document allows, not
what the console's forms send. Every operation is generated from ``GET /api/openapi.json`` (as an
admin, so every route, the POSTs included, runs past authorisation into the real code) and called
in-process through ASGI; any server error is a bug in ``sync_engine/web``. The number of examples is
fixed and ``HYPOTHESIS_PROFILE=ci`` (set by ``.ci/run``) derandomises them, so CI is repeatable and
takes about 25 s per database backend; a developer's run explores new examples each time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.errors import InvalidSchema
from schemathesis.core.result import Err, Ok
from schemathesis.generation import GenerationMode
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.schemas import OpenApiSchema

from sync_engine.reports import REPORT_NAMES
from sync_engine.runtime import Runtime
from sync_engine.store.models import BankStatement, DeadLetter, OutboxItem, StatementLine, SyncRun
from sync_engine.users import add_user, create_token
from sync_engine.web import create_app
from tests.sync_engine.books import add_rows, customer_row, invoice_row, make_runtime

TODAY = dt.datetime.now(dt.UTC).date()
#: Per operation: about 25 operations, so about 2,000 requests per database backend (~25 s).
EXAMPLES = 80


@dataclass
class FuzzedApi:
    runtime: Runtime
    schema: OpenApiSchema
    headers: dict[str, str]


@pytest.fixture
def fuzzed_api(db_url: str, tmp_path: Path) -> Iterator[FuzzedApi]:
    """A small store (a customer, two invoices, a run, failed pushes and their dead letters,
    unmatched statement lines) and the API's document as an admin reads it."""
    runtime = make_runtime(db_url, tmp_path)
    with runtime.transaction() as session:
        add_user(session, "admin", "a long enough password", "admin")
        token = create_token(session, "admin", "fuzz")
    add_rows(
        runtime,
        customer_row("cus_1", name="Acme GmbH", currency="EUR", email="ap@acme.example"),
        invoice_row(
            "INV-000001", "119.00", customer_id="cus_1", due=TODAY + dt.timedelta(days=10), currency="EUR"
        ),
        invoice_row(
            "INV-000002", "50.00", customer_id="cus_1", due=TODAY - dt.timedelta(days=10), currency="EUR"
        ),
        OutboxItem(
            destination="quickbooks",
            entity="invoice",
            canonical_id="inv_INV-000001",
            idempotency_key="qbo-invoice-1",
            status="failed",
            last_error="6000 business validation",
        ),
        SyncRun(
            kind="push", stream="push:quickbooks", status="partial", counts={"api_calls": {"quickbooks": 3}}
        ),
        BankStatement(
            sha256="0" * 64, filename="camt.xml", format="camt.053", account="DE02120300000000202051"
        ),
    )
    add_rows(  # after the run and the statement they refer to
        runtime,
        *(
            DeadLetter(
                stream="push:quickbooks",
                system="quickbooks",
                entity="invoice",
                external_id="inv_INV-000001",
                payload={"number": "INV-000001"},
                error="6000: a business validation error has occurred",
                error_type="RecordError",
                run_id=1,
            )
            for _ in range(3)
        ),
        *(
            StatementLine(
                statement_id=1,
                fingerprint=f"line-{n}",
                booking_date=TODAY,
                amount=Decimal(amount),
                currency="EUR",
                counterparty_name="Acme GmbH",
                remittance_info="thanks",
            )
            for n, amount in enumerate(("50.00", "119.00", "7.00"))
        ),
    )
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", create_app(runtime), headers=headers)
    yield FuzzedApi(runtime, schema, headers)
    runtime.close()


#: Path parameters that name seeded records: random ones almost never do, and then only the "not
#: found" branch of an operation would run.
KNOWN: dict[str, list[object]] = {
    "number": ["INV-000001", "INV-000002"],
    "customer_id": ["cus_1"],
    "letter_id": [1, 2, 3],
    "run_id": [1],
    "line_id": [1, 2, 3],
    "name": list(REPORT_NAMES),
}

FINAL = ("/discard", "/void", "/ignore")


def _operation_test(
    case_strategy: st.SearchStrategy[schemathesis.Case[Any]], headers: dict[str, str]
) -> Callable[[], None]:
    @given(case=case_strategy, data=st.data())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def run(case: schemathesis.Case[Any], data: st.DataObject) -> None:
        for name in list(case.path_parameters or {}):
            if name in KNOWN and data.draw(st.booleans(), label=f"known {name}"):
                case.path_parameters[name] = data.draw(st.sampled_from(KNOWN[name]), label=name)
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    return run


def _operation(
    result: Ok[APIOperation[Any, Any, Any, Any]] | Err[InvalidSchema],
) -> APIOperation[Any, Any, Any, Any]:
    assert isinstance(result, Ok), f"the OpenAPI document has an operation schemathesis cannot read: {result}"
    return result.ok()


def test_no_request_the_document_allows_gets_a_server_error(fuzzed_api: FuzzedApi) -> None:
    """Valid and invalid requests (both of schemathesis's generation modes) for every operation;
    every operation is fuzzed even when one fails, and the failures are reported together."""
    failures: dict[str, str] = {}
    operations = 0
    for operation in sorted(
        (_operation(result) for result in fuzzed_api.schema.get_all_operations()),
        key=lambda op: op.path.endswith(FINAL),  # what closes a record goes last, after what uses it
    ):
        operations += 1
        strategy = st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )
        try:
            _operation_test(strategy, fuzzed_api.headers)()
        except Exception as exc:  # collected and reported below
            failures[operation.label] = str(exc)[:3000]
    assert operations >= 20, "the OpenAPI document lost its operations"
    assert not failures, "\n\n".join(f"{label}:\n{error}" for label, error in failures.items())


def test_a_nul_character_anywhere_in_a_request_is_a_400_not_a_server_error(fuzzed_api: FuzzedApi) -> None:
    """What the fuzzer first found on PostgreSQL (whose text cannot hold NUL): a NUL in a path, a
    query, a JSON or a form body reached the database and ended in a 500."""
    from fastapi.testclient import TestClient

    client = TestClient(create_app(fuzzed_api.runtime), raise_server_exceptions=False)
    headers = fuzzed_api.headers
    answers = [
        client.get("/api/customers", params={"q": "a\x00b"}, headers=headers),
        client.get("/api/invoices/INV%00", headers=headers),
        client.post("/api/invoices/INV-000001/void", json={"reason": "typo\x00"}, headers=headers),
        client.post("/api/statement-lines/1/match", json={"invoices": ["INV-000002\x00"]}, headers=headers),
        client.post("/login", data={"username": "admin\x00", "password": "a long enough password"}),
    ]
    assert [a.status_code for a in answers] == [400] * len(answers)
    assert "NUL" in answers[0].json()["error"] and "NUL" in answers[-1].text
    # nothing was changed, and ordinary requests still work
    assert client.get("/api/invoices/INV-000001", headers=headers).json()["status"] == "open"
    assert client.get("/api/customers", params={"q": "acme"}, headers=headers).json()[0]["id"] == "cus_1"
