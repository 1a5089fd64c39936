"""Gapless invoice numbers: consecutive, per series, and never burnt by a rolled-back finalisation."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.orm import Session, sessionmaker

from sync_engine.store.models import NumberSequence
from sync_engine.store.sequences import next_number


def test_numbers_are_consecutive_per_series(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        taken = [next_number(session, "INV"), next_number(session, "INV"), next_number(session, "CN")]
    with session_factory.begin() as session:
        taken.append(next_number(session, "INV"))

    assert taken == [1, 2, 1, 3]


def test_a_block_of_numbers_is_taken_in_one_go_and_the_next_follows_it(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        assert next_number(session, "INV", 100) == 1  # a new series: 1..100
        assert next_number(session, "INV", 3) == 101  # 101..103
    with session_factory.begin() as session:
        assert next_number(session, "INV") == 104
    with session_factory() as session:
        assert next_number(session, "INV", 50) == 105
        session.rollback()  # the chunk failed: none of its numbers is spent
    with session_factory.begin() as session:
        assert next_number(session, "INV") == 105
        with pytest.raises(ValueError):
            next_number(session, "INV", 0)


def test_a_rolled_back_finalisation_leaves_no_gap(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        assert next_number(session, "INV") == 1
    with session_factory() as session:
        assert next_number(session, "INV") == 2
        session.rollback()  # e.g. the invoice failed validation after it got its number

    with session_factory.begin() as session:
        assert next_number(session, "INV") == 2
        sequence = session.get(NumberSequence, "INV")
        assert sequence is not None and sequence.next_value == 3


def test_concurrent_finalisations_get_distinct_consecutive_numbers(
    session_factory: sessionmaker[Session],
) -> None:
    start = threading.Barrier(4)

    def finalise_five(_: int) -> list[int]:
        start.wait()  # all threads race for the first number of a series that does not exist yet
        numbers = []
        for _ in range(5):
            with session_factory.begin() as session:
                numbers.append(next_number(session, "INV"))
        return numbers

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(finalise_five, range(4)))

    assert sorted(n for numbers in results for n in numbers) == list(range(1, 21))
    assert all(numbers == sorted(numbers) for numbers in results)


def test_a_second_finaliser_waits_and_reuses_a_number_given_back(
    session_factory: sessionmaker[Session],
) -> None:
    first = session_factory()
    assert next_number(first, "INV") == 1  # not committed yet
    got: list[int] = []
    taken = threading.Event()

    def second() -> None:
        with session_factory.begin() as session:
            got.append(next_number(session, "INV"))
        taken.set()

    worker = threading.Thread(target=second)
    worker.start()
    try:
        assert not taken.wait(0.3), "the second finaliser must wait for the first to end"
        first.rollback()
        assert taken.wait(10)
    finally:
        first.close()
        worker.join(10)

    assert got == [1]
