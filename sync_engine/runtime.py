"""The composition root of one process: settings, database, compiled specs and connectors.

Everything that is expensive to build (engine, zeep/requests clients, compiled specs) is built
once here and handed to the pipeline steps, which stay plain functions of ``(runtime, ...)``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from billing.catalog import Catalog
from connectors.nav.client import NavConnector
from connectors.nav.settings import NavSettings
from connectors.quickbooks.client import QuickBooksConnector
from connectors.quickbooks.settings import QuickBooksSettings
from connectors.retry import RetryPolicy
from connectors.salesforce.client import SalesforceConnector
from connectors.salesforce.settings import SalesforceSettings
from mappings.spec import MappingSpec, load_spec
from sync_engine.destinations import Destination, NavDestination, QuickBooksDestination, SalesforceDestination
from sync_engine.schemas import schema_for
from sync_engine.settings import Settings
from sync_engine.store.db import make_engine, session_factory
from sync_engine.store.tokens import DbTokenStore


class StopRequested(Exception):
    """A stop was asked for (SIGTERM): the current step ends at its next checkpoint, work committed."""


class Runtime:
    def __init__(self, settings: Settings, *, retry: RetryPolicy | None = None) -> None:
        """``retry``: the in-call retry policy of every connector (their defaults when None)."""
        self.settings = settings
        self.retry = retry
        self.stop_event = threading.Event()
        self.engine = make_engine(settings.database_url)
        self.sessions = session_factory(self.engine)
        self._specs: dict[str, MappingSpec] = {}
        # the vendor clients are not thread-safe: each worker thread gets its own connectors
        self._local = threading.local()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._catalog: Catalog | None = None
        if settings.executor == "procrastinate":  # outbox rows enqueue their pushes (same transaction)
            from sync_engine.executors.distributed import install_outbox_hook

            install_outbox_hook(self)

    def checkpoint(self) -> None:
        """Called between units of work (pages, batches, invoices); raises once a stop is requested."""
        if self.stop_event.is_set():
            raise StopRequested("stop requested; the work done so far is committed")

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back on any exception."""
        with self.sessions() as session, session.begin():
            yield session

    def spec(self, ref: str) -> MappingSpec:
        if ref not in self._specs:
            self._specs[ref] = load_spec(self.settings.resolve_spec(ref), schema_for)
        return self._specs[ref]

    def catalog(self) -> Catalog:
        if self._catalog is None:
            path = self.settings.catalog
            path = path if path.is_absolute() else self.settings.base_dir / path
            self._catalog = Catalog.from_dict(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
        return self._catalog

    @property
    def _connectors(self) -> dict[str, Any]:
        connectors: dict[str, Any] | None = getattr(self._local, "connectors", None)
        if connectors is None:
            connectors = self._local.connectors = {}
        return connectors

    def lock(self, name: str) -> threading.Lock:
        """The lock of one stream / destination / the billing run: one run of each at a time."""
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    def salesforce(self, name: str) -> SalesforceConnector:
        if name not in self._connectors:
            settings = self.settings.connections[name]
            assert isinstance(settings, SalesforceSettings), f"connection {name} is not Salesforce"
            self._connectors[name] = SalesforceConnector(settings, retry=self.retry)
        connector: SalesforceConnector = self._connectors[name]
        return connector

    def quickbooks(self, name: str) -> QuickBooksConnector:
        if name not in self._connectors:
            settings = self.settings.connections[name]
            assert isinstance(settings, QuickBooksSettings), f"connection {name} is not QuickBooks Online"
            self._connectors[name] = QuickBooksConnector(
                settings, DbTokenStore(self.sessions, name), retry=self.retry
            )
        connector: QuickBooksConnector = self._connectors[name]
        return connector

    def nav(self, name: str) -> NavConnector:
        if name not in self._connectors:
            settings = self.settings.connections[name]
            assert isinstance(settings, NavSettings), f"connection {name} is not a NAV / Business Central one"
            self._connectors[name] = NavConnector(settings, retry=self.retry)
        connector: NavConnector = self._connectors[name]
        return connector

    def destination(self, connection: str) -> Destination:
        """The writer for a destination's connection, whatever system it is."""
        settings = self.settings.connections[connection]
        if isinstance(settings, NavSettings):
            return NavDestination(self.nav(connection))
        if isinstance(settings, SalesforceSettings):
            return SalesforceDestination(self.salesforce(connection))
        return QuickBooksDestination(self.quickbooks(connection))

    def close(self) -> None:
        self.engine.dispose()
