"""``demo_workdir``: one completed ``billsync demo`` run per test session, shared by every test that
reads the demo data (the analytics reconciliation, the browser tests).

Why a session fixture: a demo run takes about three to four minutes; building it once keeps the
suite's cost at one run however many tests look at the result. Tests must only read it (reports,
pages, API calls) or change it in ways the others can live with; a test that needs pristine data
builds its own.

The workdir holds ``billsync.yaml`` and ``billsync.db`` (and the demo's summary, as printed by
``billsync demo --json``, in ``demo-summary.json``). Set ``BILLSYNC_DEMO_WORKDIR`` to a completed
demo workdir to reuse it instead of running the demo (handy while developing; CI leaves it unset).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BILLSYNC = Path(sys.executable).parent / "billsync"
REUSE_ENV = "BILLSYNC_DEMO_WORKDIR"


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Path of a completed demo workdir (``billsync.yaml``, ``billsync.db``)."""
    reuse = os.environ.get(REUSE_ENV)
    if reuse:
        workdir = Path(reuse).resolve()
        assert (workdir / "billsync.yaml").exists() and (workdir / "billsync.db").exists(), (
            f"{REUSE_ENV}={reuse} is not a completed demo workdir"
        )
        return workdir
    workdir = tmp_path_factory.mktemp("demo")
    started = time.monotonic()
    done = subprocess.run(
        [str(BILLSYNC), "demo", "--json", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["_fixture_seconds"] = round(time.monotonic() - started, 1)
    (workdir / "demo-summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return workdir
