"""EN 16931 e-invoices (UBL 2.1, UN/CEFACT CII D16B) and their CIUS (Peppol BIS 3, XRechnung 3.0).

Validation (:mod:`connectors.einvoice.validation`, re-exported here) checks the XSD, the EN 16931
rules and the CIUS rules, from the official artefacts shipped in ``rules/``. The writers serialise
one model (:mod:`connectors.einvoice.model`): :mod:`~connectors.einvoice.ubl` (UBL, Peppol,
XRechnung), :mod:`~connectors.einvoice.cii` (CII, XRechnung, Factur-X) and
:mod:`~connectors.einvoice.facturx` (the CII embedded in a PDF/A-3).
"""

from __future__ import annotations

from connectors.einvoice.validation import (
    FORMATS,
    FormatError,
    RuleFailure,
    ValidationReport,
    Validator,
    detect_format,
    format_report,
    validate,
)

__all__ = [
    "FORMATS",
    "FormatError",
    "RuleFailure",
    "ValidationReport",
    "Validator",
    "detect_format",
    "format_report",
    "validate",
]
