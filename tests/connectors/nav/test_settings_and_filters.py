"""Settings (service URLs, secrets) and NAV filter syntax: quoting on the client, matching in the sandbox."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from connectors.nav.client import quote_filter_value
from connectors.nav.sandbox import criteria_matches, make_key, parse_key
from connectors.nav.settings import NavSettings


def settings(**overrides: object) -> NavSettings:
    values: dict[str, object] = {
        "type": "nav",
        "base_url": "http://nav:7047/DynamicsNAV/WS/",
        "company": "CRONUS International Ltd.",
        "username": "BILLSYNC",
        "password": "pw-not-shown",
    }
    values.update(overrides)
    return NavSettings(**values)  # type: ignore[arg-type]


def test_service_urls_append_the_quoted_company() -> None:
    s = settings()
    assert s.service_url("Page", "Customer") == (
        "http://nav:7047/DynamicsNAV/WS/CRONUS%20International%20Ltd./Page/Customer"
    )
    assert s.service_url("Codeunit", "PaymentStatus").endswith("/Codeunit/PaymentStatus")


def test_a_base_url_that_already_names_the_company_is_used_as_is() -> None:
    s = settings(base_url="http://nav:7047/DynamicsNAV/WS/CRONUS%20International%20Ltd.")
    assert s.service_url("Page", "Customer") == (
        "http://nav:7047/DynamicsNAV/WS/CRONUS%20International%20Ltd./Page/Customer"
    )


def test_settings_refuse_unknown_keys_and_non_http_urls_and_hide_the_password() -> None:
    with pytest.raises(ValidationError):
        settings(pasword="typo")
    with pytest.raises(ValidationError):
        settings(base_url="nav:7047/DynamicsNAV/WS/")
    assert "pw-not-shown" not in repr(settings())


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("C00010", "C00010"),
        ("INV-000001", "INV-000001"),
        ("A|B", "'A|B'"),
        ("Smith & Sons", "'Smith & Sons'"),
        ("O'Brien (UK)", "'O''Brien (UK)'"),
        ("1..5", "'1..5'"),
        ("", "''"),
    ],
)
def test_values_with_filter_syntax_are_quoted_and_then_match_only_themselves(value: str, quoted: str) -> None:
    assert quote_filter_value(value) == quoted
    assert criteria_matches(quoted, value)
    assert not criteria_matches(quoted, value + "x")


def test_nav_filter_expressions() -> None:
    assert criteria_matches("A|B", "B") and not criteria_matches("A|B", "C")
    assert criteria_matches("10000..20000", "15000") and not criteria_matches("10000..20000", "25000")
    assert criteria_matches("<>A", "B") and not criteria_matches("<>A", "A")
    assert criteria_matches("INV*", "INV-7") and not criteria_matches("INV*", "CR-7")
    assert criteria_matches("@acme*", "ACME GmbH") and not criteria_matches("acme*", "ACME GmbH")
    assert criteria_matches(">100", Decimal("100.5"), "decimal") and not criteria_matches(
        ">100", Decimal("99"), "decimal"
    )
    assert criteria_matches("", "anything")
    assert criteria_matches("c1|c2", "C2", code=True)  # Code fields compare upper-cased


def test_key_round_trips_primary_key_and_version() -> None:
    key = make_key(["Invoice", "S-INV102201"], 1042)
    assert parse_key(key) == (["Invoice", "S-INV102201"], 1042)
    assert parse_key("garbage") is None


def test_ntlm_without_requests_ntlm_is_a_clear_fatal_error() -> None:
    pytest.importorskip("zeep")
    try:
        import requests_ntlm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("requests-ntlm is installed here")
    from connectors.errors import FatalError
    from connectors.nav.client import NavConnector

    with pytest.raises(FatalError, match="requests-ntlm"):
        NavConnector(settings(auth="ntlm", username="CRONUS\\billsync"))
