"""`make crash-test`: kill `billsync sync` with SIGKILL at random moments of a big push, restart it,
and check that every invoice reached QuickBooks and the ERP exactly once and no outbox row was lost.

The sandboxes run in this process, so they (like the real services) outlive every kill.
Usage: python -m tests.crash.crash_test [--kills 20] [--accounts 2600] [--orders 5200] [--seed 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine, func, select

from connectors.nav.sandbox import NavSandbox
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.salesforce.sandbox import SalesforceSandbox
from sync_engine.demo import seed_salesforce, write_workdir
from sync_engine.store.models import Invoice, OutboxItem

BILLSYNC = str(Path(sys.executable).parent / "billsync")


def sync(config: Path, *steps: str) -> subprocess.Popen[bytes]:
    args = [BILLSYNC, "sync", "-c", str(config)]
    for step in steps:
        args += ["--step", step]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--accounts", type=int, default=2600)
    parser.add_argument("--orders", type=int, default=5200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="billsync-crash-"))
    with (
        SalesforceSandbox(cert_dir=workdir) as sf,
        QuickBooksSandbox(cert_dir=workdir) as qbo,
        NavSandbox(cert_dir=workdir) as erp,
    ):
        seed_salesforce(sf, accounts=args.accounts, orders=args.orders, today=dt.datetime.now(dt.UTC).date())
        config = write_workdir(workdir, sf, qbo, erp)
        started = time.monotonic()
        if sync(config, "pull", "bill").wait() != 0:
            print("crash-test: the pull/bill run failed", file=sys.stderr)
            return 1
        engine = create_engine(f"sqlite:///{workdir / 'billsync.db'}")
        with engine.connect() as db:
            invoices = int(db.scalar(select(func.count()).select_from(Invoice)) or 0)
        print(
            f"crash-test: {invoices} invoices to push ({time.monotonic() - started:.0f} s to pull and bill)"
        )
        if invoices < 2000:
            print("crash-test: fewer than 2,000 invoices; raise --accounts/--orders", file=sys.stderr)
            return 1
        kills = 0
        for attempt in range(args.kills):
            process = sync(config, "push")
            time.sleep(rng.uniform(1.5, 6.0))  # start-up takes about a second; then it is pushing
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait()
            print(
                f"crash-test: run {attempt + 1}: {'killed' if process.returncode == -9 else 'finished'}; "
                f"QBO holds {qbo.count('Invoice')} invoices, the ERP {erp.count('SalesInvoice')}"
            )
        final = sync(config, "push").wait()
        with engine.connect() as db:
            open_rows = int(
                db.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.status != "sent"))
                or 0
            )
        numbers = Counter(str(i["DocNumber"]) for i in qbo.entities("Invoice"))
        duplicates = sum(n - 1 for n in numbers.values() if n > 1)
        customers = Counter(str(c["DisplayName"]) for c in qbo.entities("Customer"))
        duplicate_customers = sum(n - 1 for n in customers.values() if n > 1)
        erp_numbers = Counter(str(i["External_Document_No"]) for i in erp.records("SalesInvoice"))
        erp_duplicates = sum(n - 1 for n in erp_numbers.values() if n > 1)
        ok = (
            final == 0
            and len(numbers) == invoices
            and duplicates == 0
            and duplicate_customers == 0
            and len(erp_numbers) == invoices
            and erp_duplicates == 0
            and open_rows == 0
        )
        print(
            f"crash-test: {kills} kills; invoices in billsync {invoices}, in QBO {sum(numbers.values())} "
            f"({duplicates} duplicates); in the ERP {sum(erp_numbers.values())} ({erp_duplicates} duplicates); "
            f"duplicate customers {duplicate_customers}; outbox rows not sent {open_rows}; "
            f"{'PASS' if ok else 'FAIL'} in {time.monotonic() - started:.0f} s"
        )
        engine.dispose()
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
