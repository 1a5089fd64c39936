"""Loading billsync.yaml: what an admin sees for good files and for every kind of mistake."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from pydantic import SecretStr

import sync_engine.settings as settings_module
from connectors.quickbooks.settings import QuickBooksSettings
from connectors.salesforce.settings import SalesforceSettings
from sync_engine.settings import ConfigErrors, ConfigProblem, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]

ENV = {
    "SF_PASSWORD": "sf-pass-123",
    "SF_TOKEN": "sf-token-456",
    "QBO_SECRET": "qbo-secret-789",
    "QBO_REFRESH": "qbo-refresh-abc",
}

GOOD = """\
version: 1
connections:
  crm:
    type: salesforce
    username: ops@example.com
    password: ${SF_PASSWORD}
    security_token: ${SF_TOKEN}
  books:
    type: quickbooks
    company_id: "123"
    client_id: client-1
    client_secret: ${QBO_SECRET}
    refresh_token: ${QBO_REFRESH}
streams:
  - name: accounts
    connection: crm
    object: Account
    entity: customer
    mapping: specs/account.yaml
destinations:
  - name: quickbooks
    connection: books
    mappings:
      invoice: specs/invoice.yaml
schedules:
  - name: pull
    job: pull
    every_minutes: 15
"""


def make_config(tmp_path: Path, text: str = GOOD) -> Path:
    """A billsync.yaml with the catalog and spec files it points at."""
    (tmp_path / "specs").mkdir(exist_ok=True)
    for name in ("account", "invoice"):
        (tmp_path / "specs" / f"{name}.yaml").write_text("fields: {}\n")
    (tmp_path / "catalog.yaml").write_text("version: 1\n")
    path = tmp_path / "billsync.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[ConfigProblem]:
    with pytest.raises(ConfigErrors) as caught:
        load_settings(path, environ=ENV if environ is None else environ)
    return caught.value.problems


def only(found: list[ConfigProblem], key: str) -> ConfigProblem:
    matching = [p for p in found if p.key == key]
    assert len(matching) == 1, found
    return matching[0]


def test_good_file_loads_with_secrets_resolved_and_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_config(tmp_path)
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    settings = load_settings(path, environ=ENV)

    crm = settings.connections["crm"]
    books = settings.connections["books"]
    assert isinstance(crm, SalesforceSettings) and isinstance(books, QuickBooksSettings)
    assert crm.password.get_secret_value() == "sf-pass-123"
    assert books.refresh_token.get_secret_value() == "qbo-refresh-abc"
    assert sorted(settings.secret_values()) == sorted(ENV.values())
    assert settings.base_dir == tmp_path.resolve()
    assert settings.catalog == (tmp_path / "catalog.yaml").resolve()
    assert settings.database_url == f"sqlite:///{(workdir / 'billsync.db').resolve()}"
    assert settings.resolve_spec("specs/account.yaml") == (tmp_path / "specs/account.yaml").resolve()
    assert settings.destinations[0].batch_size is None  # the destination's own limit
    assert settings.billing.number_prefix == "INV-"
    assert settings.logging.format == "console"


def test_env_vars_expand_in_plain_values_with_defaults(tmp_path: Path) -> None:
    text = GOOD.replace("client_id: client-1", "client_id: ${QBO_CLIENT_ID}").replace(
        "username: ops@example.com", "username: ${SF_USER:-fallback@example.com}"
    )
    settings = load_settings(make_config(tmp_path, text), environ={**ENV, "QBO_CLIENT_ID": "from-env"})
    books = settings.connections["books"]
    crm = settings.connections["crm"]
    assert isinstance(books, QuickBooksSettings) and isinstance(crm, SalesforceSettings)
    assert books.client_id == "from-env"
    assert crm.username == "fallback@example.com"


@pytest.mark.parametrize(
    ("original", "plain", "line", "key"),
    [
        ("password: ${SF_PASSWORD}", "password: hunter2", 6, "connections.crm.password"),
        ("security_token: ${SF_TOKEN}", "security_token: abc123", 7, "connections.crm.security_token"),
        ("refresh_token: ${QBO_REFRESH}", "refresh_token: 12345", 13, "connections.books.refresh_token"),
    ],
)
def test_secret_written_in_plain_text_is_refused(
    tmp_path: Path, original: str, plain: str, line: int, key: str
) -> None:
    found = problems(make_config(tmp_path, GOOD.replace(original, plain)))
    problem = only(found, key)
    assert problem.line == line
    assert "secrets may not be written in billsync.yaml" in problem.message
    assert len(found) == 1  # no derived "required key is missing" on top


def test_secret_with_env_default_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("${SF_PASSWORD}", "${SF_PASSWORD:-changeme}")
    problem = only(problems(make_config(tmp_path, text)), "connections.crm.password")
    assert "default" in problem.message


def test_missing_env_var_names_the_variable_and_line(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if k != "QBO_SECRET"}
    problem = only(problems(make_config(tmp_path), env), "connections.books.client_secret")
    assert "QBO_SECRET" in problem.message and "not set" in problem.message
    assert (problem.line, problem.column) == (12, 5)


def test_secret_from_file_is_read_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "refresh").write_text("  rotated-refresh-token\n")
    text = GOOD.replace("refresh_token: ${QBO_REFRESH}", "refresh_token_file: secrets/refresh")
    settings = load_settings(make_config(tmp_path, text), environ=ENV)
    books = settings.connections["books"]
    assert isinstance(books, QuickBooksSettings)
    assert books.refresh_token == SecretStr("rotated-refresh-token")
    assert "rotated-refresh-token" in settings.secret_values()


def test_unreadable_secret_file_names_the_file_and_line(tmp_path: Path) -> None:
    text = GOOD.replace("password: ${SF_PASSWORD}", "password_file: /nonexistent/sf_password")
    found = problems(make_config(tmp_path, text))
    problem = only(found, "connections.crm.password_file")
    assert "/nonexistent/sf_password" in problem.message
    assert problem.line == 6
    assert len(found) == 1


def test_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace("password: ${SF_PASSWORD}", "password: ${SF_PASSWORD}\n    password_file: pw.txt")
    problem = only(problems(make_config(tmp_path, text)), "connections.crm.password_file")
    assert "not both" in problem.message


def test_unknown_key_suggests_the_close_one_and_lists_allowed(tmp_path: Path) -> None:
    text = GOOD.replace("client_id: client-1", "clientid: client-1")
    found = problems(make_config(tmp_path, text))
    unknown = only(found, "connections.books.clientid")
    assert "did you mean 'client_id'?" in unknown.message
    assert unknown.allowed is not None and "client_secret_file" in unknown.allowed
    assert unknown.line == 11
    missing = only(found, "connections.books.client_id")
    assert missing.message == "required key is missing"
    assert missing.line == 8  # the line of the mapping that lacks it


def test_wrong_types_are_explained_in_plain_words(tmp_path: Path) -> None:
    text = GOOD.replace("every_minutes: 15", "every_minutes: often") + "logging:\n  format: xml\n"
    found = problems(make_config(tmp_path, text))
    minutes = only(found, "schedules[0].every_minutes")
    assert minutes.message == "expected a whole number, got 'often'"
    assert minutes.line == 28
    fmt = only(found, "logging.format")
    assert fmt.allowed == "console, json"


def test_unquoted_number_where_text_is_expected_says_to_quote_it(tmp_path: Path) -> None:
    problem = only(
        problems(make_config(tmp_path, GOOD.replace('company_id: "123"', "company_id: 123"))),
        "connections.books.company_id",
    )
    assert problem.message == "expected text, got the number 123; put it in quotes"
    assert problem.line == 10


def test_out_of_range_reports_the_range(tmp_path: Path) -> None:
    text = GOOD.replace(
        "      invoice: specs/invoice.yaml", "      invoice: specs/invoice.yaml\n    batch_size: 201"
    )
    problem = only(problems(make_config(tmp_path, text)), "destinations[0].batch_size")
    assert problem.allowed == "1..200"


def test_unknown_connection_type_lists_the_known_ones(tmp_path: Path) -> None:
    text = GOOD.replace("type: quickbooks", "type: xero")
    problem = only(problems(make_config(tmp_path, text)), "connections.books.type")
    assert problem.allowed == "salesforce, quickbooks, nav, stripe"
    assert problem.line == 9


def test_connection_references_are_checked(tmp_path: Path) -> None:
    text = GOOD.replace("    connection: crm", "    connection: books").replace(
        "    connection: books\n    mappings", "    connection: qbo\n    mappings"
    )
    found = problems(make_config(tmp_path, text))
    stream = only(found, "streams[0].connection")
    assert "quickbooks connection" in stream.message and stream.allowed == "crm"
    destination = only(found, "destinations[0].connection")
    assert "no connection named 'qbo'" in destination.message and destination.allowed == "books, crm"


def test_duplicate_stream_names_are_reported(tmp_path: Path) -> None:
    extra = "  - name: accounts\n    connection: crm\n    object: Contact\n    entity: customer\n    mapping: specs/account.yaml\n"
    text = GOOD.replace("destinations:\n", extra + "destinations:\n")
    problem = only(problems(make_config(tmp_path, text)), "streams[1].name")
    assert "duplicate name 'accounts'" in problem.message


def test_missing_mapping_and_catalog_files_are_reported(tmp_path: Path) -> None:
    path = make_config(tmp_path, GOOD.replace("specs/account.yaml", "specs/nope.yaml"))
    (tmp_path / "catalog.yaml").unlink()
    found = problems(path)
    assert "nope.yaml does not exist" in only(found, "streams[0].mapping").message
    catalog = only(found, "catalog")
    assert "catalog.yaml does not exist" in catalog.message and catalog.line is None


def test_builtin_specs_resolve_against_the_shipped_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "shipped"
    (shipped / "salesforce").mkdir(parents=True)
    (shipped / "salesforce" / "account.in.yaml").write_text("fields: {}\n")
    monkeypatch.setattr(settings_module, "builtin_specs_dir", lambda: shipped)
    text = GOOD.replace("specs/account.yaml", "builtin:salesforce/account.in")
    settings = load_settings(make_config(tmp_path, text), environ=ENV)
    assert settings.resolve_spec(settings.streams[0].mapping) == shipped / "salesforce" / "account.in.yaml"

    missing = only(
        problems(make_config(tmp_path, text.replace("account.in", "acount.in"))), "streams[0].mapping"
    )
    assert missing.allowed == "builtin:salesforce/account.in"
    escape = only(
        problems(make_config(tmp_path, text.replace("salesforce/account.in", "../x"))), "streams[0].mapping"
    )
    assert "not a valid builtin spec name" in escape.message


def test_builtin_specs_dir_is_the_mappings_package_folder() -> None:
    assert settings_module.builtin_specs_dir() == REPO / "mappings" / "specs"


@pytest.mark.parametrize("cron", ["0 2 * * *", "*/5 * * * mon-fri", "30 6 1 * *"])
def test_valid_cron_is_accepted(tmp_path: Path, cron: str) -> None:
    text = GOOD.replace("every_minutes: 15", f'cron: "{cron}"')
    schedule = load_settings(make_config(tmp_path, text), environ=ENV).schedules[0]
    assert schedule.cron == cron
    assert str(schedule.trigger().timezone) == "UTC"


@pytest.mark.parametrize(
    ("timing", "words"),
    [
        ('cron: "0 2 * *"', "Wrong number of fields"),
        ('cron: "61 * * * *"', "61"),
        ('cron: "0 2 * * *"\n    every_minutes: 5', "exactly one of cron or every_minutes"),
        ("coalesce: true", "exactly one of cron or every_minutes"),
    ],
)
def test_bad_schedule_timing_is_reported(tmp_path: Path, timing: str, words: str) -> None:
    text = GOOD.replace("every_minutes: 15", timing)
    found = problems(make_config(tmp_path, text))
    assert len(found) == 1 and found[0].key.startswith("schedules[0]")
    assert words in found[0].message
    assert found[0].line is not None and found[0].line >= 26


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    found = problems(make_config(tmp_path, GOOD.replace("entity: customer", "entity: [customer")))
    assert len(found) == 1
    assert found[0].line is not None and found[0].line > 18 and found[0].column is not None
    assert found[0].message.startswith("YAML syntax:")


def test_key_written_twice_is_reported(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    username: ops@example.com\n", "    username: ops@example.com\n    username: other\n"
    )
    problem = only(problems(make_config(tmp_path, text)), "connections.crm.username")
    assert problem.line == 6 and "first at line 5" in problem.message


def test_all_problems_come_in_one_run_sorted_by_line(tmp_path: Path) -> None:
    text = (
        GOOD.replace("version: 1", "version: 2")
        .replace("password: ${SF_PASSWORD}", "password: plain")
        .replace("entity: customer", "entity: client")
        .replace("every_minutes: 15", "every_minutes: 0")
    )
    found = problems(make_config(tmp_path, text), environ={})
    keys = [p.key for p in found]
    assert keys == [
        "version",
        "connections.crm.password",
        "connections.crm.security_token",
        "connections.books.client_secret",
        "connections.books.refresh_token",
        "streams[0].entity",
        "schedules[0].every_minutes",
    ]
    assert [p.line for p in found] == sorted(p.line or 0 for p in found)


def test_database_password_must_not_be_plain(tmp_path: Path) -> None:
    plain = GOOD.replace("version: 1", "version: 1\ndatabase_url: postgresql://bs:s3cret@db/bs")
    problem = only(problems(make_config(tmp_path, plain)), "database_url")
    assert problem.line == 2 and "PGPASSWORD" in problem.message

    from_env = GOOD.replace("version: 1", "version: 1\ndatabase_url: postgresql://bs:${PGPASSWORD}@db/bs")
    settings = load_settings(make_config(tmp_path, from_env), environ={**ENV, "PGPASSWORD": "pg-pw"})
    assert settings.database_url == "postgresql://bs:pg-pw@db/bs"
    assert "pg-pw" in settings.secret_values()


def test_empty_or_non_mapping_file(tmp_path: Path) -> None:
    empty = make_config(tmp_path, "")
    keys = {p.key for p in problems(empty)}
    assert {"connections", "streams", "destinations"} <= keys
    listing = make_config(tmp_path, "- a\n- b\n")
    assert "expected a mapping" in problems(listing)[0].message


def test_missing_file_is_one_problem(tmp_path: Path) -> None:
    found = problems(tmp_path / "absent.yaml")
    assert len(found) == 1 and found[0].message == "file not found"


def test_problem_renders_as_file_line_column(tmp_path: Path) -> None:
    problem = ConfigProblem(Path("billsync.yaml"), 12, 5, "connections.books.client_secret", "bad", "x, y")
    assert str(problem) == "billsync.yaml:12:5: connections.books.client_secret: bad (allowed: x, y)"


def test_shipped_example_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example admins copy must pass `config check` (with specs and catalog present)."""
    example = tmp_path / "billsync.yaml"
    shutil.copy(REPO / "config" / "billsync.example.yaml", example)
    (tmp_path / "catalog.yaml").write_text("version: 1\n")
    shipped = tmp_path / "shipped"
    for name in (
        "salesforce/account.in",
        "salesforce/product2.in",
        "salesforce/pricebookentry.in",
        "salesforce/order.in",
        "salesforce/orderitem.in",
        "quickbooks/customer.out",
        "quickbooks/item.out",
        "quickbooks/invoice.out",
        "quickbooks/invoice_void.out",
    ):
        (shipped / f"{name}.yaml").parent.mkdir(parents=True, exist_ok=True)
        (shipped / f"{name}.yaml").write_text("fields: {}\n")
    monkeypatch.setattr(settings_module, "builtin_specs_dir", lambda: shipped)
    env = {
        n: f"value-of-{n}"
        for n in (
            "SF_PASSWORD",
            "SF_SECURITY_TOKEN",
            "QBO_CLIENT_ID",
            "QBO_CLIENT_SECRET",
            "QBO_REFRESH_TOKEN",
        )
    }

    settings = load_settings(example, environ=env)

    assert [(s.object, s.entity) for s in settings.streams] == [
        ("Account", "customer"),
        ("Product2", "product"),
        ("PricebookEntry", "price"),
        ("Order", "order"),
        ("OrderItem", "order_line"),
    ]
    assert set(settings.destinations[0].mappings) == {"customer", "product", "invoice", "invoice_void"}
    assert settings.schedules
    assert isinstance(settings, Settings)
