"""The ``billsync`` command line (typer + rich). Commands import their modules lazily so that
``billsync --help`` stays fast and a broken optional part never blocks the others."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

_T = TypeVar("_T")

if TYPE_CHECKING:
    from collections.abc import Callable
    from decimal import Decimal

    from sqlalchemy.orm import Session

    from sync_engine.runtime import Runtime
    from sync_engine.support import LetterFilter

app = typer.Typer(
    help="billsync: billing-aware CRM -> invoices -> ERP/accounting sync.", no_args_is_help=True
)
config_app = typer.Typer(help="Check billsync.yaml.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the state store.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
mappings_app = typer.Typer(help="Check and preview YAML mapping specs.", no_args_is_help=True)
app.add_typer(mappings_app, name="mappings")

ConfigOption = typer.Option(Path("billsync.yaml"), "--config", "-c", help="path of billsync.yaml")


@config_app.command("check")
def config_check(config: Path = ConfigOption) -> None:
    """Report every problem in billsync.yaml at once (file, line, key, what is allowed); exit 2 if any."""
    from sync_engine.config_check import run_check

    raise typer.Exit(run_check(config))


@db_app.command("upgrade")
def db_upgrade(config: Path = ConfigOption, revision: str = "head") -> None:
    """Create or migrate the state store to the newest schema."""
    from sync_engine.store.db import make_engine, upgrade_database

    settings = _settings(config)
    upgrade_database(settings.database_url, revision)
    if settings.executor == "procrastinate":  # the job queue lives next to billsync's tables
        from sync_engine.executors.distributed import apply_schema

        engine = make_engine(settings.database_url)
        try:
            created = apply_schema(engine)
        finally:
            engine.dispose()
        typer.echo(
            "procrastinate's job queue created" if created else "procrastinate's job queue is in place"
        )
    typer.echo("database is at the newest schema")


@mappings_app.command("check")
def mappings_check(
    paths: list[Path] = typer.Argument(
        None, help="spec files (default: every shipped spec and every spec the config uses)"
    ),
    config: Path = ConfigOption,
) -> None:
    """Compile specs against the canonical model and the vendor's fields; every problem at once, exit 2 if any."""
    from sync_engine.mapping_tools import run_check

    raise typer.Exit(run_check(paths or [], config))


@mappings_app.command("preview")
def mappings_preview(
    spec: str = typer.Argument(..., help="a spec path, or builtin:<system>/<name>"),
    input_file: Path | None = typer.Option(None, "--input", help="JSON file: a list of source records"),
    from_connection: str | None = typer.Option(
        None, "--from", help="read a few live records from this connection"
    ),
    limit: int = typer.Option(10, min=1, max=2000, help="records to preview"),
    as_json: bool = typer.Option(False, "--json", help="print input/output/errors as JSON"),
    config: Path = ConfigOption,
) -> None:
    """Map sample records and show input next to output, with per-record errors; writes nothing."""
    from sync_engine.mapping_tools import run_preview

    try:
        code = run_preview(
            spec,
            input_file=input_file,
            from_connection=from_connection,
            limit=limit,
            as_json=as_json,
            config=config,
        )
    except (ValueError, OSError) as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def _settings(config: Path):  # type: ignore[no-untyped-def]
    from sync_engine.config_check import load_or_exit

    return load_or_exit(config)


def main() -> None:
    """Console entry point: known failures become one clear line on stderr (exit 1), never a traceback."""
    from billing.catalog import CatalogError
    from connectors.errors import ConnectorError
    from mappings.spec import SpecError
    from sync_engine.logging import redact_text
    from sync_engine.store.db import StoreError

    try:
        app()
    except (ConnectorError, StoreError, SpecError, CatalogError) as exc:
        kind = {
            ConnectorError: "connection",
            StoreError: "database",
            SpecError: "mapping",
            CatalogError: "catalog",
        }
        label = next((name for cls, name in kind.items() if isinstance(exc, cls)), "error")
        typer.echo(f"billsync: {label} error: {redact_text(str(exc))}", err=True)
        raise SystemExit(1) from None


@app.command()
def demo(
    workdir: Path | None = typer.Option(
        None, "--workdir", help="reuse this directory (a second run must push nothing new)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
    accounts: int = typer.Option(240, min=1, help="accounts in the seeded company"),
    orders: int = typer.Option(520, min=1, help="orders in the seeded company"),
    faults: float = typer.Option(0.0, min=0.0, max=0.5, help="share of API calls answered with a fault"),
    seed: int | None = typer.Option(None, help="seed of the fault injection, for a repeatable run"),
) -> None:
    """Run pull -> bill -> push against local Salesforce, QuickBooks and ERP sandboxes and summarise."""
    import json

    from rich.console import Console

    from sync_engine.demo import run_demo
    from sync_engine.progress import RichProgress

    if as_json:
        summary = run_demo(workdir=workdir, accounts=accounts, orders=orders, faults=faults, seed=seed)
        typer.echo(json.dumps(summary, indent=None, sort_keys=False))
        return
    console = Console()
    with RichProgress(console) as progress:
        summary = run_demo(
            workdir=workdir, accounts=accounts, orders=orders, progress=progress, faults=faults, seed=seed
        )
    _print_summary(console, summary)


def _print_summary(console, summary: dict) -> None:  # type: ignore[no-untyped-def, type-arg]
    from rich.table import Table

    table = Table(title="billsync demo", show_header=False)
    for key, value in summary.items():
        table.add_row(key, str(value))
    console.print(table)
    ok = summary["duplicate_invoices_in_quickbooks"] == 0 and (
        summary["reused_workdir"] or summary["invoices_in_quickbooks"] == summary["invoices_created"] > 0
    )
    console.print(
        "[green]every invoice reached QuickBooks exactly once[/green]" if ok else "[red]mismatch[/red]"
    )
    console.print(f"re-run with: billsync demo --workdir {summary['workdir']}")


@app.command()
def sync(
    config: Path = ConfigOption,
    as_of: str | None = typer.Option(None, help="billing date YYYY-MM-DD (default: today, UTC)"),
    step: list[str] = typer.Option(
        ["pull", "bill", "deliver", "collect", "push"],
        help="steps to run: pull, bill, deliver, collect, push",
    ),
) -> None:
    """Run one cycle now: pull every stream, run billing, deliver new invoices to customers, collect
    (payments from QuickBooks, overdue invoices, reminders), push to every destination."""
    import datetime as dt

    from rich.console import Console

    from sync_engine.cycle import run_cycle
    from sync_engine.logging import configure_logging
    from sync_engine.progress import RichProgress
    from sync_engine.runtime import Runtime
    from sync_engine.store.db import upgrade_database

    settings = _settings(config)
    configure_logging(
        format=settings.logging.format, level=settings.logging.level, secrets=settings.secret_values()
    )
    day = dt.date.fromisoformat(as_of) if as_of else dt.datetime.now(dt.UTC).date()
    upgrade_database(settings.database_url)
    runtime = Runtime(settings)
    console = Console()
    try:
        with RichProgress(console) as progress:
            result = run_cycle(runtime, as_of=day, progress=progress, steps=tuple(step))
    finally:
        runtime.close()
    for pull in result.pulls:
        console.print(
            f"pull {pull.stream}: read {pull.read}, written {pull.written}, unchanged {pull.unchanged}, "
            f"dead letters {pull.dead_lettered}"
        )
    if result.bill:
        console.print(f"bill: {result.bill.invoices_created} invoices, {result.bill.problems} problems")
    if result.delivery:
        d = result.delivery
        console.print(
            f"deliver: {d.delivered} delivered, {d.failed} failed, {d.retrying} to retry, {d.for_print} to print"
        )
    for push in result.pushes:
        console.print(
            f"push {push.destination}: sent {push.sent}, adopted {push.adopted}, deferred {push.deferred}, "
            f"dead letters {push.dead_lettered}, retry later {push.retry_later}, API calls {push.api_calls}"
        )


@app.command()
def sandbox(
    workdir: Path = typer.Option(
        Path("billsync-sandbox"), help="where billsync.yaml and the secrets are written"
    ),
    accounts: int = typer.Option(240, min=1),
    orders: int = typer.Option(520, min=1),
    faults: float = typer.Option(0.0, min=0.0, max=0.5, help="share of API calls answered with a fault"),
    seed: int | None = typer.Option(None, help="seed of the fault injection"),
    limits: str = typer.Option(
        "off", help="'real': enforce QBO's throttles and Salesforce's daily API allowance"
    ),
    latency_ms: float = typer.Option(0.0, min=0.0, help="hold every answer this long (milliseconds)"),
) -> None:
    """Run the Salesforce, QuickBooks Online and NAV ERP sandboxes in the foreground (Ctrl-C stops them).

    Writes WORKDIR/billsync.yaml pointing at them, so `billsync sync -c WORKDIR/billsync.yaml` works.
    With --faults, an expired session, an expired token and a stale version are armed every minute.
    With --limits real, QBO answers 429 past 500 requests / 40 batches a minute or 10 in flight per
    company and Salesforce 403 past 15,000 calls a day; billsync.yaml then paces QBO calls to match.
    """
    if limits not in ("off", "real"):
        raise typer.BadParameter("--limits is 'off' or 'real'", param_hint="--limits")
    import datetime as dt
    import time

    from connectors.nav.sandbox import NavSandbox
    from connectors.quickbooks.sandbox import QuickBooksSandbox
    from connectors.salesforce.sandbox import SalesforceSandbox
    from sync_engine.demo import FAULT_DELAY, FAULT_TIMEOUT, seed_salesforce, write_workdir

    workdir = workdir.resolve()
    certs = workdir / "sandbox"
    certs.mkdir(parents=True, exist_ok=True)
    options: dict[str, object] = (
        {"faults": faults, "seed": seed, "fault_delay": FAULT_DELAY} if faults else {}
    )
    options["latency"] = latency_ms / 1000.0
    limited = {"limits": limits}  # NAV publishes no API limits
    with (
        SalesforceSandbox(cert_dir=certs, **limited, **options) as sf,  # type: ignore[arg-type]
        QuickBooksSandbox(cert_dir=certs, **limited, **options) as qbo,  # type: ignore[arg-type]
        NavSandbox(cert_dir=certs, **options) as erp,  # type: ignore[arg-type]
    ):
        seed_salesforce(sf, accounts=accounts, orders=orders, today=dt.datetime.now(dt.UTC).date())
        config = write_workdir(workdir, sf, qbo, erp, timeout_seconds=FAULT_TIMEOUT if faults else None)
        typer.echo(f"Salesforce sandbox:  {sf.base_url}  (user {sf.username})")
        typer.echo(f"QuickBooks sandbox:  {qbo.base_url}  (company {qbo.realm_id})")
        typer.echo(f"NAV ERP sandbox:     {erp.company_url}")
        typer.echo(f"certificates:        {certs}")
        typer.echo(f"settings:            {config}  (secrets in {workdir / 'secrets'})")
        typer.echo(
            f"faults:              {faults:.0%} of API calls" if faults else "faults:              none"
        )
        typer.echo(f"limits:              {limits}, latency {latency_ms:g} ms")
        typer.echo("Ctrl-C to stop.")
        try:
            while True:
                if faults:
                    for box in (sf, qbo, erp):
                        box.arm_run_events()
                time.sleep(60)
        except KeyboardInterrupt:
            typer.echo("stopped")


# -- support: dead letters, resync, runs, status ----------------------------------------------------
letters_app = typer.Typer(
    help="Records that could not be processed: list, show, replay, discard.", no_args_is_help=True
)
app.add_typer(letters_app, name="dead-letters")
ByOption = typer.Option(None, "--by", help="who asks (recorded with the action; default: your login name)")


def _who(by: str | None) -> str:
    import getpass

    return by or getpass.getuser()


def _runtime(config: Path) -> Runtime:
    from sync_engine.runtime import Runtime
    from sync_engine.store.db import upgrade_database

    settings = _settings(config)
    upgrade_database(settings.database_url)
    return Runtime(settings)


def _filter(
    ids: list[int] | None, stream: str | None, entity: str | None, error_type: str | None, status: str | None
) -> LetterFilter:
    from sync_engine.support import LetterFilter

    return LetterFilter(
        ids=tuple(ids or ()), stream=stream, entity=entity, error_type=error_type, status=status
    )


@letters_app.command("list")
def letters_list(
    stream: str | None = typer.Option(
        None, help="only this stream (e.g. sf-account, billing, push:quickbooks)"
    ),
    entity: str | None = typer.Option(None),
    error_type: str | None = typer.Option(None, "--error-type"),
    status: str = typer.Option("open", help="open, replayed, resolved, discarded, or all"),
    as_json: bool = typer.Option(False, "--json"),
    config: Path = ConfigOption,
) -> None:
    """Dead letters with their reason, newest attempt last."""
    import json

    from rich.console import Console
    from rich.table import Table

    from sync_engine.support import find_letters, letter_dict

    runtime = _runtime(config)
    letters = find_letters(
        runtime, _filter(None, stream, entity, error_type, None if status == "all" else status)
    )
    rows = [letter_dict(d) for d in letters]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table(title=f"{len(rows)} dead letter(s)")
    for column in ("id", "stream", "entity", "external_id", "error_type", "attempts", "last_seen", "error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(
                str(row[c])
                for c in (
                    "id",
                    "stream",
                    "entity",
                    "external_id",
                    "error_type",
                    "attempts",
                    "last_seen",
                    "error",
                )
            )
        )
    Console().print(table)


@letters_app.command("show")
def letters_show(letter_id: int, config: Path = ConfigOption) -> None:
    """One dead letter with its payload and error, as JSON."""
    import json

    from sync_engine.support import find_letters, letter_dict

    found = find_letters(_runtime(config), _filter([letter_id], None, None, None, None))
    if not found:
        typer.echo(f"billsync: no dead letter {letter_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(letter_dict(found[0], with_payload=True), indent=2, default=str))


@letters_app.command("replay")
def letters_replay(
    ids: list[int] = typer.Argument(None, help="dead letter ids (or use the filters for a bulk replay)"),
    stream: str | None = typer.Option(None),
    entity: str | None = typer.Option(None),
    error_type: str | None = typer.Option(None, "--error-type"),
    as_of: str | None = typer.Option(None, help="billing date for billing letters (default: today, UTC)"),
    by: str | None = ByOption,
    config: Path = ConfigOption,
) -> None:
    """Process again with the current mappings and catalog, then push what went through."""
    import datetime as dt

    from sync_engine.support import replay_letters

    if not ids and not (stream or entity or error_type):
        typer.echo("billsync: give dead letter ids or a filter (--stream/--entity/--error-type)", err=True)
        raise typer.Exit(2)
    day = dt.date.fromisoformat(as_of) if as_of else dt.datetime.now(dt.UTC).date()
    result = replay_letters(_runtime(config), _filter(ids, stream, entity, error_type, "open"), _who(by), day)
    typer.echo(
        f"replayed {result.replayed}: {result.resolved} resolved, {result.still_failing} still failing "
        f"({', '.join(f'{k}: {v}' for k, v in result.by_stream.items()) or 'nothing matched'})"
    )


@letters_app.command("discard")
def letters_discard(
    ids: list[int] = typer.Argument(None),
    stream: str | None = typer.Option(None),
    entity: str | None = typer.Option(None),
    error_type: str | None = typer.Option(None, "--error-type"),
    by: str | None = ByOption,
    config: Path = ConfigOption,
) -> None:
    """Close dead letters without processing them (recorded with who asked)."""
    from sync_engine.support import discard_letters

    if not ids and not (stream or entity or error_type):
        typer.echo("billsync: give dead letter ids or a filter (--stream/--entity/--error-type)", err=True)
        raise typer.Exit(2)
    n = discard_letters(_runtime(config), _filter(ids, stream, entity, error_type, "open"), _who(by))
    typer.echo(f"discarded {n} dead letter(s)")


@app.command()
def resync(
    what: list[str] = typer.Argument(
        ..., help="CONNECTION OBJECT ID (one record), or STREAM (with --since or --all)"
    ),
    since: str | None = typer.Option(
        None, help="backfill the stream from this date/time (ISO 8601); the cursor does not move"
    ),
    whole: bool = typer.Option(False, "--all", help="the whole stream"),
    related: bool = typer.Option(
        False, "--related", help="with one customer: also its orders, their lines..."
    ),
    by: str | None = ByOption,
    config: Path = ConfigOption,
) -> None:
    """Read again and re-send: one record (`resync salesforce Account 001...`) or a stream from a date."""
    import datetime as dt

    from mappings.transforms import cast_datetime
    from sync_engine.push import push_destination
    from sync_engine.support import resync_customer, resync_record, resync_stream

    runtime = _runtime(config)
    try:
        if len(what) == 3 and related:
            results = resync_customer(runtime, what[0], what[2], _who(by))
            for destination in runtime.settings.destinations:
                push_destination(runtime, destination)
            for item in results:
                typer.echo(f"resync {item.stream}: read {item.read}, written {item.written}")
            return
        if len(what) == 3:
            result = resync_record(runtime, what[0], what[1], what[2], _who(by))
        elif len(what) == 1 and (since or whole):
            start: dt.datetime | None = cast_datetime(since) if since else None
            result = resync_stream(runtime, what[0], start, _who(by))
        else:
            typer.echo(
                "billsync: resync CONNECTION OBJECT ID, or resync STREAM --since DATE | --all", err=True
            )
            raise typer.Exit(2)
    except ValueError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(2) from None
    for destination in runtime.settings.destinations:
        push_destination(runtime, destination)
    typer.echo(
        f"resync {result.stream}: read {result.read}, written {result.written}, dead letters {result.dead_lettered}"
    )


@app.command()
def runs(
    stream: str | None = typer.Option(None),
    limit: int = typer.Option(50, min=1, max=5000),
    as_json: bool = typer.Option(False, "--json"),
    config: Path = ConfigOption,
) -> None:
    """Run history: counts, duration, outcome, who asked (for resyncs and replays)."""
    import json

    from rich.console import Console
    from rich.table import Table

    from sync_engine.support import list_runs

    rows = list_runs(_runtime(config), stream, limit)
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    table = Table(title="runs (newest first)")
    for column in ("id", "kind", "stream", "status", "started_at", "duration_s", "counts", "error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(
                str(row[c] if row[c] is not None else "")
                for c in ("id", "kind", "stream", "status", "started_at", "duration_s", "counts", "error")
            )
        )
    Console().print(table)


@app.command()
def status(as_json: bool = typer.Option(False, "--json"), config: Path = ConfigOption) -> None:
    """Last run per stream, failing streams, outbox depth, open dead letters, next scheduled runs."""
    import json

    from sync_engine.support import status as read_status

    report = read_status(_runtime(config))
    if as_json:
        typer.echo(json.dumps(report, default=str))
        return
    typer.echo("last runs:")
    for name, run in sorted(report["last_runs"].items()):
        typer.echo(f"  {name:<24} {run['status']:<8} {run['started_at']}  {run['counts']}")
    typer.echo(f"failing: {', '.join(report['failing']) or 'none'}")
    typer.echo(f"outbox: {report['outbox'] or 'empty'}")
    typer.echo(f"open dead letters: {report['dead_letters'] or 'none'}")
    typer.echo(f"invoice deliveries: {report['invoice_deliveries'] or 'none'}")
    typer.echo(f"next runs: {report['next_runs'] or 'no schedules'}")


@app.command()
def daemon(
    config: Path = ConfigOption,
    run_now: bool = typer.Option(False, "--run-now", help="start every schedule once right away"),
    log_format: str = typer.Option("json", help="json (one object per line) or console"),
    workers: int = typer.Option(2, min=1, max=32, help="runs that may go on at once (different streams)"),
) -> None:
    """Run the schedules of billsync.yaml until SIGTERM (which stops at a checkpoint and exits 0)."""
    from sync_engine.daemon import Daemon
    from sync_engine.logging import configure_logging

    runtime = _runtime(config)
    settings = runtime.settings
    if not settings.schedules:
        typer.echo("billsync: billsync.yaml has no schedules; nothing to run", err=True)
        raise typer.Exit(2)
    configure_logging(
        format="json" if log_format == "json" else "console",
        level=settings.logging.level,
        secrets=settings.secret_values(),
    )
    raise typer.Exit(Daemon(runtime, workers=workers).run(run_now=run_now))


@app.command()
def worker(
    config: Path = ConfigOption,
    name: str | None = typer.Option(None, help="a name unique among running workers (default: host-pid)"),
    concurrency: int = typer.Option(2, min=1, max=64, help="jobs this process runs at once"),
    heartbeat: float = typer.Option(
        10.0, min=0.5, help="seconds between heartbeats; a worker silent for 3 of them is stalled"
    ),
    log_format: str = typer.Option("json", help="json (one object per line) or console"),
) -> None:
    """Run the jobs the daemon enqueues (executor: procrastinate), until SIGTERM; start any number."""
    from sync_engine.executors.distributed import run_worker
    from sync_engine.logging import configure_logging

    runtime = _runtime(config)
    settings = runtime.settings
    if settings.executor != "procrastinate":
        typer.echo(
            "billsync: billsync.yaml has executor: embedded, whose daemon runs its own jobs; "
            "set executor: procrastinate (PostgreSQL) to run workers",
            err=True,
        )
        raise typer.Exit(2)
    configure_logging(
        format="json" if log_format == "json" else "console",
        level=settings.logging.level,
        secrets=settings.secret_values(),
    )
    code = run_worker(runtime, name=name, concurrency=concurrency, heartbeat=heartbeat)
    runtime.close()
    if code == 3:
        typer.echo(f"billsync: a worker named {name!r} is already running; give another --name", err=True)
    raise typer.Exit(code)


billing_app = typer.Typer(help="Price scenarios offline with the billing engine.", no_args_is_help=True)
app.add_typer(billing_app, name="billing")


@billing_app.command("preview")
def billing_preview(
    scenario: Path = typer.Argument(..., help="a scenario YAML (see docs/billing.md)"),
    as_json: bool = typer.Option(False, "--json", help="print the invoices as one JSON object"),
) -> None:
    """Every invoice a scenario produces as of its date, each amount explained; writes nothing."""
    from sync_engine.billing_preview import preview_command

    raise typer.Exit(preview_command(scenario, as_json))


invoices_app = typer.Typer(
    help="Finalised invoices: explain each amount, export the document.", no_args_is_help=True
)
app.add_typer(invoices_app, name="invoices")


@invoices_app.command("explain")
def invoices_explain(number: str, config: Path = ConfigOption) -> None:
    """How every amount of invoice NUMBER came about: price, period, quantity, tiers, proration, rounding."""
    from sync_engine.invoice_tools import InvoiceNotFoundError, explain_invoice

    try:
        typer.echo(explain_invoice(_runtime(config), number), nl=False)
    except InvoiceNotFoundError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(1) from None


@invoices_app.command("pdf")
def invoices_pdf(
    number: str,
    out: Path | None = typer.Option(None, "--out", help="a file, or a folder for NUMBER.pdf (default: here)"),
    as_json: bool = typer.Option(False, "--json", help="write the invoice's data as JSON instead of a PDF"),
    config: Path = ConfigOption,
) -> None:
    """Write invoice NUMBER as a PDF (or its data as JSON)."""
    from sync_engine.invoice_docs import PdfUnavailableError
    from sync_engine.invoice_tools import InvoiceNotFoundError, export_invoice

    try:
        path = export_invoice(_runtime(config), number, "json" if as_json else "pdf", out)
    except (InvoiceNotFoundError, PdfUnavailableError) as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(path))


@invoices_app.command("export")
def invoices_export(
    number: str,
    fmt: str = typer.Option(..., "--format", help="ubl | peppol | xrechnung | cii | facturx"),
    out: Path | None = typer.Option(None, "--out", help="a file, or a folder (default: here)"),
    config: Path = ConfigOption,
) -> None:
    """Write invoice NUMBER as a structured e-invoice, validated first (exit 1 with the failed rules)."""
    from sync_engine.einvoices import FORMATS, EInvoiceConfigError, EInvoiceInvalidError, export_einvoice

    if fmt not in FORMATS:
        typer.echo(f"billsync: unknown format {fmt!r} (allowed: {', '.join(FORMATS)})", err=True)
        raise typer.Exit(2)
    runtime = _runtime(config)
    try:
        exported = export_einvoice(runtime, number, fmt)
    except EInvoiceConfigError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(1) from None
    except EInvoiceInvalidError as exc:
        typer.echo(f"billsync: {exc}; not written", err=True)
        for failure in exc.failures:
            typer.echo(
                f"  {failure.rule_id} [{failure.flag}] {failure.short_location}: {failure.text}", err=True
            )
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    target = out if out is not None else Path.cwd()
    if target.is_dir():
        target = target / exported.filename
    target.write_bytes(exported.content)
    typer.echo(str(target))


@invoices_app.command("validate")
def invoices_validate(
    files: list[Path] = typer.Argument(
        ..., exists=True, dir_okay=False, help="XML e-invoices or Factur-X PDFs"
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="ubl | peppol | xrechnung | cii | facturx (default: what each file declares)"
    ),
) -> None:
    """Check e-invoices: XML schema, then the EN 16931 rules, then the format's own rules (exit 1 if any fails)."""
    from connectors.einvoice.validation import FormatError, format_report
    from sync_engine.einvoices import validate_files

    try:
        reports = validate_files(list(files), fmt)
    except FormatError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_report(reports))
    if not all(report.ok for report in reports):
        raise typer.Exit(1)


@invoices_app.command("credit")
def invoices_credit(
    number: str,
    reason: str = typer.Option(..., "--reason", help="why (printed on the credit note)"),
    line: list[str] = typer.Option(
        [],
        "--line",
        help="POSITION=AMOUNT: credit this net amount of that line (repeatable); default: everything",
    ),
    as_of: str | None = typer.Option(None, "--as-of", help="the credit note's date (default: today)"),
    by: str | None = ByOption,
    as_json: bool = typer.Option(False, "--json"),
    config: Path = ConfigOption,
) -> None:
    """Issue a credit note for invoice NUMBER: all of it, or chosen net amounts per line (tax follows)."""
    from sync_engine.credit_notes import CreditNoteError, issue_credit_note

    amounts = None
    if line:
        amounts = {}
        for item in line:
            position, sep, amount = item.partition("=")
            if not sep or not position.strip().isdigit():
                typer.echo(f"billsync: --line wants POSITION=AMOUNT, got {item!r}", err=True)
                raise typer.Exit(2)
            amounts[int(position)] = _amount(amount.strip())
    runtime = _runtime(config)
    try:
        note = issue_credit_note(
            runtime,
            number,
            reason=reason,
            amounts=amounts,
            requested_by=_who(by),
            as_of=_date(as_of) if as_of else None,  # type: ignore[arg-type]
        )
    except CreditNoteError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    if as_json:
        _echo_json(note)
        return
    typer.echo(
        f"{note['number']} credits {note['currency']} {note['total']} of {note['invoice']} "
        f"({note['applied_to_invoice']} off what is due, {note['customer_credit']} kept as customer credit)"
    )


@invoices_app.command("void")
def invoices_void(
    number: str,
    reason: str = typer.Option(..., "--reason", help="why (kept with the invoice)"),
    by: str | None = ByOption,
    as_json: bool = typer.Option(False, "--json"),
    config: Path = ConfigOption,
) -> None:
    """Void invoice NUMBER (nothing paid on it yet): everywhere, its number kept; exit 1 if refused."""
    from sync_engine.voiding import VoidRefused, void_invoice

    runtime = _runtime(config)
    try:
        voided = void_invoice(runtime, number, reason=reason, requested_by=_who(by))
    except VoidRefused as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    if as_json:
        _echo_json(voided.to_dict())
        return
    typer.echo(
        f"{voided.number} is void ({voided.currency} {voided.to_dict()['total']}), "
        f"by {voided.voided_by} at {voided.voided_at.isoformat(timespec='seconds')}: {voided.reason}"
    )
    if voided.queued:
        typer.echo(f"  queued for: {', '.join(voided.queued)}")
    if voided.cancelled:
        typer.echo(f"  no longer sent: {', '.join(voided.cancelled)}")


@invoices_app.command("deliver")
def invoices_deliver(config: Path = ConfigOption) -> None:
    """Send the invoices owed to customers now (retries included); list the ones to post."""
    from sync_engine.delivery import run_deliveries

    runtime = _runtime(config)
    try:
        result = run_deliveries(runtime)
    finally:
        runtime.close()
    if result.note:
        typer.echo(result.note)
    typer.echo(
        f"{result.delivered} delivered, {result.failed} failed, {result.retrying} to retry, "
        f"{result.for_print} to print"
    )
    for path in result.print_files:
        typer.echo(f"  print file: {path}")
    for line in result.errors:
        typer.echo(f"  {line}")
    if result.failed:
        raise typer.Exit(1)


@invoices_app.command("deliveries")
def invoices_deliveries(
    number: str, as_json: bool = typer.Option(False, "--json"), config: Path = ConfigOption
) -> None:
    """Every attempt to deliver invoice NUMBER: when, to whom, channel, Message-ID, outcome, who asked."""
    from sync_engine.delivery import DeliveryError, delivery_history

    try:
        history = _read(config, lambda session: delivery_history(session, number))
    except DeliveryError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        _echo_json(history)
        return
    typer.echo(
        f"{history['number']}: {history['status']}, delivery {history['delivery_status'] or 'not queued'}"
    )
    if not history["deliveries"]:
        typer.echo("  no delivery attempt yet")
    for row in history["deliveries"]:
        who = f" (asked by {row['requested_by']})" if row["requested_by"] else ""
        target = row["print_file"] if row["channel"] == "post" else row["message_id"]
        error = f": {row['error']}" if row["error"] else ""
        typer.echo(
            f"  {row['at']} {row['channel']} {row['purpose']} to {row['to'] or '-'}: {row['status']}"
            f"{who} [{target or '-'}]{error}"
        )


@invoices_app.command("resend")
def invoices_resend(
    number: str,
    to: str | None = typer.Option(None, "--to", help="send to this address instead of the customer's"),
    by: str | None = ByOption,
    config: Path = ConfigOption,
) -> None:
    """Send invoice NUMBER again now (recorded with who asked); exit 1 if the server refuses it."""
    from sync_engine.delivery import DeliveryError, resend_invoice

    runtime = _runtime(config)
    try:
        sent = resend_invoice(runtime, number, requested_by=_who(by), to=to)
    except DeliveryError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    typer.echo(f"{number} resent to {', '.join(sent['to'])} ({sent['message_id']})")


@invoices_app.command("print-list")
def invoices_print_list(as_json: bool = typer.Option(False, "--json"), config: Path = ConfigOption) -> None:
    """Invoices to print and post (customers without an e-mail address, or who asked for post)."""
    from sync_engine.delivery import print_queue

    rows = _read(config, print_queue)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        typer.echo("nothing to print")
    for row in rows:
        typer.echo(
            f"{row['number']} {row['address'] or row['customer_id']}: {row['reason']} -> {row['print_file'] or 'next run'}"
        )


payments_app = typer.Typer(
    help="Payments: import bank statements, match them, record and refund payments, SEPA collections.",
    no_args_is_help=True,
)
app.add_typer(payments_app, name="payments")


def _today() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).date().isoformat()


def _date(text: str) -> object:
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        typer.echo(f"billsync: not a date (YYYY-MM-DD): {text!r}", err=True)
        raise typer.Exit(2) from None


def _amount(text: str) -> Decimal:
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        typer.echo(f"billsync: not an amount: {text!r}", err=True)
        raise typer.Exit(2)
    return value


def _read(config: Path, query: Callable[[Session], _T]) -> _T:
    """Run one read-only ``query`` on the state store of ``config`` (closed whatever happens)."""
    runtime = _runtime(config)
    try:
        with runtime.sessions() as session:
            return query(session)
    finally:
        runtime.close()


def _echo_json(data: object) -> None:
    import json

    typer.echo(json.dumps(data, indent=2, default=str))


@payments_app.command("import")
def payments_import(
    files: list[Path] = typer.Argument(..., help="camt.053 (XML) or MT940 statement files"),
    as_of: str = typer.Option(_today(), "--as-of", help="the day statuses are computed for"),
    as_json: bool = typer.Option(False, "--json"),
    config: Path = ConfigOption,
) -> None:
    """Import bank statements and match their lines to invoices (a file is imported once, all or nothing)."""
    from dataclasses import asdict

    from connectors.bank.errors import StatementError
    from sync_engine.reconcile import import_statement

    runtime = _runtime(config)
    day = _date(as_of)
    results = []
    try:
        for file in files:
            try:
                data = file.read_bytes()
            except OSError as exc:
                typer.echo(f"billsync: cannot read {file}: {exc.strerror}", err=True)
                raise typer.Exit(2) from None
            try:
                results.append(import_statement(runtime, data, str(file), as_of=day))  # type: ignore[arg-type]
            except StatementError as exc:
                typer.echo(f"billsync: {exc} (nothing imported from this file)", err=True)
                raise typer.Exit(2) from None
    finally:
        runtime.close()
    if as_json:
        _echo_json([asdict(r) for r in results])
        return
    for r in results:
        if r.already_imported:
            typer.echo(f"{r.filename}: already imported; nothing to do")
            continue
        typer.echo(
            f"{r.filename}: {r.lines} lines: {r.matched} matched, {r.unmatched} to review, "
            f"{r.ignored} ignored (debits, reversals), {r.duplicates} seen before"
        )


@payments_app.command("unmatched")
def payments_unmatched(as_json: bool = typer.Option(False, "--json"), config: Path = ConfigOption) -> None:
    """The review queue: statement lines no invoice was found for, with their candidates."""
    from sync_engine.reconcile import review_queue

    queue = _read(config, review_queue)
    if as_json:
        _echo_json(queue)
        return
    if not queue:
        typer.echo("nothing to review")
    for line in queue:
        typer.echo(
            f"#{line['id']} {line['booking_date']} {line['amount']} {line['currency']} "
            f"{line['counterparty'] or '?'}: {line['remittance'] or ''}"
        )
        for c in line["candidates"]:
            typer.echo(f"    candidate {c['invoice']} due {c['amount_due']} ({c['why']})")


@payments_app.command("match")
def payments_match(
    line_id: int,
    invoices: list[str] = typer.Argument(..., help="invoice numbers the line pays"),
    by: str | None = typer.Option(None, "--by", help="who matched it (default: your user name)"),
    as_of: str = typer.Option(_today(), "--as-of"),
    config: Path = ConfigOption,
) -> None:
    """Match statement line LINE_ID of the review queue to invoices, recording the payment."""
    from sync_engine.payments import PaymentError
    from sync_engine.reconcile import MatchError, match_line

    runtime = _runtime(config)
    try:
        number = match_line(runtime, line_id, invoices, as_of=_date(as_of), who=_who(by))  # type: ignore[arg-type]
    except (MatchError, PaymentError) as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    typer.echo(f"line {line_id} matched: payment {number}")


@payments_app.command("ignore")
def payments_ignore(
    line_id: int,
    note: str = typer.Option(..., "--note", help="why (interest, internal transfer...)"),
    config: Path = ConfigOption,
) -> None:
    """Take statement line LINE_ID out of the review queue."""
    from sync_engine.reconcile import MatchError, ignore_line

    runtime = _runtime(config)
    try:
        ignore_line(runtime, line_id, note)
    except MatchError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    typer.echo(f"line {line_id} ignored")


@payments_app.command("list")
def payments_list(
    customer: str | None = typer.Option(None, help="canonical customer id"),
    as_json: bool = typer.Option(False, "--json"),
    config: Path = ConfigOption,
) -> None:
    """Recorded payments, newest first, with where each went."""
    from sqlalchemy import select

    from sync_engine.store.models import Payment

    runtime = _runtime(config)
    rows = []
    with runtime.sessions() as session:
        query = select(Payment).order_by(Payment.received_on.desc(), Payment.number.desc())
        if customer:
            query = query.where(Payment.customer_id == customer)
        for p in session.scalars(query):
            rows.append(
                {
                    "number": p.number,
                    "customer_id": p.customer_id,
                    "received_on": p.received_on.isoformat(),
                    "source": p.source,
                    "method": p.method,
                    "amount": str(p.amount),
                    "currency": p.currency,
                    "refunded": str(p.refunded),
                    "credit": str(p.unapplied),
                    "allocations": [
                        {"invoice_id": a.invoice_id, "amount": str(a.amount)} for a in p.allocations
                    ],
                }
            )
    runtime.close()
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        typer.echo(
            f"{r['number']} {r['received_on']} {r['amount']} {r['currency']} {r['method']} via {r['source']} "
            f"customer {r['customer_id']}: {len(r['allocations'])} invoice(s), credit {r['credit']}"
        )


@payments_app.command("record")
def payments_record(
    customer: str = typer.Option(..., help="canonical customer id"),
    amount: str = typer.Option(..., help="e.g. 120.50"),
    currency: str = typer.Option(...),
    method: str = typer.Option(
        "bank_transfer", help="card, bank_transfer, direct_debit, cash, cheque, other"
    ),
    received_on: str = typer.Option(_today(), "--date"),
    reference: str = typer.Option(
        ..., help="unique reference of this receipt (cheque number, receipt id...)"
    ),
    invoice: list[str] = typer.Option([], "--invoice", help="invoice numbers it pays (default: oldest due)"),
    config: Path = ConfigOption,
) -> None:
    """Record a payment received outside the connected systems (cash, cheque...)."""
    from sqlalchemy import select

    from sync_engine.payments import PaymentError, Receipt, record_payment
    from sync_engine.store.models import Invoice

    value = _amount(amount)
    runtime = _runtime(config)
    day = _date(received_on)
    try:
        with runtime.transaction() as session:
            ids = (
                list(session.scalars(select(Invoice.id).where(Invoice.number.in_(invoice))))
                if invoice
                else []
            )
            if len(ids) != len(set(invoice)):
                raise PaymentError(f"not every invoice of {', '.join(invoice)} exists")
            recorded = record_payment(
                session,
                runtime.settings,
                Receipt(
                    source="manual",
                    source_ref=reference,
                    customer_id=customer,
                    amount=value,
                    currency=currency.upper(),
                    received_on=day,  # type: ignore[arg-type]
                    method=method,
                    reference=reference,
                    invoice_ids=ids,
                ),
                as_of=day,  # type: ignore[arg-type]
            )
    except PaymentError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    if not recorded.created:
        typer.echo(f"payment {recorded.number} was recorded before with this reference; nothing changed")
        return
    typer.echo(
        f"payment {recorded.number}: {len(recorded.allocated)} invoice(s) paid, credit {recorded.unapplied}"
    )


@payments_app.command("refund")
def payments_refund(
    number: str,
    amount: str = typer.Option(...),
    reference: str = typer.Option(..., help="unique reference of this refund"),
    reason: str | None = typer.Option(None),
    config: Path = ConfigOption,
) -> None:
    """Record money given back on payment NUMBER (credit first, then the invoices paid last reopen)."""
    import datetime as dt

    from sqlalchemy import select

    from sync_engine.payments import PaymentError, record_refund
    from sync_engine.store.models import Payment

    value = _amount(amount)
    runtime = _runtime(config)
    today = dt.datetime.now(dt.UTC).date()
    try:
        with runtime.transaction() as session:
            payment_id = session.scalar(select(Payment.id).where(Payment.number == number))
            if payment_id is None:
                raise PaymentError(f"no payment numbered {number}")
            done = record_refund(
                session,
                runtime.settings,
                payment_id=payment_id,
                source="manual",
                source_ref=reference,
                amount=value,
                refunded_on=today,
                reason=reason,
                as_of=today,
            )
    except PaymentError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    typer.echo(f"refund recorded on {number}" if done else "this refund was recorded before; nothing changed")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8080),
    config: Path = ConfigOption,
) -> None:
    """The support console and JSON API (/api, /api/openapi.json), /metrics, /health and the Stripe
    webhook (POST /webhooks/stripe). Users: `billsync users add`."""
    import uvicorn

    from sync_engine.web import create_app

    runtime = _runtime(config)
    try:
        uvicorn.run(create_app(runtime), host=host, port=port, log_level="warning")
    finally:
        runtime.close()


users_app = typer.Typer(help="People who use the console and the API.", no_args_is_help=True)
app.add_typer(users_app, name="users")


def _password_from(password_file: Path | None) -> str:
    """From a file, the BILLSYNC_PASSWORD variable or a prompt: never from the command line."""
    import os

    if password_file is not None:
        return password_file.read_text(encoding="utf-8").strip()
    if os.environ.get("BILLSYNC_PASSWORD"):
        return os.environ["BILLSYNC_PASSWORD"]
    value: str = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return value


def _user_change(
    config: Path, by: str | None, action: str, username: str, change: Callable[[Session], _T], **details: str
) -> _T:
    """One change to the users, in its own transaction, written to the audit log with who asked.

    A refused change (:class:`sync_engine.users.UserError`) prints why and exits 2.
    """
    from sync_engine import audit
    from sync_engine.users import UserError

    runtime = _runtime(config)
    try:
        with runtime.transaction() as session:
            result = change(session)
        audit.record(runtime.sessions, _who(by), action, username, "ok", via="cli", **details)
    except UserError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        runtime.close()
    return result


@users_app.command("add")
def users_add(
    username: str,
    role: str = typer.Option(..., "--role", help="admin | support | viewer"),
    password_file: Path | None = typer.Option(
        None, "--password-file", help="read the password from this file (else $BILLSYNC_PASSWORD or a prompt)"
    ),
    by: str | None = ByOption,
    config: Path = ConfigOption,
) -> None:
    """Add a user who logs in to the console with a password."""
    from sync_engine.users import add_user

    password = _password_from(password_file)
    _user_change(config, by, "user_add", username, lambda s: add_user(s, username, password, role), role=role)
    typer.echo(f"user {username} added ({role})")


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json"), config: Path = ConfigOption) -> None:
    """Users, their roles and whether they may log in."""
    from sync_engine.users import list_users, user_dict

    rows = _read(config, lambda session: [user_dict(u) for u in list_users(session)])
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        state = "active" if r["active"] else "disabled"
        typer.echo(
            f"{r['username']:<24} {r['role']:<8} {state:<9} last login {r['last_login_at'] or 'never'}"
        )


@users_app.command("disable")
def users_disable(username: str, by: str | None = ByOption, config: Path = ConfigOption) -> None:
    """Stop a user: no more logins; open sessions end and API tokens stop working at once."""
    from sync_engine.users import disable_user

    _user_change(config, by, "user_disable", username, lambda s: disable_user(s, username))
    typer.echo(f"user {username} disabled")


@users_app.command("token")
def users_token(
    username: str,
    name: str = typer.Option("api", "--name", help="what the token is for"),
    by: str | None = ByOption,
    config: Path = ConfigOption,
) -> None:
    """A new API token for USERNAME (printed once; only its hash is kept). Use: Authorization: Bearer TOKEN."""
    from sync_engine.users import create_token

    token = _user_change(
        config, by, "token_create", username, lambda s: create_token(s, username, name), name=name
    )
    typer.echo(token)


@payments_app.command("sepa-export")
def payments_sepa_export(
    out: Path = typer.Option(..., "--out", help="the pain.008 file to write"),
    collection_date: str | None = typer.Option(
        None, "--collection-date", help="default: today + sepa.lead_days"
    ),
    as_of: str = typer.Option(_today(), "--as-of"),
    config: Path = ConfigOption,
) -> None:
    """Write a SEPA direct-debit collection (pain.008) for due invoices of customers with a mandate."""
    from sync_engine.sepa_export import SepaExportError, write_sepa_export

    runtime = _runtime(config)
    try:
        with runtime.sessions() as session:
            export = write_sepa_export(
                runtime.settings,
                session,
                out,
                _date(as_of),  # type: ignore[arg-type]
                _date(collection_date) if collection_date else None,  # type: ignore[arg-type]
            )
    except SepaExportError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        runtime.close()
    for number, reason in export.skipped:
        typer.echo(f"skipped {number}: {reason}")
    if not export.count:
        typer.echo("nothing due for collection; no file written")
        return
    typer.echo(
        f"{out}: {export.count} collection(s), {export.total} EUR on {export.collection_date} "
        f"(message id {export.message_id})"
    )


export_app = typer.Typer(help="Export the books.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("ledger")
def export_ledger(
    out: Path = typer.Option(..., "--out", help="the ledger file to write"),
    format: str = typer.Option("beancount", "--format", help="beancount"),
    until: str | None = typer.Option(None, "--until", help="last day included (default: everything)"),
    config: Path = ConfigOption,
) -> None:
    """Invoices, payments, credits and refunds as a double-entry ledger (check it with bean-check)."""
    from sync_engine.ledger import LedgerError, write_ledger

    if format != "beancount":
        typer.echo(f"billsync: unknown format {format!r} (allowed: beancount)", err=True)
        raise typer.Exit(2)
    runtime = _runtime(config)
    try:
        with runtime.sessions() as session:
            write_ledger(session, runtime.settings, out, until=_date(until) if until else None)  # type: ignore[arg-type]
    except LedgerError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    typer.echo(str(out))


reminders_app = typer.Typer(help="Dunning: payment reminders by e-mail.", no_args_is_help=True)
app.add_typer(reminders_app, name="reminders")


@reminders_app.command("run")
def reminders_run(as_of: str = typer.Option(_today(), "--as-of"), config: Path = ConfigOption) -> None:
    """Mark late invoices overdue and send the reminders due (each step at most once per invoice)."""
    from sync_engine.dunning import run_dunning
    from sync_engine.payments import refresh_overdue

    runtime = _runtime(config)
    day = _date(as_of)
    try:
        with runtime.transaction() as session:
            refresh_overdue(session, runtime.settings, as_of=day)  # type: ignore[arg-type]
        result = run_dunning(runtime, as_of=day)  # type: ignore[arg-type]
    finally:
        runtime.close()
    if result.note:
        typer.echo(result.note)
    typer.echo(
        f"{result.sent} sent, {result.failed} failed, {result.retrying} to retry, "
        f"{result.skipped} skipped, {result.cancelled} cancelled"
    )
    for line in result.errors:
        typer.echo(f"  {line}")
    if result.failed:
        raise typer.Exit(1)


@reminders_app.command("list")
def reminders_list(as_json: bool = typer.Option(False, "--json"), config: Path = ConfigOption) -> None:
    """Invoices with reminders: their dunning level and every reminder sent, failed or pending."""
    from sync_engine.dunning import dunning_overview

    overview = _read(config, dunning_overview)
    if as_json:
        _echo_json(overview)
        return
    if not overview:
        typer.echo("no reminders yet")
    for item in overview:
        sent = ", ".join(f"{s['step']} {s['date']}" for s in item["sent"]) or "none sent"
        typer.echo(
            f"{item['number']} {item['customer']}: {item['status']}, {item['amount_due']} {item['currency']} due "
            f"{item['due_date']}, level {item['level']}: {sent}"
        )


@payments_app.command("collect")
def payments_collect(as_of: str = typer.Option(_today(), "--as-of"), config: Path = ConfigOption) -> None:
    """Charge the saved cards of customers who pay by card (Stripe), once per invoice."""
    from sync_engine.card_collection import collect_cards

    runtime = _runtime(config)
    try:
        result = collect_cards(runtime, as_of=_date(as_of))  # type: ignore[arg-type]
    finally:
        runtime.close()
    if result.note:
        typer.echo(result.note)
    typer.echo(
        f"{result.charged} charged, {result.processing} processing, {result.declined} declined, "
        f"{result.pending} to retry, {result.failed} failed ({result.api_calls} API calls)"
    )


# --------------------------------------------------------------------------------------------
# billsync report NAME: billing analytics (sync_engine.reports; definitions in docs/analytics.md)


@app.command("report")
def report(
    name: str = typer.Argument(
        ...,
        help="mrr, revenue, invoiced-vs-collected, ageing, dso, days-to-pay, payment-methods, retention, top-overdue",
    ),
    date_from: str | None = typer.Option(None, "--from", help="first day of the window (YYYY-MM-DD)"),
    date_to: str | None = typer.Option(None, "--to", help="last day of the window (default: as of)"),
    months: int | None = typer.Option(None, "--months", help="calendar months up to --to (default 12)"),
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        help="the day to report on (default: the later of today, UTC, and the books' last day)",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="the report as one JSON object (as the API returns it)"
    ),
    as_csv: bool = typer.Option(False, "--csv", help="the rows as CSV, with a header"),
    config: Path = ConfigOption,
) -> None:
    """A billing analytics report: the same figures as the web API's."""
    import json

    from sync_engine.reports import REPORT_NAMES, run_report

    if name not in REPORT_NAMES:
        typer.echo(f"billsync: unknown report {name!r}; choose one of: {', '.join(REPORT_NAMES)}", err=True)
        raise typer.Exit(2)
    if as_json and as_csv:
        typer.echo("billsync: choose one of --json and --csv", err=True)
        raise typer.Exit(2)
    days = {
        key: _date(text) if text else None
        for key, text in (("from", date_from), ("to", date_to), ("as_of", as_of))
    }
    runtime = _runtime(config)
    try:
        found = run_report(
            runtime,
            name,
            date_from=days["from"],  # type: ignore[arg-type]
            date_to=days["to"],  # type: ignore[arg-type]
            months=months,
            as_of=days["as_of"],  # type: ignore[arg-type]
        )
    except ValueError as exc:
        typer.echo(f"billsync: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps(found.to_dict()))
        return
    if as_csv:
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(found.columns)
        for row in found.rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in found.columns])
        typer.echo(buffer.getvalue(), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    caption = ", ".join(f"{key} {value}" for key, value in found.params.items())
    table = Table(title=found.title, caption=caption)
    for column in found.columns:
        table.add_column(
            column, justify="left" if column in ("month", "currency", "customer", "product") else "right"
        )
    for row in found.rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in found.columns))
    console = Console()
    if not console.is_terminal:  # piped or captured: as wide as the table, never cut
        widths = [max([len(c), *(len(str(r.get(c))) for r in found.rows)]) for c in found.columns]
        console = Console(width=max(console.width, sum(widths) + 3 * len(widths) + 1))
    console.print(table)
    for key, value in found.totals.items():
        console.print(f"{key}: {json.dumps(value)}", highlight=False, soft_wrap=True)
