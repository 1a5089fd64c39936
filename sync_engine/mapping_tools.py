"""``billsync mappings check`` and ``billsync mappings preview``: an admin's two tools for specs.

``check`` compiles specs against the canonical model and the vendor's schema and lists every
problem. ``preview`` maps sample records (a JSON file, or a few live records from a connection) and
shows input next to output, exactly as a sync would store or send them, and writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from connectors.quickbooks.settings import QuickBooksSettings
from connectors.salesforce.client import SalesforceConnector
from connectors.salesforce.settings import SalesforceSettings
from mappings.canonical import ENTITY_MODELS, validate_entity
from mappings.engine import Mapper, MappingError, get_path
from mappings.spec import BUILTIN_DIR, MappingSpec, SpecError, SpecProblem, load_spec
from sync_engine.bindings import BindingLookups
from sync_engine.pull import describe_validation
from sync_engine.schemas import schema_for
from sync_engine.settings import ConfigErrors, Settings, load_settings, resolve_spec_path
from sync_engine.store.db import make_engine, session_factory


def shipped_specs() -> list[Path]:
    return sorted(BUILTIN_DIR.rglob("*.yaml"))


def configured_specs(settings: Settings) -> list[Path]:
    refs = [s.mapping for s in settings.streams]
    refs += [ref for d in settings.destinations for ref in d.mappings.values()]
    return [settings.resolve_spec(ref) for ref in refs]


def check_specs(paths: Iterable[Path]) -> tuple[int, list[SpecProblem]]:
    """Compile each spec once; returns how many were checked and every problem found."""
    problems: list[SpecProblem] = []
    seen: set[Path] = set()
    for path in paths:
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        try:
            load_spec(path, schema_for)
        except SpecError as exc:
            problems.extend(exc.problems)
    return len(seen), problems


def run_check(paths: Sequence[Path], config: Path, console: Console | None = None) -> int:
    console = console or Console(highlight=False)
    targets = list(paths)
    config_problems = 0
    if not targets:
        targets = shipped_specs()
        if config.exists():
            try:
                targets += configured_specs(load_settings(config))
            except ConfigErrors as exc:
                for config_problem in exc.problems:
                    console.print(str(config_problem), markup=False)
                config_problems = len(exc.problems)
    checked, problems = check_specs(targets)
    for problem in problems:
        console.print(str(problem), markup=False)
    total = len(problems) + config_problems
    if total:
        console.print(f"{total} problem(s) in {checked} spec(s)", markup=False)
        return 2
    console.print(f"{checked} spec(s) checked: no problems", markup=False)
    return 0


# -- preview -----------------------------------------------------------------------------------------
@dataclass
class PreviewRow:
    input: dict[str, Any]
    output: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def preview_records(
    spec: MappingSpec, records: Sequence[dict[str, Any]], lookups: BindingLookups | None = None
) -> list[PreviewRow]:
    """Map each record as the sync would (inbound: validated canonical data), collecting errors."""
    mapper = Mapper(spec, lookups)
    rows = []
    for record in records:
        shown = {name: get_path(record, name) for name in spec.source_fields if "." not in name}
        row = PreviewRow(input=_json(shown or record))
        try:
            mapped = mapper.map(record)
            if spec.direction == "inbound" and spec.entity in ENTITY_MODELS:
                mapped = validate_entity(spec.entity, mapped)
            row.output = _json(mapped)
        except MappingError as exc:
            row.errors = [str(issue) for issue in exc.issues]
        except ValidationError as exc:
            row.errors = [describe_validation(exc)]
        rows.append(row)
    return rows


def load_records(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("records", [data])
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{path}: expected a JSON list of records (objects), or {{'records': [...]}}")
    return data


def fetch_records(settings: Settings, connection: str, spec: MappingSpec, limit: int) -> list[dict[str, Any]]:
    """A few live records of the spec's object, read (never written) through the connection."""
    conn = settings.connections.get(connection)
    if conn is None:
        raise ValueError(
            f"no connection {connection!r} in the settings (defined: {', '.join(settings.connections)})"
        )
    if isinstance(conn, SalesforceSettings):
        fields = sorted({*spec.source_fields, spec.key or "Id"})
        out: list[dict[str, Any]] = []
        with SalesforceConnector(conn) as sf:
            for page in sf.pull_pages(
                spec.object, [f for f in fields if "." not in f or f.split(".")[0] not in ("lines",)], None
            ):
                out.extend(page[: limit - len(out)])
                if len(out) >= limit:
                    break
        return out
    if isinstance(conn, QuickBooksSettings):
        from connectors.quickbooks.client import QuickBooksConnector
        from sync_engine.store.tokens import DbTokenStore

        # Reading QBO may refresh the access token; Intuit rotates the refresh token then, and the
        # new one must be stored (or the daemon's next refresh fails). That bookkeeping is the only
        # thing a preview writes: no record, binding or outbox row.
        engine = make_engine(settings.database_url)
        try:
            qbo = QuickBooksConnector(conn, DbTokenStore(session_factory(engine), connection))
            statement = f"SELECT * FROM {spec.object} MAXRESULTS {min(limit, 1000)}"
            return [dict(row) for _, row in zip(range(limit), qbo.query(statement), strict=False)]
        finally:
            engine.dispose()
    raise ValueError(f"connection {connection!r} cannot be previewed")  # pragma: no cover


@contextmanager
def preview_lookups(
    settings: Settings | None, spec: MappingSpec, connection: str | None
) -> Iterator[BindingLookups | None]:
    """Read-only binding lookups when there are settings (and so a state store)."""
    if settings is None:
        yield None
        return
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine, read_only=True)() as session:
            yield BindingLookups(session, {spec.system: connection} if connection else {})
    finally:
        engine.dispose()


def render(rows: Sequence[PreviewRow], spec: MappingSpec, console: Console) -> None:
    table = Table(title=f"{spec.file}: {spec.system} {spec.object} -> {spec.entity} ({spec.direction})")
    table.add_column("#", justify="right")
    table.add_column("input")
    table.add_column("output")
    for i, row in enumerate(rows, start=1):
        result = (
            json.dumps(row.output, indent=1) if row.output is not None else "[red]" + "\n".join(row.errors)
        )
        table.add_row(str(i), json.dumps(row.input, indent=1), result)
    console.print(table)
    failed = sum(1 for r in rows if r.errors)
    console.print(f"{len(rows)} record(s), {failed} with errors; nothing was written")


def run_preview(
    spec_ref: str,
    *,
    input_file: Path | None,
    from_connection: str | None,
    limit: int,
    as_json: bool,
    config: Path,
    console: Console | None = None,
) -> int:
    console = console or Console()
    settings = load_settings(config) if config.exists() else None
    path = settings.resolve_spec(spec_ref) if settings else resolve_spec_path(spec_ref, Path.cwd())
    spec = load_spec(path, schema_for)
    if (input_file is None) == (from_connection is None):
        raise ValueError("give exactly one of --input FILE.json or --from CONNECTION")
    if input_file is not None:
        records = load_records(input_file)[:limit]
    else:
        if settings is None:
            raise ValueError(f"--from needs the settings file ({config} not found)")
        records = fetch_records(settings, str(from_connection), spec, limit)
    with preview_lookups(settings, spec, from_connection) as lookups:
        rows = preview_records(spec, records, lookups)
    if as_json:
        console.print_json(json.dumps([row.__dict__ for row in rows]))
    else:
        render(rows, spec, console)
    return 0
