"""The daemon as an operator runs it: a real process, stopped with SIGTERM in the middle of a run."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, func, select

from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.salesforce.sandbox import SalesforceSandbox
from sync_engine.demo import seed_salesforce, write_workdir
from sync_engine.store.models import Invoice, OutboxItem, SyncRun

pytestmark = pytest.mark.integration
BILLSYNC = Path(sys.executable).parent / "billsync"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigterm_mid_run_exits_0_and_the_next_start_resumes_without_duplicates(tmp_path: Path) -> None:
    with SalesforceSandbox(cert_dir=tmp_path) as sf, QuickBooksSandbox(cert_dir=tmp_path) as qbo:
        seed_salesforce(sf, accounts=300, orders=700, today=dt.datetime.now(dt.UTC).date())
        config = write_workdir(tmp_path, sf, qbo)
        data = yaml.safe_load(config.read_text())
        data["schedules"] = [{"name": "every-hour", "job": "cycle", "every_minutes": 60}]
        config.write_text(yaml.safe_dump(data))
        engine = create_engine(data["database_url"])

        def daemon() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [str(BILLSYNC), "daemon", "-c", str(config), "--run-now"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

        first = daemon()
        batch = "POST /v3/company/{realm}/batch"
        wait_for(lambda: qbo.calls_by_route[batch] >= 3, 120, "the push to start")
        first.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert first.wait(timeout=30) == 0, first.stderr.read().decode() if first.stderr else ""
        assert time.monotonic() - started < 30
        with engine.connect() as db:
            assert (
                db.scalar(select(func.count()).select_from(SyncRun).where(SyncRun.status == "stopped")) >= 1
            )

        second = daemon()

        def push_done() -> bool:
            with engine.connect() as db:
                done = db.scalar(
                    select(func.count())
                    .select_from(SyncRun)
                    .where(SyncRun.kind == "push", SyncRun.status.in_(("ok", "partial")))
                )
                return (done or 0) >= len(data["destinations"])  # every destination pushed

        wait_for(push_done, 120, "the resumed run to finish its push")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        with engine.connect() as db:
            invoices = db.scalar(select(func.count()).select_from(Invoice))
            open_rows = db.scalar(
                select(func.count()).select_from(OutboxItem).where(OutboxItem.status != "sent")
            )
        numbers = Counter(str(i["DocNumber"]) for i in qbo.entities("Invoice"))
        assert invoices and sum(numbers.values()) == invoices and max(numbers.values()) == 1
        assert open_rows == 0
        engine.dispose()
