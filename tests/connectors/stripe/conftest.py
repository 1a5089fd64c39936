"""Shared fixtures: Stripe's fixture payloads (in-repo copies) and a webhook receiver over HTTPS."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connectors.sandbox import Request, Response, Sandbox
from connectors.stripe.webhook import VerifiedEvent

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stripe"
SECRET = "whsec_test_secret_for_fixtures_only"
TS = 1764000000  # the signature timestamp of every vector


def event_bytes(name: str) -> bytes:
    """The exact bytes of ``derived-events/<name>.json`` (what the vectors sign)."""
    return (FIXTURES / "derived-events" / f"{name}.json").read_bytes()


def vectors() -> list[dict[str, Any]]:
    return list(json.loads((FIXTURES / "derived-events" / "signature_vectors.json").read_text()))


def resource(name: str) -> dict[str, Any]:
    """A resource of Stripe's fixtures3 (a fresh copy each call)."""
    data = json.loads((FIXTURES / "openapi" / "fixtures3-subset.json").read_text())
    return dict(data["resources"][name])


def event_of(
    type_: str, obj: dict[str, Any], *, created: int = TS, event_id: str = "evt_test"
) -> VerifiedEvent:
    """A VerifiedEvent as verify_event would build it (for translation tests)."""
    return VerifiedEvent(
        id=event_id,
        type=type_,
        created=created,
        api_version="2026-10-28.endive",
        livemode=False,
        object=obj,
        signature_timestamp=created,
        raw_signature=f"t={created},v1=00",
    )


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """What the webhook endpoint got; ``status`` is what it answers next."""

    sandbox: Sandbox
    received: list[Received] = field(default_factory=list)
    status: int = 200
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return self.sandbox.base_url + "/webhooks/stripe"

    @property
    def cert(self) -> str:
        return str(self.sandbox.cert_file)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTPS endpoint on 127.0.0.1 recording every webhook POST (a stand-in for the FastAPI route)."""
    server = Sandbox()
    state = Receiver(server)

    def record(request: Request) -> Response:
        state.received.append(Received(request.headers, request.body))
        state.arrived.set()
        return Response(state.status, {"received": True})

    server.route("POST", r"/webhooks/stripe", record, faults=False)
    with server:
        yield state
