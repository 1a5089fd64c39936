"""Logs are readable (console) or parseable (json), and never show a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Literal
from urllib.parse import quote, quote_plus

import pytest
import structlog

import sync_engine.logging as billsync_logging
from sync_engine.logging import add_secret, configure_logging, get_logger

PASSWORD = "Pa$$w0rd with space&more"
TOKEN = "00Dxx0000001gPL!AQ4AQFakeSessionToken"
Format = Literal["console", "json"]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved_level, saved_handlers, saved_config = root.level, list(root.handlers), structlog.get_config()
    yield
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    structlog.configure(**saved_config)
    billsync_logging._SECRETS.clear()


def capture(fmt: Format, level: str = "debug") -> io.StringIO:
    out = io.StringIO()
    configure_logging(format=fmt, level=level, secrets=[PASSWORD, TOKEN], stream=out)
    return out


def assert_clean(text: str) -> None:
    for secret in (PASSWORD, TOKEN, "Pa%24%24w0rd", "Pa$$w0rd with space&amp;more"):
        assert secret not in text
    assert "***" in text


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_secrets_logged_directly_are_masked(fmt: Format) -> None:
    out = capture(fmt)
    get_logger("billsync.test").info("logged in", session=TOKEN, note=f"pw={PASSWORD}")
    text = out.getvalue()
    assert "logged in" in text
    assert_clean(text)


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_secrets_inside_dicts_urls_and_reprs_are_masked(fmt: Format) -> None:
    out = capture(fmt)
    url = f"https://example.my.salesforce.com/x?sid={quote(TOKEN, safe='')}&pw={quote_plus(PASSWORD)}"
    get_logger("billsync.test").info(
        "request",
        request={"headers": {"X-Trace": f"Bearer {TOKEN}"}, "url": url, "body": [{"pw": PASSWORD}]},
        raw=f"<password>{PASSWORD.replace('&', '&amp;')}</password>".encode(),
    )
    text = out.getvalue()
    assert "example.my.salesforce.com" in text
    assert_clean(text)


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_secrets_inside_exceptions_are_masked(fmt: Format) -> None:
    out = capture(fmt)
    log = get_logger("billsync.test")
    try:
        raise RuntimeError(f"login failed for password {PASSWORD} / {TOKEN}")
    except RuntimeError as exc:
        log.exception("sync failed")
        log.error("sync failed again", error=exc)
    text = out.getvalue()
    assert "RuntimeError" in text and "login failed for password" in text
    assert_clean(text)


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_stdlib_library_loggers_at_debug_are_masked(fmt: Format) -> None:
    out = capture(fmt)
    logging.getLogger("urllib3.connectionpool").debug("GET /services?sid=%s HTTP/1.1", TOKEN)
    logging.getLogger("zeep.transports").debug("HTTP Post <password>%s</password>", PASSWORD)
    logging.getLogger("simple_salesforce.api").debug({"sessionId": TOKEN})
    try:
        raise ValueError(TOKEN)
    except ValueError:
        logging.getLogger("requests_oauthlib").exception("refresh failed")
    text = out.getvalue()
    assert "GET /services?sid=" in text and "urllib3.connectionpool" in text
    assert "refresh failed" in text and "ValueError" in text
    assert_clean(text)


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_secret_looking_keys_are_masked_even_when_unknown(fmt: Format) -> None:
    out = capture(fmt)
    get_logger("billsync.test").info(
        "tokens",
        refresh_token="never-registered-1",
        client_secret="never-registered-2",
        headers={"Authorization": "Bearer never-registered-3", "Accept": "application/json"},
        accessToken="never-registered-4",
        token_url="https://oauth.example.com/token",
    )
    text = out.getvalue()
    assert "never-registered" not in text
    assert "application/json" in text
    assert "https://oauth.example.com/token" in text  # a URL about tokens is not a token


def test_secret_learned_at_runtime_is_masked_from_then_on() -> None:
    out = capture("json")
    rotated = "AB11-rotated-refresh-token-value"
    add_secret(rotated)
    get_logger("billsync.test").info("token rotated", detail=f"new={rotated}")
    assert rotated not in out.getvalue()
    assert "token rotated" in out.getvalue()


def test_json_format_writes_one_object_per_line() -> None:
    out = capture("json", level="info")
    log = get_logger("billsync.pipeline")
    log.info("stream synced", stream="accounts", records=12)
    log.debug("hidden at info level")
    logging.getLogger("urllib3").debug("hidden too")
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == 1
    assert records[0]["event"] == "stream synced"
    assert records[0]["records"] == 12
    assert records[0]["level"] == "info"
    assert records[0]["logger"] == "billsync.pipeline"
    assert "timestamp" in records[0]


def test_console_format_is_readable() -> None:
    out = capture("console", level="info")
    get_logger("billsync.pipeline").warning("stream lagging", stream="orders")
    line = out.getvalue().strip()
    assert "stream lagging" in line and "stream=orders" in line and "warning" in line
    assert not line.startswith("{")


def test_reconfiguring_replaces_the_handler_instead_of_doubling_lines() -> None:
    capture("json")
    out = capture("json")
    get_logger("billsync.test").info("once")
    assert len(out.getvalue().splitlines()) == 1
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_billsync_handler", False)]
    assert len(ours) == 1


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(format="json", level="loud", stream=io.StringIO())
