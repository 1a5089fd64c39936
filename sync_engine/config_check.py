"""``billsync config check`` and the one way every command loads its settings.

Problems are printed one per line as ``file:line:column: key: message (allowed: ...)`` so editors and
CI logs can jump to them; nothing here ever shows a traceback to the admin.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import typer
from rich.console import Console
from rich.text import Text

from sync_engine.settings import ConfigErrors, Settings, load_settings

EXIT_PROBLEMS = 2


def _console(file: TextIO) -> Console:
    # soft_wrap keeps one problem on one line, whatever the terminal width
    return Console(file=file, soft_wrap=True, highlight=False)


def _missing_file(path: Path) -> str:
    return f"{path}: no such file; pass --config PATH, or copy config/billsync.example.yaml to {path} and edit it"


def _print_problems(console: Console, path: Path, errors: ConfigErrors) -> None:
    for problem in errors.problems:
        console.print(Text(str(problem), style="red"))
    count = len(errors.problems)
    console.print(Text(f"{count} problem{'s' if count != 1 else ''} in {path}", style="bold red"))


def _summary(settings: Settings, path: Path) -> str:
    connections = ", ".join(f"{name} ({conn.type})" for name, conn in settings.connections.items()) or "none"
    enabled = sum(1 for s in settings.streams if s.enabled)
    return (
        f"{path} is valid: {len(settings.connections)} connection(s): {connections}; "
        f"{len(settings.streams)} stream(s) ({enabled} enabled); "
        f"{len(settings.destinations)} destination(s); {len(settings.schedules)} schedule(s)"
    )


def run_check(path: Path) -> int:
    """Print every problem of ``path`` (or a short summary) and return the exit code: 0 ok, 2 problems."""
    console = _console(sys.stdout)
    if not path.exists():
        console.print(Text(_missing_file(path), style="red"))
        return EXIT_PROBLEMS
    try:
        settings = load_settings(path)
    except ConfigErrors as errors:
        _print_problems(console, path, errors)
        return EXIT_PROBLEMS
    template_problems = _template_problems(settings)
    for problem in template_problems:
        console.print(Text(f"{path}: {problem}", style="red"))
    if template_problems:
        return EXIT_PROBLEMS
    console.print(Text(_summary(settings, path), style="green"))
    return 0


def _template_problems(settings: Settings) -> list[str]:
    """Mail templates rendered once for a sample invoice: a typo shows before a customer is due."""
    from sync_engine.delivery import check_delivery_templates
    from sync_engine.dunning import check_templates

    problems = check_templates(settings) if settings.dunning.enabled and settings.mail else []
    if settings.delivery.enabled and settings.mail:
        problems += check_delivery_templates(settings)
    return problems


def load_or_exit(path: Path) -> Settings:
    """Settings for a command; on problems print them to stderr and exit 2 (no traceback)."""
    console = _console(sys.stderr)
    if not path.exists():
        console.print(Text(_missing_file(path), style="red"))
        raise typer.Exit(EXIT_PROBLEMS)
    try:
        return load_settings(path)
    except ConfigErrors as errors:
        _print_problems(console, path, errors)
        console.print(Text(f"run: billsync config check -c {path}", style="dim"))
        raise typer.Exit(EXIT_PROBLEMS) from None
