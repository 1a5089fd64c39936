"""The console's actions, one function each, called by the pages and the API alike.

Each returns a JSON-able dict or raises :class:`ActionError` with a message for the person who
asked; the caller wraps it in :func:`sync_engine.web.security.audited`, so every outcome is logged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sync_engine.push import push_destination
from sync_engine.runtime import Runtime
from sync_engine.support import LetterFilter, discard_letters, replay_letters, resync_customer


class ActionError(Exception):
    """The action cannot be done as asked (unknown record, refused by a business rule)."""

    def __init__(self, message: str, status_code: int = 409) -> None:
        super().__init__(message)
        self.status_code = status_code


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def replay(runtime: Runtime, who: str, ids: list[int]) -> dict[str, Any]:
    if not ids:
        raise ActionError("choose at least one dead letter", 400)
    result = replay_letters(runtime, LetterFilter(ids=ids, status="open"), who, _today())
    if not result.replayed:
        raise ActionError("none of these dead letters is open (replayed or discarded already?)", 409)
    return {
        "replayed": result.replayed,
        "resolved": result.resolved,
        "still_failing": result.still_failing,
        "by_stream": result.by_stream,
    }


def discard(runtime: Runtime, who: str, ids: list[int]) -> dict[str, Any]:
    if not ids:
        raise ActionError("choose at least one dead letter", 400)
    return {"discarded": discard_letters(runtime, LetterFilter(ids=ids, status="open"), who)}


def resync(runtime: Runtime, who: str, customer_id: str) -> dict[str, Any]:
    """Read the customer and what hangs off it again from the CRM, then push what changed."""
    from sync_engine.web.data import customer_external_id

    for stream in runtime.settings.streams:
        if stream.entity != "customer":
            continue
        external = customer_external_id(runtime, customer_id, stream.connection)
        if external is None:
            continue
        results = resync_customer(runtime, stream.connection, external, who)
        for destination in runtime.settings.destinations:
            push_destination(runtime, destination)
        return {
            "connection": stream.connection,
            "record": external,
            "streams": {
                r.stream: {"read": r.read, "written": r.written, "dead_letters": r.dead_lettered}
                for r in results
            },
        }
    raise ActionError(f"customer {customer_id} is bound to no CRM record that a stream reads", 404)


def void(runtime: Runtime, who: str, number: str, reason: str) -> dict[str, Any]:
    from sync_engine.voiding import VoidRefused, void_invoice

    if not reason.strip():
        raise ActionError("say why the invoice is voided", 400)
    try:
        result = void_invoice(runtime, number, reason=reason.strip(), requested_by=who)
    except VoidRefused as exc:
        raise ActionError(str(exc)) from None
    return {"number": result.number, "status": result.status, "voided_at": result.voided_at.isoformat()}


def credit_note(
    runtime: Runtime, who: str, number: str, reason: str, amounts: Mapping[int, Decimal] | None
) -> dict[str, Any]:
    from sync_engine.credit_notes import CreditNoteError, issue_credit_note

    if not reason.strip():
        raise ActionError("say why the credit note is issued", 400)
    try:
        return issue_credit_note(runtime, number, reason=reason.strip(), amounts=amounts, requested_by=who)
    except CreditNoteError as exc:
        raise ActionError(str(exc)) from None


def match_payment(runtime: Runtime, who: str, line_id: int, invoice_numbers: list[str]) -> dict[str, Any]:
    from sync_engine.payments import PaymentError
    from sync_engine.reconcile import MatchError, match_line

    numbers = [n.strip() for n in invoice_numbers if n.strip()]
    if not numbers:
        raise ActionError("name the invoice(s) this line pays", 400)
    try:
        payment = match_line(runtime, line_id, numbers, as_of=_today(), who=who)
    except (MatchError, PaymentError) as exc:
        raise ActionError(str(exc)) from None
    return {"line": line_id, "payment": payment, "invoices": numbers}


def ignore_payment(runtime: Runtime, who: str, line_id: int, note: str) -> dict[str, Any]:
    from sync_engine.reconcile import MatchError, ignore_line

    if not note.strip():
        raise ActionError("say why the line is ignored", 400)
    try:
        ignore_line(runtime, line_id, f"{note.strip()} ({who})")
    except MatchError as exc:
        raise ActionError(str(exc)) from None
    return {"line": line_id, "status": "ignored"}
