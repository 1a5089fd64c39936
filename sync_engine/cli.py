"""The ``billsync`` command line (typer + rich). Commands import their modules lazily so that
``billsync --help`` stays fast and a broken optional part never blocks the others."""

from __future__ import annotations

from pathlib import Path

import typer

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
    from sync_engine.store.db import upgrade_database

    upgrade_database(_settings(config).database_url, revision)
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
) -> None:
    """Run pull -> bill -> push against local Salesforce and QuickBooks sandboxes and summarise."""
    import json

    from rich.console import Console

    from sync_engine.demo import run_demo
    from sync_engine.progress import RichProgress

    if as_json:
        summary = run_demo(workdir=workdir, accounts=accounts, orders=orders)
        typer.echo(json.dumps(summary, indent=None, sort_keys=False))
        return
    console = Console()
    with RichProgress(console) as progress:
        summary = run_demo(workdir=workdir, accounts=accounts, orders=orders, progress=progress)
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
    step: list[str] = typer.Option(["pull", "bill", "push"], help="steps to run: pull, bill, push"),
) -> None:
    """Run one cycle now: pull every stream, run billing, push to every destination."""
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
) -> None:
    """Run the Salesforce and QuickBooks Online sandboxes in the foreground (Ctrl-C stops them).

    Writes WORKDIR/billsync.yaml pointing at them, so `billsync sync -c WORKDIR/billsync.yaml` works.
    """
    import datetime as dt
    import time

    from connectors.quickbooks.sandbox import QuickBooksSandbox
    from connectors.salesforce.sandbox import SalesforceSandbox
    from sync_engine.demo import seed_salesforce, write_workdir

    workdir = workdir.resolve()
    (workdir / "sandbox").mkdir(parents=True, exist_ok=True)
    with (
        SalesforceSandbox(cert_dir=workdir / "sandbox") as sf,
        QuickBooksSandbox(cert_dir=workdir / "sandbox") as qbo,
    ):
        seed_salesforce(sf, accounts=accounts, orders=orders, today=dt.datetime.now(dt.UTC).date())
        config = write_workdir(workdir, sf, qbo)
        typer.echo(f"Salesforce sandbox:  {sf.base_url}  (user {sf.username})")
        typer.echo(f"QuickBooks sandbox:  {qbo.base_url}  (company {qbo.realm_id})")
        typer.echo(f"certificate:         {sf.cert_file}")
        typer.echo(f"settings:            {config}  (secrets in {workdir / 'secrets'})")
        typer.echo("Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            typer.echo("stopped")
