"""The ``billsync`` command line (typer + rich). Commands import their modules lazily so that
``billsync --help`` stays fast and a broken optional part never blocks the others."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="billsync: billing-aware CRM -> invoices -> ERP/accounting sync.", no_args_is_help=True)
config_app = typer.Typer(help="Check billsync.yaml.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the state store.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")

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


def _settings(config: Path):  # type: ignore[no-untyped-def]
    from sync_engine.config_check import load_or_exit

    return load_or_exit(config)


def main() -> None:
    app()
