"""A small seeded company behind the Salesforce and QBO sandboxes, on each database backend."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connectors.nav.sandbox import NavSandbox
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.salesforce.sandbox import SalesforceSandbox
from sync_engine.demo import seed_salesforce, write_workdir
from sync_engine.runtime import Runtime
from sync_engine.settings import load_settings
from sync_engine.store.db import upgrade_database

TODAY = dt.date(2026, 11, 25)


@dataclass
class Company:
    sf: SalesforceSandbox
    qbo: QuickBooksSandbox
    erp: NavSandbox
    runtime: Runtime

    def fresh_runtime(self) -> Runtime:
        """A new process after a crash: same settings and database, nothing in memory."""
        self.runtime.close()
        self.runtime = Runtime(self.runtime.settings)
        return self.runtime

    def qbo_invoice_numbers(self) -> Counter[str]:
        return Counter(str(inv["DocNumber"]) for inv in self.qbo.entities("Invoice"))

    def erp_invoice_numbers(self) -> Counter[str]:
        return Counter(str(inv["External_Document_No"]) for inv in self.erp.records("SalesInvoice"))


@pytest.fixture
def company(db_url: str, tmp_path: Path) -> Iterator[Company]:
    with (
        SalesforceSandbox(cert_dir=tmp_path) as sf,
        QuickBooksSandbox(cert_dir=tmp_path) as qbo,
        NavSandbox(cert_dir=tmp_path) as erp,
    ):
        seed_salesforce(sf, accounts=40, orders=90, today=TODAY)
        settings = load_settings(write_workdir(tmp_path, sf, qbo, erp))
        settings.database_url = db_url
        upgrade_database(db_url)
        runtime = Runtime(settings)
        company = Company(sf, qbo, erp, runtime)
        yield company
        company.runtime.close()


def count(runtime: Runtime, model: type, *where: object) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)
