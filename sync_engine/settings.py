"""``billsync.yaml``: the settings models and a loader that reports every problem at once.

An IT admin edits this file by hand and usually at the worst moment, so loading never stops at the
first mistake and never shows a traceback: it collects YAML syntax errors, unknown keys (with a
"did you mean"), wrong types (in plain words, with what is allowed), missing environment variables,
secrets written in plain text, dangling connection names and missing files, each with the file, line
and dotted key, sorted by line. Secrets are only ever taken from ``${ENV_VAR}`` or a ``<field>_file``
so the file itself can be committed and shared.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import annotated_types
from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from connectors.nav.settings import NavSettings
from connectors.quickbooks.settings import QuickBooksSettings
from connectors.salesforce.settings import SalesforceSettings
from mappings.spec import BUILTIN_DIR
from mappings.yaml_lines import LocatedDocument, PathKey, YamlSyntaxError, load_located

__all__ = [
    "BUILTIN_PREFIX",
    "BillingSettings",
    "ConfigErrors",
    "ConfigProblem",
    "Connection",
    "DestinationSettings",
    "LoggingSettings",
    "ScheduleSettings",
    "Settings",
    "StreamSettings",
    "builtin_specs_dir",
    "load_settings",
    "resolve_spec_path",
]

BUILTIN_PREFIX = "builtin:"
PLAIN_SECRET_MESSAGE = "secrets may not be written in billsync.yaml; use ${ENV_VAR} or {field}_file: PATH"


class StripeSettings(BaseModel):
    """A Stripe account: the API key for automatic card collection, the secret webhooks are signed with.

    ``api_base`` points the SDK at a sandbox; ``tolerance_seconds`` is how old a signed webhook may be
    (older ones are refused as replays).
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["stripe"]
    api_key: SecretStr | None = None
    webhook_secret: SecretStr
    api_base: str | None = None
    ca_file: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    tolerance_seconds: int = Field(default=300, ge=1, le=3600)


Connection = Annotated[
    SalesforceSettings | QuickBooksSettings | NavSettings | StripeSettings, Field(discriminator="type")
]


class StreamSettings(BaseModel):
    """One inbound stream: a Salesforce object read into one canonical entity through a mapping."""

    model_config = ConfigDict(extra="forbid")

    name: str
    connection: str
    object: str
    entity: Literal["customer", "product", "price", "order", "order_line"]
    mapping: str
    enabled: bool = True


class DestinationSettings(BaseModel):
    """One outbound destination (a QuickBooks company, a SOAP ERP) and its outbound mapping per entity."""

    model_config = ConfigDict(extra="forbid")

    name: str
    connection: str
    mappings: dict[
        Literal[
            "customer",
            "product",
            "invoice",
            "invoice_void",
            "invoice_status",
            "payment",
            "credit_note",
            "credit_application",
            "customer_balance",
            "order_balance",
        ],
        str,
    ]
    #: writes per call; default and ceiling are the system's own limit (QBO 30, Salesforce 200, NAV 100)
    batch_size: int | None = Field(default=None, ge=1, le=200)


class BillingSettings(BaseModel):
    """Invoice numbering and default payment terms."""

    model_config = ConfigDict(extra="forbid")

    series: str = "INV"
    number_prefix: str = "INV-"
    number_width: int = Field(default=6, ge=3, le=12)
    payment_terms_days: int = Field(default=30, ge=0, le=365)


class ScheduleSettings(BaseModel):
    """When the daemon enqueues a job: a five-field cron expression (UTC) or a fixed interval."""

    model_config = ConfigDict(extra="forbid")

    name: str
    job: Literal["pull", "bill", "deliver", "collect", "push", "cycle"]
    cron: str | None = None
    every_minutes: int | None = Field(default=None, ge=1)
    misfire_grace_seconds: int = Field(default=300, ge=1)
    coalesce: bool = True

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                CronTrigger.from_crontab(value, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"not a valid cron expression {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _exactly_one_timing(self) -> ScheduleSettings:
        if (self.cron is None) == (self.every_minutes is None):
            raise ValueError("give exactly one of cron or every_minutes")
        return self

    def trigger(self, *, aligned: bool = False) -> Any:
        """The APScheduler trigger (UTC) for this schedule.

        ``aligned``: intervals count from a fixed epoch instead of the daemon's start, so that every
        daemon computes the same fire times (the distributed executor enqueues each fire time once)."""
        import datetime as dt

        from apscheduler.triggers.interval import IntervalTrigger

        if self.cron is not None:
            return CronTrigger.from_crontab(self.cron, timezone="UTC")
        start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC) if aligned else None
        return IntervalTrigger(minutes=self.every_minutes or 1, timezone="UTC", start_date=start)


class LoggingSettings(BaseModel):
    """``console`` is for people at a terminal, ``json`` (one object per line) for the daemon."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class SellerSettings(BaseModel):
    """Who issues the invoices: printed on every invoice document."""

    model_config = ConfigDict(extra="forbid")

    name: str
    address: list[str] = Field(default_factory=list)  # printed lines
    tax_id: str | None = None
    email: str | None = None
    phone: str | None = None
    payment_instructions: str | None = None  # e.g. "IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX"
    # What structured e-invoices (EN 16931) need beyond the printed lines:
    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")  # ISO 3166-1 alpha-2
    vat_id: str | None = None  # BT-31, with its country prefix: DE123456789
    tax_number: str | None = None  # BT-32, a local tax registration number
    legal_id: str | None = None  # BT-30, e.g. the commercial register number
    contact_name: str | None = None
    #: BT-34: where the seller receives e-invoices (Peppol participant id) and its EAS scheme
    electronic_address: str | None = None
    electronic_address_scheme: str = "EM"


class MailSettings(BaseModel):
    """The SMTP server reminders (and invoices) are sent through, and the addresses they carry."""

    model_config = ConfigDict(extra="forbid")

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_address: str
    reply_to: str | None = None
    bcc: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    ca_file: str | None = None


DunningLevel = Literal["reminded", "final_notice", "suspended"]


class DunningStep(BaseModel):
    """One reminder, ``days`` after the due date (negative: before it)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    days: int = Field(ge=-60, le=365)
    level: DunningLevel = "reminded"
    template: str = "reminder"  # built-in: upcoming | reminder | final_notice | suspended; or a path


def _default_dunning_steps() -> list[DunningStep]:
    return [
        DunningStep(name="upcoming", days=-3, template="upcoming"),
        DunningStep(name="due", days=0),
        DunningStep(name="late-7", days=7),
        DunningStep(name="late-14", days=14, level="final_notice", template="final_notice"),
        DunningStep(name="late-30", days=30, level="suspended", template="suspended"),
    ]


class DunningSettings(BaseModel):
    """Reminder schedules per customer group (the customer's ``dunning_group``, else ``default_group``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    default_group: str = "standard"
    groups: dict[str, list[DunningStep]] = Field(
        default_factory=lambda: {"standard": _default_dunning_steps()}
    )
    attach_pdf: bool = True
    #: A step missed for longer than this (the daemon was down) is skipped, not sent late.
    max_lateness_days: int = Field(default=7, ge=0, le=365)

    @model_validator(mode="after")
    def _groups_sound(self) -> DunningSettings:
        if self.default_group not in self.groups:
            raise ValueError(
                f"default_group {self.default_group!r} is not one of the groups ({', '.join(self.groups)})"
            )
        for group, steps in self.groups.items():
            names = [s.name for s in steps]
            if len(set(names)) != len(names):
                raise ValueError(f"group {group!r}: step names must be unique")
            if [s.days for s in steps] != sorted(s.days for s in steps):
                raise ValueError(f"group {group!r}: steps must be in order of days")
        return self


class DeliverySettings(BaseModel):
    """Sending each finalised invoice to the customer (``delivery:`` in billsync.yaml).

    Invoices are queued at finalisation when ``enabled`` and ``mail`` is configured. ``reply_to``
    and ``bcc`` name the finance mailbox (they replace ``mail.reply_to`` / add to ``mail.bcc`` for
    invoices). ``templates``: a folder searched before the built-in templates (see
    ``sync_engine/templates/delivery/README.md``). A temporary SMTP failure is retried after
    ``retry_seconds``, doubling up to ``retry_max_seconds``, ``max_attempts`` times in all; a run
    waits for retries due within ``wait_seconds`` before it leaves them to the next run.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    reply_to: str | None = None
    bcc: list[str] = Field(default_factory=list)
    templates: str | None = None
    default_language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")
    #: Where the merged PDF of the invoices to print and post is written (relative: to billsync.yaml).
    print_folder: str = "print"
    retry_seconds: float = Field(default=30.0, gt=0, le=86400)
    retry_max_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)
    max_attempts: int = Field(default=8, ge=1, le=100)
    wait_seconds: float = Field(default=60.0, ge=0, le=3600)


EInvoiceFormat = Literal["ubl", "peppol", "xrechnung", "cii", "facturx"]


class EInvoiceSettings(BaseModel):
    """Structured e-invoices (EN 16931: UBL, Peppol BIS 3, XRechnung, CII, Factur-X).

    ``tax_categories`` maps a billing tax id to its VAT category (UNCL 5305, default ``S``);
    lines without tax get ``untaxed_category`` (``O``: not subject to VAT, e.g. a US seller; ``E``
    exempt, ``AE`` reverse charge, ``K`` intra-EU, ``G`` export, ``Z`` zero rated) with
    ``exemption_reason``. ``folder``: every finalised invoice is also exported there in each of
    ``folder_formats`` (validated first).
    """

    model_config = ConfigDict(extra="forbid")

    tax_categories: dict[str, Literal["S", "Z", "E", "AE", "K", "G", "O", "L", "M"]] = Field(
        default_factory=dict
    )
    untaxed_category: Literal["Z", "E", "AE", "K", "G", "O"] = "O"
    exemption_reason: str | None = None
    unit_code: str = Field(default="C62", pattern=r"^[A-Z0-9]{1,3}$")
    folder: str | None = None
    folder_formats: list[EInvoiceFormat] = Field(default_factory=lambda: list[EInvoiceFormat](["ubl"]))


class BankAccountSettings(BaseModel):
    """The seller's bank account: statements of it are imported, SEPA collections credit it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    iban: str
    bic: str | None = None
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")


class SepaSettings(BaseModel):
    """SEPA Direct Debit (pain.008): the creditor identifier and when collections are due."""

    model_config = ConfigDict(extra="forbid")

    creditor_id: str
    scheme: Literal["CORE", "B2B"] = "CORE"
    sequence: Literal["FRST", "RCUR", "OOFF"] = "RCUR"
    lead_days: int = Field(default=2, ge=1, le=30)  # days between the export and the collection date


class PaymentSettings(BaseModel):
    """Where payments come from and how they are matched."""

    model_config = ConfigDict(extra="forbid")

    #: The QuickBooks connection whose payments (entered by accountants) are pulled.
    quickbooks: str | None = None
    #: The Stripe connection: webhooks, and card collection when ``collect_cards`` is on.
    stripe: str | None = None
    collect_cards: bool = False
    bank_account: BankAccountSettings | None = None
    sepa: SepaSettings | None = None
    #: Receipts that differ from an open amount by at most this much still match it by amount.
    match_tolerance: Decimal = Field(default=Decimal("0"), ge=0, le=Decimal("100"))


class LedgerSettings(BaseModel):
    """Account names used by ``billsync export ledger`` (Beancount)."""

    model_config = ConfigDict(extra="forbid")

    receivable: str = "Assets:Receivable"
    bank: str = "Assets:Bank"
    card_clearing: str = "Assets:Stripe"
    undeposited: str = "Assets:UndepositedFunds"
    customer_credit: str = "Liabilities:CustomerCredit"
    revenue: str = "Income:Sales"
    tax: str = "Liabilities:SalesTax"
    discounts: str = "Income:Discounts"
    opening_date: str = "2000-01-01"


class Settings(BaseModel):
    """The whole of ``billsync.yaml`` after loading: env vars expanded, secrets resolved, paths absolute."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    database_url: str = "sqlite:///billsync.db"
    #: who runs the scheduled work: a thread pool inside the daemon, or ``billsync worker`` processes
    #: on any number of machines through procrastinate's queue in PostgreSQL (DESIGN.md §5)
    executor: Literal["embedded", "procrastinate"] = "embedded"
    #: procrastinate only: each destination's outbox is pushed in this many parts (split by customer),
    #: so that several workers can push one destination at once, each part by one worker at a time
    push_parts: int = Field(default=1, ge=1, le=64)
    catalog: Path = Path("catalog.yaml")
    connections: dict[str, Connection]
    streams: list[StreamSettings]
    destinations: list[DestinationSettings]
    billing: BillingSettings = Field(default_factory=BillingSettings)
    schedules: list[ScheduleSettings] = Field(default_factory=list)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    seller: SellerSettings | None = None
    payments: PaymentSettings = Field(default_factory=PaymentSettings)
    mail: MailSettings | None = None
    dunning: DunningSettings = Field(default_factory=DunningSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    einvoice: EInvoiceSettings = Field(default_factory=EInvoiceSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: Path | None = PrivateAttr(default=None)

    @property
    def base_dir(self) -> Path:
        """The folder of the yaml file; relative paths in it are resolved against this."""
        return self._base_dir

    @property
    def source(self) -> Path | None:
        """The yaml file these settings came from (None when built in code)."""
        return self._source

    def resolve_spec(self, ref: str) -> Path:
        """Absolute path of a mapping spec reference (``builtin:<name>`` or a path)."""
        return resolve_spec_path(ref, self._base_dir)

    def secret_values(self) -> list[str]:
        """Every resolved secret (and a database password), for log redaction."""
        found = [value for value in _secrets_in(self) if value]
        password = urlsplit(self.database_url).password if "://" in self.database_url else None
        if password:
            found.append(password)
        return list(dict.fromkeys(found))


def builtin_specs_dir() -> Path:
    """Where ``builtin:<name>`` specs live: ``mappings/specs/`` of the installed package."""
    return BUILTIN_DIR


def resolve_spec_path(ref: str, base_dir: Path) -> Path:
    """``builtin:salesforce/account.in`` -> ``mappings/specs/salesforce/account.in.yaml``; else base_dir/ref."""
    if ref.startswith(BUILTIN_PREFIX):
        return builtin_specs_dir() / f"{ref[len(BUILTIN_PREFIX) :]}.yaml"
    return (base_dir / Path(ref).expanduser()).resolve()


def _secrets_in(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets_in(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secrets_in(item)


# --------------------------------------------------------------------------------------------
# problems


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in the configuration, located well enough for an admin to fix it."""

    file: Path
    line: int | None
    column: int | None
    key: str
    message: str
    allowed: str | None = None

    def __str__(self) -> str:
        where = str(self.file)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        if self.allowed:
            text += f" (allowed: {self.allowed})"
        return text


class ConfigErrors(Exception):
    """Loading failed; ``problems`` holds all of them, sorted by line."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.column or 0, p.key))
        super().__init__("\n".join(str(p) for p in self.problems))


def dotted(path: PathKey) -> str:
    """``("streams", 0, "connection")`` -> ``streams[0].connection``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class _Collector:
    """Accumulates problems with positions taken from the located YAML document."""

    def __init__(self, file: Path, doc: LocatedDocument) -> None:
        self.file, self.doc = file, doc
        self.problems: list[ConfigProblem] = []
        self.keys: set[str] = set()

    def add(
        self,
        path: PathKey,
        message: str,
        allowed: str | None = None,
        *,
        at: PathKey | None = None,
        located: bool = True,
    ) -> None:
        mark = self.doc.where(path if at is None else at) if located else None
        key = dotted(path)
        self.keys.add(key)
        self.problems.append(
            ConfigProblem(
                self.file, mark.line if mark else None, mark.column if mark else None, key, message, allowed
            )
        )


# --------------------------------------------------------------------------------------------
# walking models and raw data together


def _strip_annotated(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    metadata: tuple[Any, ...] = ()
    while typing.get_origin(annotation) is Annotated:
        args = typing.get_args(annotation)
        annotation, metadata = args[0], metadata + tuple(args[1:])
    return annotation, metadata


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    return (annotation,)


def _is_secret(annotation: Any) -> bool:
    annotation, _ = _strip_annotated(annotation)
    return any(member is SecretStr for member in _union_members(annotation))


def _secret_fields(model: type[BaseModel]) -> set[str]:
    """Found by looking at the field types, so a connector adding a secret needs no change here."""
    return {name for name, info in model.model_fields.items() if _is_secret(info.annotation)}


def _pick_model(annotation: Any, value: Any) -> type[BaseModel] | None:
    """The model that will validate ``value`` (a tagged union is resolved by its tag), if any."""
    annotation, metadata = _strip_annotated(annotation)
    models = [m for m in _union_members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) == 1:
        return models[0]
    if not models or not isinstance(value, dict):
        return None
    discriminator = next((m.discriminator for m in metadata if getattr(m, "discriminator", None)), "type")
    for model in models:
        field = model.model_fields.get(str(discriminator))
        if field is not None and value.get(discriminator) in typing.get_args(field.annotation):
            return model
    return None


def _container_item(annotation: Any) -> tuple[str, Any] | None:
    """("list", item type) or ("dict", value type) for list/dict annotations."""
    annotation, _ = _strip_annotated(annotation)
    for member in _union_members(annotation):
        origin = typing.get_origin(member)
        args = typing.get_args(member)
        if origin is list and args:
            return "list", args[0]
        if origin is dict and len(args) == 2:
            return "dict", args[1]
    return None


def _model_at(data: Any, path: PathKey) -> type[BaseModel] | None:
    """The settings model that applies to the mapping at ``path`` in the raw data."""
    annotation: Any = Settings
    value = data
    for part in path:
        model = _pick_model(annotation, value)
        if model is not None:
            if not isinstance(value, dict) or not isinstance(part, str) or part not in model.model_fields:
                return None
            annotation, value = model.model_fields[part].annotation, value.get(part)
            continue
        container = _container_item(annotation)
        if container is None:
            return None
        annotation = container[1]
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return _pick_model(annotation, value)


_ENV_WHOLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_ANY = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


_UNRESOLVED = "<unresolved secret>"  # stands in after a problem was reported; never reaches Settings


class _Preparer:
    """Expands ``${VAR}``, resolves secrets from env/files, and remembers the secrets it saw."""

    def __init__(self, collector: _Collector, environ: Mapping[str, str], base_dir: Path) -> None:
        self.out, self.environ, self.base_dir = collector, environ, base_dir

    def expand(self, text: str, path: PathKey) -> str:
        """``${VAR}`` and ``${VAR:-default}`` anywhere in a string; ``$$`` is a literal ``$``."""

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in self.environ:
                return self.environ[name]
            if default is not None:
                return default
            self.out.add(path, f"environment variable {name} is not set")
            return ""

        return _ENV_ANY.sub(replace, text)

    def walk(self, value: Any, annotation: Any, path: PathKey) -> Any:
        model = _pick_model(annotation, value)
        if model is not None and isinstance(value, dict):
            return self._model(value, model, path)
        container = _container_item(annotation)
        if container is not None and isinstance(value, list) and container[0] == "list":
            return [self.walk(item, container[1], (*path, i)) for i, item in enumerate(value)]
        if container is not None and isinstance(value, dict) and container[0] == "dict":
            return {k: self.walk(v, container[1], (*path, str(k))) for k, v in value.items()}
        return self._plain(value, path)

    def _plain(self, value: Any, path: PathKey) -> Any:
        if isinstance(value, str):
            return self.expand(value, path)
        if isinstance(value, dict):
            return {k: self._plain(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self._plain(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def _model(self, value: dict[Any, Any], model: type[BaseModel], path: PathKey) -> dict[Any, Any]:
        secrets = _secret_fields(model)
        result: dict[Any, Any] = {}
        for key, item in value.items():
            if key in secrets or (isinstance(key, str) and key.endswith("_file") and key[:-5] in secrets):
                continue
            field = model.model_fields.get(key) if isinstance(key, str) else None
            child = (*path, str(key))
            if model is Settings and key == "database_url" and isinstance(item, str):
                self._check_database_url(item, child)
            result[key] = self.walk(item, field.annotation, child) if field else self._plain(item, child)
        for name in sorted(secrets):
            file_key = f"{name}_file"
            if name in value and file_key in value:
                self.out.add((*path, file_key), f"give either {name} or {file_key}, not both")
                result[name] = _UNRESOLVED
            elif file_key in value:
                file_mark = self.out.doc.marks.get((*path, file_key))
                if file_mark is not None:
                    self.out.doc.marks.setdefault((*path, name), file_mark)
                result[name] = self._from_file(value[file_key], (*path, file_key))
            elif name in value:
                result[name] = self._from_env(value[name], (*path, name))
        return result

    def _from_env(self, raw: Any, path: PathKey) -> str | None:
        """The secret, or UNRESOLVED after reporting why (so pydantic adds no derived complaint)."""
        if raw is None:
            return None  # an optional secret left empty; pydantic complains if it is required
        match = _ENV_WHOLE.fullmatch(raw) if isinstance(raw, str) else None
        if match is None:
            if isinstance(raw, str) and raw.startswith("${") and ":-" in raw:
                self.out.add(path, "a secret may not have a ${VAR:-default}; set the variable or use a file")
            else:
                self.out.add(path, PLAIN_SECRET_MESSAGE.replace("{field}", str(path[-1])))
            return _UNRESOLVED
        name = match.group(1)
        if name not in self.environ:
            self.out.add(path, f"environment variable {name} is not set")
            return _UNRESOLVED
        if not self.environ[name]:
            self.out.add(path, f"environment variable {name} is empty")
            return _UNRESOLVED
        return self.environ[name]

    def _from_file(self, raw: Any, path: PathKey) -> str:
        if not isinstance(raw, str) or not raw.strip():
            self.out.add(path, "expected the path of a file that holds the secret")
            return _UNRESOLVED
        target = self.base_dir / Path(self.expand(raw, path)).expanduser()
        try:
            secret = target.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = (
                exc.strerror if isinstance(exc, OSError) and exc.strerror else "not readable as UTF-8 text"
            )
            self.out.add(path, f"cannot read secret file {target}: {reason}")
            return _UNRESOLVED
        if not secret:
            self.out.add(path, f"secret file {target} is empty")
            return _UNRESOLVED
        return secret

    def _check_database_url(self, raw: str, path: PathKey) -> None:
        try:
            password = urlsplit(raw).password if "://" in raw else None
        except ValueError:
            return
        if password and not _ENV_ANY.search(password):
            self.out.add(
                path,
                "the database password may not be written in billsync.yaml; "
                "use ${ENV_VAR}, e.g. postgresql://billsync:${PGPASSWORD}@db/billsync",
            )


# --------------------------------------------------------------------------------------------
# pydantic errors in plain words

_TYPE_WORDS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "dict_type": "a mapping of key: value lines",
    "model_type": "a mapping of key: value lines",
    "model_attributes_type": "a mapping of key: value lines",
    "list_type": "a list (lines starting with '- ')",
    "path_type": "a file path",
}
_BOUNDS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _range_words(model: type[BaseModel] | None, field: str | int) -> str | None:
    if model is None or not isinstance(field, str) or field not in model.model_fields:
        return None
    bounds: dict[str, Any] = {}
    for item in model.model_fields[field].metadata:
        for attr in ("gt", "ge", "lt", "le"):
            if isinstance(item, annotated_types.BaseMetadata) and getattr(item, attr, None) is not None:
                bounds[attr] = getattr(item, attr)
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']}..{bounds['le']}"
    words = {"gt": "more than", "ge": "at least", "lt": "less than", "le": "at most"}
    return ", ".join(f"{words[k]} {v}" for k, v in bounds.items()) or None


def _data_path(data: Any, loc: tuple[Any, ...]) -> PathKey:
    """Pydantic's ``loc`` -> the path in the YAML, dropping tags it inserts (e.g. ``quickbooks``)."""
    path: list[str | int] = []
    value = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(value, dict) and part in value:
            path.append(part)
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            path.append(part)
            value = value[part]
        elif part == "[key]" or (not last and isinstance(part, str) and isinstance(value, dict)):
            continue
        else:
            path.append(part)
            value = None
    return tuple(path)


def _translate(error: Any, data: Any, out: _Collector) -> None:
    kind = error["type"]
    loc = tuple(error["loc"])
    path = _data_path(data, loc)
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing":
        out.add(path, "required key is missing", at=path[:-1])
    elif kind == "extra_forbidden":
        model = _model_at(data, path[:-1])
        allowed: list[str] = []
        if model is not None:
            allowed = [name for name in model.model_fields]
            allowed += [f"{name}_file" for name in sorted(_secret_fields(model))]
        _unknown_key(out, path, allowed)
    elif loc and loc[-1] == "[key]":
        _unknown_key(
            out, path, [s.strip("'") for s in str(ctx.get("expected", "")).replace(" or ", ", ").split(", ")]
        )
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        tag_key = str(ctx.get("discriminator", "'type'")).strip("'")
        allowed_tags = str(ctx.get("expected_tags", "")).replace("'", "")
        if kind == "union_tag_invalid":
            out.add((*path, tag_key), f"unknown {tag_key} {ctx.get('tag')!r}", allowed_tags)
        else:
            out.add(
                (*path, tag_key),
                f"required key is missing (it says which kind of {path[0]})",
                allowed_tags,
                at=path,
            )
    elif kind == "literal_error":
        out.add(path, f"{_describe(value)} is not one of the allowed values", _choices(ctx.get("expected")))
    elif kind == "string_type" and isinstance(value, int | float):
        # ids and versions such as 9130350000000000 or 59.0 are read by YAML as numbers
        out.add(path, f"expected text, got the number {value!r}; put it in quotes", "text")
    elif kind in _TYPE_WORDS:
        out.add(path, f"expected {_TYPE_WORDS[kind]}, got {_describe(value)}", _TYPE_WORDS[kind])
    elif kind in _BOUNDS:
        limit = ctx.get(_BOUNDS[kind])
        words = {"gt": "more than", "ge": "at least", "lt": "less than", "le": "at most"}[_BOUNDS[kind]]
        parent = _model_at(data, path[:-1]) if path else None
        out.add(
            path,
            f"{_describe(value)} is out of range; it must be {words} {limit}",
            _range_words(parent, path[-1]) if path else None,
        )
    elif kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        allowed_cron = "five fields 'minute hour day month weekday' in UTC, e.g. '0 6 * * *'"
        out.add(path, message, allowed_cron if message.startswith("not a valid cron") else None)
    else:
        out.add(path, str(error["msg"]))


def _choices(expected: Any) -> str:
    """Pydantic's ``"'a', 'b' or 'c'"`` -> ``a, b, c``."""
    return str(expected or "").replace(" or ", ", ").replace("'", "")


def _unknown_key(out: _Collector, path: PathKey, allowed: list[str]) -> None:
    key = str(path[-1])
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    out.add(path, f"unknown key {key!r}{hint}", ", ".join(allowed) or None)


# --------------------------------------------------------------------------------------------
# cross-references and files


def _check_references(data: dict[Any, Any], out: _Collector, base_dir: Path) -> None:
    connections = data.get("connections")
    kinds: dict[str, Any] = {}
    if isinstance(connections, dict):
        kinds = {str(n): (c.get("type") if isinstance(c, dict) else None) for n, c in connections.items()}
    for section, wanted in (
        ("streams", ("salesforce",)),
        ("destinations", ("quickbooks", "nav", "salesforce")),
    ):
        entries = data.get(section)
        if not isinstance(entries, list):
            continue
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            name = entry.get("name")
            if isinstance(name, str):
                if name in seen:
                    out.add(
                        (section, index, "name"), f"duplicate name {name!r} (also {section}[{seen[name]}])"
                    )
                seen.setdefault(name, index)
            ref = entry.get("connection")
            if isinstance(ref, str) and isinstance(connections, dict):
                _check_connection(out, (section, index, "connection"), ref, wanted, kinds, section)
            if section == "streams":
                _check_spec(out, (section, index, "mapping"), entry.get("mapping"), base_dir)
            elif isinstance(entry.get("mappings"), dict):
                for entity, ref in entry["mappings"].items():
                    _check_spec(out, (section, index, "mappings", str(entity)), ref, base_dir)
    payments = data.get("payments")
    if isinstance(payments, dict) and isinstance(connections, dict):
        for key, wanted_kind in (("quickbooks", "quickbooks"), ("stripe", "stripe")):
            ref = payments.get(key)
            if isinstance(ref, str):
                _check_connection(out, ("payments", key), ref, (wanted_kind,), kinds, f"payments.{key}")
    schedules = data.get("schedules")
    if isinstance(schedules, list):
        names: dict[str, int] = {}
        for index, entry in enumerate(schedules):
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str):
                if name in names:
                    out.add(
                        ("schedules", index, "name"),
                        f"duplicate name {name!r} (also schedules[{names[name]}])",
                    )
                names.setdefault(name, index)
    executor = data.get("executor")
    database_url = data.get("database_url", "sqlite:///billsync.db")
    if executor == "procrastinate" and isinstance(database_url, str):
        if not re.match(r"postgres(ql)?(\+\w+)?://", database_url):
            out.add(
                ("executor",),
                "executor: procrastinate keeps its job queue in PostgreSQL, but database_url is not a "
                f"PostgreSQL URL ({database_url.split(':', 1)[0]}:...)",
                "embedded (any database), or procrastinate with database_url: postgresql+psycopg://...",
            )
    catalog = data.get("catalog", "catalog.yaml")
    if isinstance(catalog, str) and catalog:
        target = (base_dir / Path(catalog).expanduser()).resolve()
        if not target.is_file():
            unset = (
                ""
                if "catalog" in data
                else " (catalog is not set, so catalog.yaml next to this file is used)"
            )
            out.add(("catalog",), f"catalog file {target} does not exist{unset}", located=not unset)


def _check_connection(
    out: _Collector, path: PathKey, ref: str, wanted: tuple[str, ...], kinds: dict[str, Any], section: str
) -> None:
    fitting = sorted(name for name, kind in kinds.items() if kind in wanted)
    kinds_text = " or ".join(wanted)
    allowed = ", ".join(fitting) or f"none defined: add a connection with type: {kinds_text}"
    if ref not in kinds:
        close = difflib.get_close_matches(ref, list(kinds), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        out.add(path, f"no connection named {ref!r}{hint}", allowed)
    elif kinds[ref] not in wanted and kinds[ref] is not None:
        out.add(
            path,
            f"connection {ref!r} is a {kinds[ref]} connection; {section} need a {kinds_text} one",
            allowed,
        )


def _check_spec(out: _Collector, path: PathKey, ref: Any, base_dir: Path) -> None:
    if not isinstance(ref, str) or not ref:
        return
    if ref.startswith(BUILTIN_PREFIX):
        name = ref[len(BUILTIN_PREFIX) :]
        if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", name) or ".." in name.split("/"):
            out.add(
                path,
                f"{ref!r} is not a valid builtin spec name",
                "builtin:<system>/<file>, e.g. builtin:salesforce/account.in",
            )
            return
        target = resolve_spec_path(ref, base_dir)
        if not target.is_file():
            shipped = sorted(
                BUILTIN_PREFIX + p.relative_to(builtin_specs_dir()).as_posix().removesuffix(".yaml")
                for p in builtin_specs_dir().rglob("*.yaml")
            )
            out.add(
                path, f"no builtin mapping spec {ref!r} ({target} does not exist)", ", ".join(shipped) or None
            )
        return
    target = resolve_spec_path(ref, base_dir)
    if not target.is_file():
        out.add(
            path,
            f"mapping spec {target} does not exist",
            "a path relative to the yaml file, or builtin:<name>",
        )


# --------------------------------------------------------------------------------------------
# the loader


def _absolute_sqlite(url: str) -> str:
    """``sqlite:///billsync.db`` -> ``sqlite:////<cwd>/billsync.db`` so a later chdir changes nothing."""
    match = re.fullmatch(r"(sqlite(?:\+\w+)?):///([^?]*)(\?.*)?", url)
    if not match:
        return url
    scheme, target, query = match.group(1), match.group(2), match.group(3) or ""
    if not target or target == ":memory:" or target.startswith("/") or target.startswith("file:"):
        return url
    return f"{scheme}:///{(Path.cwd() / target).resolve()}{query}"


def load_settings(path: Path, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Load ``billsync.yaml``; raise ConfigErrors listing every problem (sorted by line)."""
    environ = os.environ if environ is None else environ
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigErrors([ConfigProblem(path, None, None, "", "file not found")]) from None
    except IsADirectoryError:
        raise ConfigErrors([ConfigProblem(path, None, None, "", "is a folder, not a file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors([ConfigProblem(path, None, None, "", f"cannot read the file: {exc}")]) from None
    try:
        doc = load_located(text)
    except YamlSyntaxError as exc:
        raise ConfigErrors(
            [ConfigProblem(path, exc.line, exc.column, "", f"YAML syntax: {exc.message}")]
        ) from None

    out = _Collector(path, doc)
    for dup_path, first, _second in doc.duplicates:
        out.add(dup_path, f"key written twice (first at line {first.line}); only the last one would count")
    raw = {} if doc.data is None else doc.data
    if not isinstance(raw, dict):
        out.add((), f"expected a mapping of key: value lines at the top, got {_describe(raw)}")
        raise ConfigErrors(out.problems)

    base_dir = path.resolve().parent
    data = _Preparer(out, environ, base_dir).walk(raw, Settings, ())
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            _translate(error, data, out)
    reported = set(out.keys)
    before = len(out.problems)
    _check_references(data, out, base_dir)
    # a key pydantic already complained about needs no second, derived complaint
    out.problems[before:] = [p for p in out.problems[before:] if p.key not in reported]
    if out.problems or settings is None:
        raise ConfigErrors(out.problems)

    settings._base_dir = base_dir
    settings._source = path.resolve()
    if not settings.catalog.is_absolute():
        settings.catalog = (base_dir / settings.catalog.expanduser()).resolve()
    settings.database_url = _absolute_sqlite(settings.database_url)
    return settings
