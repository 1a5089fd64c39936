"""The outbox queued in bulk: the same rows, keys and "an open row covers it" rule as one at a time."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sync_engine.outbox import Owed, enqueue, enqueue_many
from sync_engine.store.models import OutboxItem


def keys(session: Session) -> list[str]:
    return list(session.scalars(select(OutboxItem.idempotency_key).order_by(OutboxItem.id)))


def test_enqueue_many_queues_what_enqueue_would_in_the_order_given(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        enqueue(
            session, destination="qbo", entity="customer", canonical_id="cus_1", action="upsert", version="a"
        )
        sent = enqueue(
            session, destination="qbo", entity="customer", canonical_id="cus_2", action="upsert", version="a"
        )
        assert sent is not None
        sent.status = "sent"
    with session_factory.begin() as session:
        added = enqueue_many(
            session,
            [
                Owed("qbo", "customer", "cus_1", "upsert", "b"),  # an open row covers it already
                Owed("qbo", "customer", "cus_2", "upsert", "b"),  # its earlier row was sent: 2nd
                Owed("erp", "customer", "cus_2", "upsert", "b"),  # another destination: 1st
                Owed("qbo", "customer", "cus_3", "upsert", "b"),  # new
                Owed("qbo", "customer", "cus_3", "upsert", "c"),  # owed twice: queued once
            ],
        )
        assert [row.canonical_id for row in added] == ["cus_2", "cus_2", "cus_3"]
    with session_factory() as session:
        assert keys(session) == [
            "qbo:customer:cus_1:upsert:a:1",
            "qbo:customer:cus_2:upsert:a:1",
            "qbo:customer:cus_2:upsert:b:2",
            "erp:customer:cus_2:upsert:b:1",
            "qbo:customer:cus_3:upsert:b:1",
        ]


def test_enqueue_many_of_nothing_queues_nothing(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        assert enqueue_many(session, []) == []
        assert keys(session) == []
