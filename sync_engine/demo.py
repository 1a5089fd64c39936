"""``billsync demo``: a whole company synced end to end against the local sandboxes.

Starts the Salesforce and QuickBooks Online sandboxes on loopback HTTPS, seeds a demo company, writes
a working directory (``billsync.yaml``, secrets in files, the catalog, an SQLite database), runs
pull -> bill -> push through the real client libraries, and reports what reached QuickBooks, counted
through the sandbox's own API. The sandboxes' state is saved in the working directory, so a second
run with ``--workdir`` continues the same company: it must create no invoice and push nothing new.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets as secret_tokens
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from connectors.nav.sandbox import NavSandbox
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.retry import RetryPolicy
from connectors.salesforce.sandbox import SalesforceSandbox
from connectors.stripe.sandbox import StripeSandbox
from sync_engine.cycle import CycleResult, Progress, run_cycle
from sync_engine.demo_data import build_demo_company, resolve_placeholders
from sync_engine.demo_delivery import issue_demo_credit_notes, refuse_undeliverable, summarise_delivery
from sync_engine.demo_payments import (
    DEMO_BANK_IBAN,
    LATER_DAYS,
    SEPA_CREDITOR_ID,
    WebhookServer,
    payment_profile,
    run_payments_phase,
    summarise_payments,
)
from sync_engine.runtime import Runtime
from sync_engine.settings import load_settings
from sync_engine.smtp_sink import SmtpSink
from sync_engine.store.db import upgrade_database
from sync_engine.store.models import DeadLetter

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"
SF_STATE, QBO_STATE, ERP_STATE = "salesforce.json", "quickbooks.json", "erp.json"
FAULT_DELAY, FAULT_TIMEOUT = 2.0, 1.0  # an injected stall lasts longer than the clients wait
MAX_DEMO_RUNS = 5


def seed_salesforce(sandbox: SalesforceSandbox, *, accounts: int, orders: int, today: dt.date) -> int:
    """Load the demo company; returns how many accounts are bad on purpose."""
    company = build_demo_company(accounts=accounts, orders=orders, today=today)
    profiles = random.Random(23)  # its own sequence: the company itself stays the same
    for n, account in enumerate(company.records["Account"][:accounts]):
        account.update(payment_profile(n, str(account["CurrencyIsoCode"]), str(account["Name"]), profiles))
    ids: dict[str, list[str]] = {}
    for sobject, records in company.records.items():
        ids[sobject] = sandbox.add_records(sobject, [resolve_placeholders(r, ids) for r in records])
    return company.bad_accounts


def _write_secret(path: Path, value: str) -> str:
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return str(path.relative_to(path.parent.parent))


#: The demo's seller: a German company (its bank account and SEPA creditor id are German).
DEMO_SELLER: dict[str, Any] = {
    "name": "Demo Seller GmbH",
    "address": ["Friedrichstraße 123", "10117 Berlin", "Germany"],
    "street": "Friedrichstraße 123",
    "city": "Berlin",
    "postal_code": "10117",
    "country": "DE",
    "vat_id": "DE123456789",
    "legal_id": "HRB 123456 B",
    "email": "billing@demo-seller.example.com",
    "phone": "+49 30 1234567",
    "contact_name": "Accounts Receivable",
    "electronic_address": "4000001000005",  # a GLN (EAS scheme 0088)
    "electronic_address_scheme": "0088",
}


def write_workdir(
    workdir: Path,
    sf: SalesforceSandbox,
    qbo: QuickBooksSandbox,
    nav: NavSandbox | None = None,
    *,
    timeout_seconds: float | None = None,
    stripe_secret: str | None = None,
    smtp_port: int | None = None,
    einvoice_folder: bool = False,
) -> Path:
    """``billsync.yaml`` pointing at the running sandboxes; secrets live in ``secrets/``, not in YAML."""
    secrets = workdir / "secrets"
    secrets.mkdir(exist_ok=True)
    catalog = workdir / "catalog.yaml"
    if not catalog.exists():
        shutil.copy(REPO_CONFIG / "catalog.yaml", catalog)
    config: dict[str, Any] = {
        "version": 1,
        "database_url": f"sqlite:///{workdir / 'billsync.db'}",
        "catalog": "catalog.yaml",
        "connections": {
            "salesforce": {
                "type": "salesforce",
                "username": sf.username,
                "password_file": _write_secret(secrets / "salesforce_password", sf.password),
                "security_token_file": _write_secret(secrets / "salesforce_token", sf.security_token),
                "login_url": sf.base_url,
                "ca_file": str(sf.cert_file),
            },
            "quickbooks": {
                "type": "quickbooks",
                "company_id": qbo.realm_id,
                "client_id": qbo.client_id,
                "client_secret_file": _write_secret(secrets / "quickbooks_client_secret", qbo.client_secret),
                "refresh_token_file": _write_secret(
                    secrets / "quickbooks_refresh_token", qbo.initial_refresh_token
                ),
                "environment": "sandbox",
                "api_url": qbo.base_url,
                "token_url": qbo.token_url,
                "ca_file": str(qbo.cert_file),
                # client-side pacing as the sandbox throttles: none, or QBO's real limits
                **qbo.client_limits(),
            },
        },
        "streams": [
            {
                "name": f"sf-{obj.lower()}",
                "connection": "salesforce",
                "object": obj,
                "entity": entity,
                "mapping": f"builtin:salesforce/{obj.lower()}.in",
            }
            for obj, entity in (
                ("Account", "customer"),
                ("Product2", "product"),
                ("PricebookEntry", "price"),
                ("Order", "order"),
                ("OrderItem", "order_line"),
            )
        ],
        "destinations": [
            {
                "name": "quickbooks",
                "connection": "quickbooks",
                "mappings": {
                    "customer": "builtin:quickbooks/customer.out",
                    "product": "builtin:quickbooks/item.out",
                    "invoice": "builtin:quickbooks/invoice.out",
                },
            }
        ],
        "billing": {"series": "INV", "number_prefix": "INV-", "number_width": 6, "payment_terms_days": 30},
    }
    # invoice status back to the CRM: a Billsync_Invoice__c per invoice, upserted by its number; and
    # each customer's balance on their Account
    config["destinations"].append(
        {
            "name": "crm-status",
            "connection": "salesforce",
            "mappings": {
                "invoice_status": "builtin:salesforce/invoice_status.out",
                "customer_balance": "builtin:salesforce/account_balance.out",
                "order_balance": "builtin:salesforce/order_balance.out",
            },
        }
    )
    # who issues the invoices: printed on the PDF, and the seller party of the e-invoices
    config["seller"] = DEMO_SELLER
    if einvoice_folder:  # every invoice also as a validated e-invoice file in each format
        config["einvoice"] = {
            "folder": "einvoices",
            "folder_formats": ["ubl", "peppol", "xrechnung", "cii", "facturx"],
            "untaxed_category": "O",
            "exemption_reason": "Not subject to VAT (the demo catalog has no taxes)",
        }
    # payments made outside QuickBooks (cards, transfers) go to QuickBooks, applied to their invoices
    config["destinations"][0]["mappings"]["payment"] = "builtin:quickbooks/payment.out"
    # credit notes become CreditMemos, set against their invoices by zero-total payments
    config["destinations"][0]["mappings"]["credit_note"] = "builtin:quickbooks/credit_memo.out"
    config["destinations"][0]["mappings"]["credit_application"] = "builtin:quickbooks/credit_application.out"
    # a voided invoice is voided in QuickBooks too (after it is there: its number stays visible)
    config["destinations"][0]["mappings"]["invoice_void"] = "builtin:quickbooks/invoice_void.out"
    config["payments"] = {
        "quickbooks": "quickbooks",
        "bank_account": {"name": "Demo Bank", "iban": DEMO_BANK_IBAN, "currency": "EUR"},
        "sepa": {"creditor_id": SEPA_CREDITOR_ID},
    }
    if stripe_secret is not None:
        config["connections"]["stripe"] = {
            "type": "stripe",
            "webhook_secret_file": _write_secret(secrets / "stripe_webhook_secret", stripe_secret),
        }
        config["payments"]["stripe"] = "stripe"
    if smtp_port is not None:  # reminders go to the local SMTP sink
        config["mail"] = {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "from_address": "billing@demo-seller.example.com",
            "reply_to": "accounts@demo-seller.example.com",
        }
    if nav is not None:
        config["connections"]["erp"] = {
            "type": "nav",
            "base_url": f"{nav.base_url}/{nav.instance}/WS/",
            "company": nav.company,
            "username": nav.username,
            "password_file": _write_secret(secrets / "erp_password", nav.password),
            "ca_file": str(nav.cert_file) if nav.cert_file else None,
            "wsdl_cache_dir": str(workdir / "wsdl-cache"),
        }
        config["destinations"].append(
            {
                "name": "erp",
                "connection": "erp",
                "mappings": {
                    "customer": "builtin:nav/customer.out",
                    "invoice": "builtin:nav/invoice.out",
                    "invoice_status": "builtin:nav/payment_status.out",
                },
            }
        )
    if timeout_seconds is not None:  # shorter than the sandboxes' injected stalls, so they time out
        for connection in config["connections"].values():
            connection["timeout_seconds"] = timeout_seconds
            if connection["type"] == "nav":
                connection["operation_timeout_seconds"] = timeout_seconds
    path = workdir / "billsync.yaml"
    header = "# Written by `billsync demo`; the sandboxes' addresses change on every run.\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def count_invoices_in_erp(runtime: Runtime, connection: str) -> tuple[int, int]:
    """(sales invoices, duplicated billsync numbers), read back through the ERP's SOAP API."""
    connector = runtime.nav(connection)
    numbers = Counter(
        str(inv.get("External_Document_No")) for inv in connector.read_multiple("SalesInvoice", set_size=500)
    )
    total = sum(numbers.values())
    return total, total - len(numbers)


def count_statuses_in_crm(runtime: Runtime, connection: str) -> tuple[int, int]:
    """(Billsync_Invoice__c records, duplicated invoice numbers), read back through the REST API."""
    numbers: Counter[str] = Counter()
    for page in runtime.salesforce(connection).pull_pages("Billsync_Invoice__c", ["Invoice_Number__c"], None):
        numbers.update(str(r.get("Invoice_Number__c")) for r in page)
    total = sum(numbers.values())
    return total, total - len(numbers)


def count_invoices_in_quickbooks(runtime: Runtime, connection: str) -> tuple[int, int]:
    """(invoices, duplicated DocNumbers), read back through the QBO API like an auditor would."""
    connector = runtime.quickbooks(connection)
    numbers = Counter(str(inv.get("DocNumber")) for inv in connector.query("SELECT * FROM Invoice"))
    total = sum(numbers.values())
    return total, total - len(numbers)


def run_demo(
    *,
    workdir: Path | None = None,
    accounts: int = 240,
    orders: int = 520,
    today: dt.date | None = None,
    progress: Progress | None = None,
    faults: float = 0.0,
    seed: int | None = None,
) -> dict[str, Any]:
    """``faults``: the share of API calls each sandbox answers with a fault (429, 5xx, a stall, a
    dropped connection), plus an expired session, an expired token and a stale version once per
    run; the run must still deliver every invoice exactly once."""
    today = today or dt.datetime.now(dt.UTC).date()
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="billsync-demo-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    state_dir = workdir / "sandbox"
    state_dir.mkdir(exist_ok=True)

    fault_options: dict[str, Any] = (
        {"faults": faults, "seed": seed, "fault_delay": FAULT_DELAY} if faults else {}
    )
    sf = SalesforceSandbox(cert_dir=state_dir, **fault_options)
    qbo = QuickBooksSandbox(cert_dir=state_dir, **fault_options)
    erp = NavSandbox(cert_dir=state_dir, **fault_options)
    reused = (state_dir / SF_STATE).exists()
    with sf, qbo, erp:
        if reused:
            sf.load_state(state_dir / SF_STATE)
            qbo.load_state(state_dir / QBO_STATE)
            if (state_dir / ERP_STATE).exists():
                erp.load_state(state_dir / ERP_STATE)
        else:
            seed_salesforce(sf, accounts=accounts, orders=orders, today=today)
        for sandbox in (sf, qbo, erp):
            sandbox.reset_counters()
        secret_file = workdir / "secrets" / "stripe_webhook_secret"
        stripe_secret = (
            secret_file.read_text(encoding="utf-8").strip()
            if secret_file.exists()
            else f"whsec_{secret_tokens.token_hex(16)}"
        )
        sink = SmtpSink().start()
        refuse_undeliverable(sf, sink)  # the demo's few bad addresses bounce, as on a real server
        config_path = write_workdir(
            workdir,
            sf,
            qbo,
            erp,
            timeout_seconds=FAULT_TIMEOUT if faults else None,
            stripe_secret=stripe_secret,
            smtp_port=sink.port,
            einvoice_folder=True,
        )
        settings = load_settings(config_path)
        upgrade_database(settings.database_url)
        runtime = Runtime(
            settings, retry=RetryPolicy(attempts=5, backoff=0.2, max_wait=5.0) if faults else None
        )
        try:
            for sandbox in (sf, qbo, erp) if faults else ():
                sandbox.arm_run_events()
            cycle = run_cycle(runtime, as_of=today, progress=progress)
            runs = 1
            while cycle.unfinished and runs < MAX_DEMO_RUNS:  # what the daemon's next run would do
                runs += 1
                cycle = merge(cycle, run_cycle(runtime, as_of=today, progress=progress))
            # the sync's API budget: what pull -> bill -> push cost, before payments and later cycles
            calls = {"salesforce": sf.calls, "quickbooks": qbo.calls, "erp": erp.calls}
            quickbooks_calls = dict(qbo.calls_by_route)
            if not reused:  # a few corrections: credit notes, delivered and exported like invoices
                issue_demo_credit_notes(runtime, today)
                run_cycle(runtime, as_of=today, progress=progress, steps=("deliver",))
            with (
                WebhookServer(runtime) as webhooks,
                StripeSandbox(
                    cert_dir=state_dir, webhook_url=webhooks.url, webhook_secret=stripe_secret
                ) as stripe,
            ):
                phase = (
                    None
                    if reused
                    else run_payments_phase(runtime, qbo, stripe, stripe_secret, workdir, today)
                )
            # 35 days on: payments entered in QuickBooks are pulled, unpaid invoices fall overdue,
            # reminders go out, and every system learns what was paid
            later = today + dt.timedelta(days=LATER_DAYS)
            collected = run_cycle(runtime, as_of=later, progress=progress, steps=("collect", "push"))
            while collected.unfinished and runs < 2 * MAX_DEMO_RUNS:
                runs += 1
                collected = run_cycle(runtime, as_of=later, progress=progress, steps=("collect", "push"))
            cycle.retry_later.update(collected.retry_later)
            payments_summary = summarise_payments(
                runtime, qbo_connection="quickbooks", erp_connection="erp", workdir=workdir
            )
            payments_summary["reminders_delivered_to_smtp"] = sum(
                1 for m in sink.messages if str(m.message["Message-ID"]).strip().startswith("<reminder.")
            )
            payments_summary.update(summarise_delivery(runtime, sink))
            payments_summary["as_of_after_payments"] = later.isoformat()
            if phase is not None:
                payments_summary["payment_sources"] = {
                    "quickbooks_entered": phase.quickbooks_entered,
                    "stripe_events": phase.stripe_events_sent,
                    "stripe_refunds": phase.stripe_refunds,
                    "statement_lines": phase.statement_lines,
                }
                payments_summary["webhooks_refused"] = phase.webhooks_refused
            in_qbo, duplicates = count_invoices_in_quickbooks(runtime, "quickbooks")
            in_erp, erp_duplicates = count_invoices_in_erp(runtime, "erp")
            in_crm, crm_duplicates = count_statuses_in_crm(runtime, "salesforce")
            with runtime.sessions() as session:
                dead = session.query(DeadLetter).filter(DeadLetter.status == "open").count()
        finally:
            runtime.close()
            sink.stop()
            sf.save_state(state_dir / SF_STATE)
            qbo.save_state(state_dir / QBO_STATE)
            erp.save_state(state_dir / ERP_STATE)
    summary = summarise(cycle, workdir, reused, calls, quickbooks_calls, in_qbo, duplicates, dead)
    summary["invoices_in_erp"] = in_erp
    summary["duplicate_invoices_in_erp"] = erp_duplicates
    pushes = {p.destination: p for p in cycle.pushes}
    summary["pushed_to_erp"] = dict(pushes["erp"].sent) if "erp" in pushes else {}
    summary["invoice_statuses_in_crm"] = in_crm
    summary["duplicate_invoice_statuses_in_crm"] = crm_duplicates
    summary.update(payments_summary)
    summary["runs"] = runs
    summary["left_for_next_run"] = cycle.retry_later
    if faults:
        summary["faults_injected"] = {
            "salesforce": dict(sf.faults_injected),
            "quickbooks": dict(qbo.faults_injected),
            "erp": dict(erp.faults_injected),
        }
    return summary


def merge(first: CycleResult, second: CycleResult) -> CycleResult:
    """Counts of two runs of the demo's cycle, as one summary."""
    pulls = {p.stream: p for p in first.pulls}
    for p in second.pulls:
        earlier = pulls.get(p.stream)
        if earlier is None:
            pulls[p.stream] = p
        else:
            earlier.read += p.read
            earlier.written += p.written
    bill = first.bill
    if bill is not None and second.bill is not None:
        bill.invoices_created += second.bill.invoices_created
        for code, amount in second.bill.totals.items():
            bill.totals[code] = bill.totals.get(code, amount * 0) + amount
    pushes = {push.destination: push for push in first.pushes}
    for push in second.pushes:
        before = pushes.get(push.destination)
        if before is None:
            pushes[push.destination] = push
        else:
            for entity, n in push.sent.items():
                before.sent[entity] = before.sent.get(entity, 0) + n
    merged = CycleResult(list(pulls.values()), bill or second.bill, list(pushes.values()), second.retry_later)
    for push in merged.pushes:  # what is left is what the last run left
        last = next((p for p in second.pushes if p.destination == push.destination), None)
        push.retry_later = last.retry_later if last else 0
        push.deferred = last.deferred if last else 0
    return merged


def summarise(
    cycle: CycleResult,
    workdir: Path,
    reused: bool,
    calls: dict[str, int],
    quickbooks_calls: dict[str, int],
    in_qbo: int,
    duplicates: int,
    dead_letters: int,
) -> dict[str, Any]:
    pulled = {p.stream: p for p in cycle.pulls}
    bill = cycle.bill
    push = cycle.pushes[0] if cycle.pushes else None
    return {
        "workdir": str(workdir),
        "reused_workdir": reused,
        "accounts_pulled": pulled["sf-account"].read if "sf-account" in pulled else 0,
        "orders_pulled": pulled["sf-order"].read if "sf-order" in pulled else 0,
        "records_pulled": {name: p.read for name, p in pulled.items()},
        "records_written": {name: p.written for name, p in pulled.items()},
        "invoices_created": bill.invoices_created if bill else 0,
        "invoice_totals": {k: str(v) for k, v in (bill.totals if bill else {}).items()},
        "pushed_to_quickbooks": dict(push.sent) if push else {},
        "invoices_in_quickbooks": in_qbo,
        "duplicate_invoices_in_quickbooks": duplicates,
        "dead_letters": dead_letters,
        "api_calls": calls,
        "quickbooks_calls_by_endpoint": quickbooks_calls,
    }
