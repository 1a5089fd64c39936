"""Bindings: ``(system, entity, external id) <-> canonical id``, read in bulk and cached per run.

The pipeline asks for a page of ids at once (one query per page, not per record) and the mapping
engine resolves cross-references (an order's AccountId, an invoice's customer) through
:class:`BindingLookups`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync_engine.store.inlist import one_of
from sync_engine.store.models import Binding

#: Ids per ``IN (...)`` when priming lookups (well under SQLite's variable limit).
_PRIME_CHUNK = 500
ID_PREFIX = {"customer": "cus", "product": "prd", "price": "prc", "order": "ord", "order_line": "orl"}


def canonical_id_for(system: str, entity: str, external_id: str) -> str:
    """Deterministic canonical id: re-pulling a record after a crash finds the same id."""
    digest = hashlib.sha256(f"{system}\x1f{entity}\x1f{external_id}".encode()).hexdigest()[:24]
    return f"{ID_PREFIX.get(entity, entity[:3])}_{digest}"


def payload_hash(payload: Any) -> str:
    """Stable hash of a JSON-like payload (key order and Decimal/str spelling do not matter)."""
    return text_hash(canonical_json(payload))


def canonical_json(payload: Any) -> str:
    """The text :func:`payload_hash` hashes: sorted keys, no spaces, ASCII only."""
    return _CANONICAL_JSON.encode(payload)


def text_hash(text: str) -> str:
    """:func:`payload_hash` of the payload whose :func:`canonical_json` is ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()


# One encoder for every hash (json.dumps with options builds one per call); the text, and so every
# stored hash, is the same as json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def bindings_by_external(
    session: Session, system: str, entity: str, external_ids: Collection[str]
) -> dict[str, Binding]:
    if not external_ids:
        return {}
    rows = session.scalars(
        select(Binding).where(
            Binding.system == system,
            Binding.entity == entity,
            one_of(session, Binding.external_id, external_ids),
        )
    )
    return {b.external_id: b for b in rows}


def bindings_by_canonical(
    session: Session, system: str, entity: str, canonical_ids: Collection[str]
) -> dict[str, Binding]:
    """The bindings of ``canonical_ids`` in ``system``, by canonical id.

    Looked up by canonical id alone (its own index) and narrowed here: with ``system`` and ``entity``
    in the query, PostgreSQL planning from statistics taken before a destination had any bindings
    (a first push; autovacuum off or behind) scanned all of that destination's bindings through the
    ``(system, entity, external_id)`` index for every batch, so a push slowed with the square of its
    size. A canonical id has one binding per system, so the few extra rows cost nothing."""
    if not canonical_ids:
        return {}
    rows = session.scalars(select(Binding).where(one_of(session, Binding.canonical_id, canonical_ids)))
    return {b.canonical_id: b for b in rows if b.system == system and b.entity == entity}


def bind(
    session: Session,
    *,
    system: str,
    entity: str,
    external_id: str,
    canonical_id: str,
    remote_version: str | None = None,
    hash_: str | None = None,
    existing: Binding | None = None,
    looked_up: bool = False,
) -> Binding:
    """Create or update the binding of ``canonical_id`` in ``system``.

    ``looked_up``: the caller already looked for the binding (in bulk, for a page) and ``existing`` is
    what it found, so None means there is none and no query is made."""
    binding = existing
    if binding is None and not looked_up:
        binding = session.scalars(
            select(Binding).where(
                Binding.system == system, Binding.entity == entity, Binding.canonical_id == canonical_id
            )
        ).first()
    if binding is None:
        binding = Binding(system=system, entity=entity, canonical_id=canonical_id, external_id=external_id)
        session.add(binding)
    binding.external_id = external_id
    binding.remote_version = remote_version
    binding.payload_hash = hash_
    return binding


class BindingLookups:
    """The mapping engine's :class:`~mappings.engine.Lookups`, backed by the bindings table.

    ``aliases`` maps a spec's ``system`` (e.g. ``quickbooks``) to the connection whose bindings
    hold the ids (e.g. ``books``), so one spec serves every connection of that kind.
    """

    def __init__(
        self, session: Session, aliases: dict[str, str] | None = None, fallbacks: dict[str, str] | None = None
    ) -> None:
        self.session = session
        self.aliases = aliases or {}
        #: Where else to look when the aliased system has no binding: a destination named ``crm-status``
        #: writing to the ``salesforce`` connection finds the Accounts that connection's pulls bound.
        self.fallbacks = fallbacks or {}
        self._cache: dict[tuple[str, str, str, bool], str] = {}

    def prime(self, system: str, entity: str, values: Collection[str], *, inbound: bool) -> None:
        """Load many bindings in one query per 500 ids before mapping a page of records (plain
        columns, no ORM objects: only the two ids are needed)."""
        system = self.aliases.get(system, system)
        wanted = sorted(values)
        by, to = (
            (Binding.external_id, Binding.canonical_id)
            if inbound
            else (Binding.canonical_id, Binding.external_id)
        )
        connection = self.session.connection()
        for start in range(0, len(wanted), _PRIME_CHUNK):
            rows = connection.execute(
                select(by, to).where(
                    Binding.system == system,
                    Binding.entity == entity,
                    one_of(self.session, by, wanted[start : start + _PRIME_CHUNK]),
                )
            )
            for key, value in rows.all():
                self._cache[(system, entity, key, inbound)] = value

    def resolve(self, *, system: str, entity: str, value: str, inbound: bool) -> str | None:
        found = self._resolve(self.aliases.get(system, system), entity, value, inbound)
        fallback = self.fallbacks.get(system)
        if found is None and fallback is not None:
            found = self._resolve(fallback, entity, value, inbound)
        return found

    def _resolve(self, system: str, entity: str, value: str, inbound: bool) -> str | None:
        key = (system, entity, value, inbound)
        if key in self._cache:
            return self._cache[key]
        found = (
            bindings_by_external(self.session, system, entity, [value])
            if inbound
            else bindings_by_canonical(self.session, system, entity, [value])
        ).get(value)
        if found is None:
            return None  # not cached: the binding may appear later in this run
        result = found.canonical_id if inbound else found.external_id
        self._cache[key] = result
        return result

    def remember(self, system: str, entity: str, external_id: str, canonical_id: str) -> None:
        system = self.aliases.get(system, system)
        self._cache[(system, entity, external_id, True)] = canonical_id
        self._cache[(system, entity, canonical_id, False)] = external_id
