"""`billsync config check`: every problem on its own file:line line, exit 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sync_engine.cli import app
from sync_engine.config_check import load_or_exit

BILLSYNC = Path(sys.executable).parent / "billsync"

# line 8: wrong type, line 9: unknown key, line 14: missing environment variable
THREE_PROBLEMS = """\
version: 1
connections:
  crm:
    type: salesforce
    username: ops@example.com
    password: ${SF_PASSWORD}
    security_token: ${SF_TOKEN}
    timeout_seconds: soon
    colour: blue
  books:
    type: quickbooks
    company_id: "1"
    client_id: c
    client_secret: ${QBO_SECRET_NOT_SET}
    refresh_token: ${QBO_REFRESH}
streams:
  - name: accounts
    connection: crm
    object: Account
    entity: customer
    mapping: account.yaml
destinations:
  - name: qbo
    connection: books
    mappings:
      invoice: invoice.yaml
"""

ENV = {"SF_PASSWORD": "pw-1", "SF_TOKEN": "tok-2", "QBO_REFRESH": "ref-3"}


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("account.yaml", "invoice.yaml", "catalog.yaml"):
        (tmp_path / name).write_text("{}\n")
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("QBO_SECRET_NOT_SET", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(config_dir: Path, text: str) -> Path:
    path = config_dir / "billsync.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def assert_three_problems(output: str) -> None:
    lines = output.splitlines()
    assert "billsync.yaml:8:5: connections.crm.timeout_seconds: expected a number, got 'soon'" in lines[0]
    assert "billsync.yaml:9:5: connections.crm.colour: unknown key 'colour'" in lines[1]
    assert "allowed: type, username, password" in lines[1]
    assert (
        "billsync.yaml:14:5: connections.books.client_secret: environment variable QBO_SECRET_NOT_SET is not set"
        in lines[2]
    )
    assert lines[3] == "3 problems in billsync.yaml"
    assert "Traceback" not in output


def test_cli_reports_all_three_problems_with_lines(config_dir: Path) -> None:
    write(config_dir, THREE_PROBLEMS)
    result = CliRunner().invoke(app, ["config", "check", "-c", "billsync.yaml"])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert_three_problems(result.output)


def test_console_script_reports_the_same(config_dir: Path) -> None:
    assert BILLSYNC.is_file(), "the billsync console script is not installed in the venv (pip install -e .)"
    write(config_dir, THREE_PROBLEMS)
    env = {k: v for k, v in os.environ.items() if k != "QBO_SECRET_NOT_SET"}
    env["COLUMNS"] = "40"  # a narrow terminal must not wrap a problem over two lines
    done = subprocess.run(
        [str(BILLSYNC), "config", "check", "-c", "billsync.yaml"],
        cwd=config_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert_three_problems(done.stdout)
    assert "Traceback" not in done.stderr


def test_valid_file_prints_a_summary_and_exits_0(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBO_SECRET_NOT_SET", "now-set")
    write(config_dir, THREE_PROBLEMS.replace("    timeout_seconds: soon\n    colour: blue\n", ""))
    result = CliRunner().invoke(app, ["config", "check", "-c", "billsync.yaml"])
    assert result.exit_code == 0, result.output
    assert "billsync.yaml is valid" in result.output
    assert "crm (salesforce), books (quickbooks)" in result.output
    assert "1 stream(s)" in result.output and "1 destination(s)" in result.output
    assert "now-set" not in result.output and "pw-1" not in result.output


def test_missing_file_is_one_clear_line(config_dir: Path) -> None:
    result = CliRunner().invoke(app, ["config", "check", "-c", "absent.yaml"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "absent.yaml: no such file; pass --config PATH, or copy config/billsync.example.yaml to absent.yaml "
        "and edit it"
    ]


def test_load_or_exit_prints_problems_and_exits_2(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(config_dir, THREE_PROBLEMS)
    with pytest.raises(typer.Exit) as caught:
        load_or_exit(path)
    assert caught.value.exit_code == 2
    assert "environment variable QBO_SECRET_NOT_SET is not set" in capsys.readouterr().err


def test_load_or_exit_returns_settings(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBO_SECRET_NOT_SET", "x")
    path = write(config_dir, THREE_PROBLEMS.replace("    timeout_seconds: soon\n    colour: blue\n", ""))
    assert load_or_exit(path).streams[0].name == "accounts"
