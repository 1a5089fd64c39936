"""The translation table beyond what the HTTP-level tests reach."""

from __future__ import annotations

from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceGeneralError

from connectors.errors import AuthError, FatalError, RecordError, RetryableError
from connectors.salesforce.errors import redact, translate


def test_bugs_are_not_disguised_as_vendor_errors():
    assert translate(KeyError("records")) is None
    assert translate(TypeError("bad call")) is None


def test_record_level_validation_is_dead_lettered():
    body = [
        {
            "message": "Required fields are missing: [Name]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["Name"],
        }
    ]
    error = translate(SalesforceGeneralError("https://x/y", 400, "upsert", body), write=True)
    assert isinstance(error, RecordError) and error.code == "REQUIRED_FIELD_MISSING"


def test_unknown_400_is_fatal_on_reads_and_a_record_error_on_writes():
    body = [{"message": "something new", "errorCode": "BRAND_NEW_CODE"}]
    assert type(translate(SalesforceGeneralError("u", 400, "q", body))) is FatalError
    assert type(translate(SalesforceGeneralError("u", 400, "q", body), write=True)) is RecordError


def test_lock_contention_is_retryable():
    body = [
        {"message": "unable to obtain exclusive access to this record", "errorCode": "UNABLE_TO_LOCK_ROW"}
    ]
    assert type(translate(SalesforceGeneralError("u", 400, "upsert", body), write=True)) is RetryableError


def test_login_fault_codes():
    error = translate(SalesforceAuthenticationFailed("LOGIN_MUST_USE_SECURITY_TOKEN", "Invalid username..."))
    assert isinstance(error, AuthError) and "security token" in error.message
    not_salesforce = translate(
        SalesforceAuthenticationFailed(None, "<html>Not Found</html>"), login_status=404
    )
    assert type(not_salesforce) is FatalError and "login_url" in not_salesforce.message


def test_redact_replaces_every_secret():
    assert redact("pw=hunter22 tok=abc123", ["hunter22", "abc123", None, ""]) == "pw=*** tok=***"
