"""EN 16931 e-invoice validation: XSD, then the EN 16931 rules, then the rules of the CIUS.

This is what ``billsync invoices validate FILE...`` runs. Both kinds of check are needed because
they catch different mistakes: the XSD catches an unknown or misplaced element and a malformed date
or amount, the Schematron rules (compiled to XSLT, run by Saxon, reported as SVRL) catch wrong
totals, missing business terms and bad codes. The rule sets are the official compiled artefacts
shipped in ``rules/`` (see its README): CEN EN 16931 1.3.16 for UBL and CII, Peppol BIS Billing 3.0
(OpenPeppol release 2026.5, UBL only) and XRechnung 3.0.2 (UBL and CII).

Design decisions:

- Rules run even when the XSD check fails, as long as the XML is well-formed and its root is one of
  the three syntaxes. The user gets every problem of a file in one run, and it is how the official
  CEN and Peppol unit tests are meant to be run (they are schema-invalid fragments). On a
  schema-invalid file some rule failures can be consequences of the schema error.
- Malformed XML, a DOCTYPE (e-invoices never have one; refusing it keeps entity tricks away from
  Saxon's own parser) or an unknown root element stop the run with one ``schema``-stage failure.
- Each stylesheet is compiled once per process (a :class:`Validator` caches it, the module-level
  :func:`validate` shares one validator) and each XSD is loaded once. Saxon objects are not
  documented as thread-safe, so every Saxon call runs under one lock; lxml XSD checks run under a
  lock per schema (its error log is shared state).
- A warning (or an ``information``) never makes a report fail; ``fatal`` and ``error`` do.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

from lxml import etree

Format = Literal["ubl", "peppol", "xrechnung", "cii", "facturx"]
Syntax = Literal["ubl-invoice", "ubl-creditnote", "cii"]
Stage = Literal["schema", "en16931", "peppol", "xrechnung"]
Flag = Literal["fatal", "error", "warning", "information"]
Family = Literal["ubl", "cii"]  # the two syntaxes the rule sets are written for

#: The format names a caller may pass to :func:`validate`.
FORMATS: tuple[Format, ...] = get_args(Format)
#: Flags that make a document invalid; the others are advice.
BLOCKING_FLAGS: frozenset[Flag] = frozenset({"fatal", "error"})

#: Customization ids (BT-24) that select a CIUS.
PEPPOL_BIS3_ID = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
XRECHNUNG_3_ID = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
_XRECHNUNG_MARK = "urn:xeinkauf.de:kosit:"  # also the XRechnung extension and older versions
_FACTURX_MARKS = ("factur-x.eu", "zugferd")

UBL_INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
UBL_CREDITNOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
CII_NS = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
_CBC_NS = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
_RAM_NS = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
_SVRL_NS = "http://purl.oclc.org/dsdl/svrl"
#: Conventional prefixes, used to shorten lxml's ``{namespace}Name`` in XSD messages.
_PREFIXES = {
    _CBC_NS: "cbc",
    "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2": "cac",
    "urn:oasis:names:specification:ubl:schema:xsd:CommonExtensionComponents-2": "ext",
    UBL_INVOICE_NS: "ubl",
    UBL_CREDITNOTE_NS: "cn",
    CII_NS: "rsm",
    _RAM_NS: "ram",
    "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100": "udt",
    "urn:un:unece:uncefact:data:standard:QualifiedDataType:100": "qdt",
}
_CLARK_NAME = re.compile(r"\{([^}]*)\}")

_ROOTS: dict[str, Syntax] = {
    f"{{{UBL_INVOICE_NS}}}Invoice": "ubl-invoice",
    f"{{{UBL_CREDITNOTE_NS}}}CreditNote": "ubl-creditnote",
    f"{{{CII_NS}}}CrossIndustryInvoice": "cii",
}
_SYNTAX_NAMES: dict[Syntax, str] = {
    "ubl-invoice": "UBL Invoice",
    "ubl-creditnote": "UBL CreditNote",
    "cii": "CII CrossIndustryInvoice",
}

RULES_DIR = Path(__file__).resolve().parent / "rules"
_UBL_XSD = RULES_DIR / "ubl-2.1" / "xsd" / "maindoc"
_CII_XSD = RULES_DIR / "en16931-cen/cii/schema/D16B_SCRDM_Subset/uncoupled_clm/CII/uncefact/data/standard"
#: The XSD of each syntax.
SCHEMAS: dict[Syntax, Path] = {
    "ubl-invoice": _UBL_XSD / "UBL-Invoice-2.1.xsd",
    "ubl-creditnote": _UBL_XSD / "UBL-CreditNote-2.1.xsd",
    "cii": _CII_XSD / "CrossIndustryInvoice_100pD16B.xsd",
}
#: The compiled Schematron (XSLT producing SVRL) of each rule stage, per syntax family.
STYLESHEETS: dict[tuple[Stage, Family], Path] = {
    ("en16931", "ubl"): RULES_DIR / "en16931-cen/ubl/xslt/EN16931-UBL-validation.xslt",
    ("en16931", "cii"): RULES_DIR / "en16931-cen/cii/xslt/EN16931-CII-validation.xslt",
    ("peppol", "ubl"): RULES_DIR / "peppol-bis-billing-3/openpeppol/2026.5/xslt/PEPPOL-EN16931-UBL.xslt",
    ("xrechnung", "ubl"): RULES_DIR / "xrechnung/3.0.2/XRechnung-UBL-validation.xslt",
    ("xrechnung", "cii"): RULES_DIR / "xrechnung/3.0.2/XRechnung-CII-validation.xslt",
}
#: Rule stages run after the XSD check, in order, for each format.
PLANS: dict[Format, tuple[Stage, ...]] = {
    "ubl": ("en16931",),
    "cii": ("en16931",),
    "facturx": ("en16931",),
    "peppol": ("en16931", "peppol"),
    "xrechnung": ("en16931", "xrechnung"),
}
_FORMAT_FAMILIES: dict[Format, frozenset[Family]] = {
    "ubl": frozenset({"ubl"}),
    "peppol": frozenset({"ubl"}),
    "cii": frozenset({"cii"}),
    "facturx": frozenset({"cii"}),
    "xrechnung": frozenset({"ubl", "cii"}),
}
_FAMILY_SYNTAXES: dict[Family, tuple[Syntax, ...]] = {
    "ubl": ("ubl-invoice", "ubl-creditnote"),
    "cii": ("cii",),
}

#: Rule ids of the failures this module reports itself (not from an official rule set).
XML_NOT_WELL_FORMED = "XML"
XSD_INVALID = "XSD"
UNKNOWN_SYNTAX = "SYNTAX"
RULES_NOT_RUN = "RULES-NOT-RUN"
PEPPOL_CII_UNAVAILABLE = "PEPPOL-CII-UNAVAILABLE"

#: Each official stylesheet runs inside this wrapper: ``xsl:try`` turns a dynamic error (a rule
#: casting "abc" to xs:decimal in a schema-invalid file) into a report element instead of Saxon
#: printing a stack trace on stderr, and the SVRL is not indented (it is parsed, not read).
_WRAPPER = """<xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:err="http://www.w3.org/2005/xqt-errors">
  <xsl:import href="{href}"/>
  <xsl:output method="xml" indent="no"/>
  <xsl:template match="/">
    <xsl:try>
      <xsl:apply-imports/>
      <xsl:catch><billsync-rules-not-run code="{{$err:code}}" description="{{$err:description}}"/></xsl:catch>
    </xsl:try>
  </xsl:template>
</xsl:stylesheet>"""
_NOT_RUN_TAG = "billsync-rules-not-run"

_SAXON_STEP = re.compile(r"\*:([\w.\-]+)\[namespace-uri\(\)='([^']*)'\]")
_SHORT_ATTR = re.compile(r"@\*\[local-name\(\)='([\w.\-]+)' and namespace-uri\(\)='[^']*'\]")
_POSITION = re.compile(r", line \d+, column \d+$")
_RULE_ID_PREFIX = re.compile(r"^\s*\[[^\]]+\]\s*-?\s*")
_WHITESPACE = re.compile(r"\s+")


class FormatError(ValueError):
    """The caller asked for a format that does not exist or cannot apply to the document."""


@dataclass(frozen=True, slots=True)
class RuleFailure:
    """One failed check. ``location`` is the SVRL XPath for rules and ``line N`` for the schema;
    ``line`` is the 1-based line in the validated file where it could be found (None otherwise)."""

    rule_id: str
    flag: Flag
    location: str
    text: str
    stage: Stage
    line: int | None = None

    @property
    def blocking(self) -> bool:
        """True for ``fatal``/``error`` failures: the ones that make the document invalid."""
        return self.flag in BLOCKING_FLAGS

    @property
    def short_location(self) -> str:
        """The location without namespace predicates, e.g. ``/Invoice[1]/LegalMonetaryTotal[1]``."""
        return _SHORT_ATTR.sub(r"@\1", _SAXON_STEP.sub(r"\1", self.location))


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """The outcome for one document; ``failures`` are in stage order, then document order."""

    source: str
    format: Format | None
    syntax: Syntax | None
    failures: tuple[RuleFailure, ...]

    @property
    def ok(self) -> bool:
        """True when no failure is fatal or an error (warnings do not count)."""
        return not any(f.blocking for f in self.failures)

    @property
    def errors(self) -> tuple[RuleFailure, ...]:
        return tuple(f for f in self.failures if f.blocking)

    @property
    def warnings(self) -> tuple[RuleFailure, ...]:
        return tuple(f for f in self.failures if not f.blocking)

    def failed_rules(self, stage: Stage | None = None) -> set[str]:
        """Ids of the blocking failures (of one stage, if given)."""
        return {f.rule_id for f in self.errors if stage is None or f.stage == stage}


def hardened_parser() -> etree.XMLParser:
    """An lxml parser that loads no DTD, expands no entity and never touches the network."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
    )


def detect_format(root: etree._Element) -> tuple[Syntax | None, Format | None]:
    """The syntax of a parsed document and the format its customization id (BT-24) asks for.

    Peppol BIS 3 and XRechnung are recognised by their CustomizationID /
    GuidelineSpecifiedDocumentContextParameter; a Factur-X/ZUGFeRD profile id gives ``facturx``;
    anything else is plain EN 16931 (``ubl`` or ``cii``). ``(None, None)`` for an unknown root.
    """
    syntax = _ROOTS.get(root.tag) if isinstance(root.tag, str) else None
    if syntax is None:
        return None, None
    if syntax == "cii":
        ids = root.xpath(
            "./rsm:ExchangedDocumentContext/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID/text()",
            namespaces={"rsm": CII_NS, "ram": _RAM_NS},
        )
    else:
        ids = root.xpath("./cbc:CustomizationID/text()", namespaces={"cbc": _CBC_NS})
    customization = str(ids[0]).strip() if ids else ""
    if _XRECHNUNG_MARK in customization:
        return syntax, "xrechnung"
    if customization.startswith(PEPPOL_BIS3_ID):
        return syntax, "peppol"
    if syntax == "cii":
        return syntax, "facturx" if any(m in customization for m in _FACTURX_MARKS) else "cii"
    return syntax, "ubl"


class Validator:
    """Validates documents with stylesheets compiled once and XSDs loaded once.

    Keep one per process (the module-level :func:`validate` does); ``compile_count`` and
    ``compile_seconds`` tell what compiling cost.
    """

    def __init__(self) -> None:
        self._saxon_lock = threading.RLock()
        self._schema_lock = threading.Lock()
        # saxonche ships no type information: its objects are typed Any here
        self._processor: Any = None
        self._xslt: Any = None
        self._stylesheets: dict[Path, Any] = {}
        self._schemas: dict[Syntax, tuple[etree.XMLSchema, threading.Lock]] = {}
        self.compile_count = 0
        self.compile_seconds: dict[str, float] = {}

    # -- public -------------------------------------------------------------------------------

    def validate(
        self,
        document: bytes | os.PathLike[str],
        *,
        format: str | None = None,
        source: str | None = None,
    ) -> ValidationReport:
        """Check one document: XSD, EN 16931 rules, then the CIUS rules of its format.

        ``format`` overrides what the document's customization id says (one of :data:`FORMATS`);
        :class:`FormatError` if it is unknown or does not fit the document's syntax.
        """
        data, name = _read(document, source)
        requested = _check_format_name(format)
        try:
            tree = etree.ElementTree(etree.fromstring(data, hardened_parser()))
        except etree.XMLSyntaxError as exc:
            line = exc.lineno or 1
            message = _POSITION.sub("", exc.msg or str(exc))
            failure = RuleFailure(XML_NOT_WELL_FORMED, "fatal", f"line {line}", message, "schema", line)
            return ValidationReport(name, requested, None, (failure,))
        if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
            text = "a DOCTYPE declaration is not allowed in an e-invoice (no DTDs, no entities)"
            failure = RuleFailure(XML_NOT_WELL_FORMED, "fatal", "line 1", text, "schema", 1)
            return ValidationReport(name, requested, None, (failure,))

        root = tree.getroot()
        syntax, detected = detect_format(root)
        if syntax is None:
            text = (
                f"root element {root.tag} is none of UBL Invoice, UBL CreditNote or CII CrossIndustryInvoice"
            )
            failure = RuleFailure(UNKNOWN_SYNTAX, "fatal", "/", text, "schema", root.sourceline)
            return ValidationReport(name, requested, None, (failure,))
        family: Family = "cii" if syntax == "cii" else "ubl"
        notes: list[RuleFailure] = []
        if requested is not None:
            if family not in _FORMAT_FAMILIES[requested]:
                raise FormatError(
                    f"{name}: format {requested!r} does not apply to a {_SYNTAX_NAMES[syntax]} document"
                )
            fmt = requested
        elif detected == "peppol" and family == "cii":
            fmt = "cii"
            notes.append(
                RuleFailure(
                    PEPPOL_CII_UNAVAILABLE,
                    "warning",
                    "/",
                    "Peppol BIS 3 customization on a CII document: no compiled Peppol CII rules are "
                    "shipped, so only the EN 16931 rules were checked",
                    "peppol",
                )
            )
        else:
            fmt = cast(Format, detected)

        failures = self._schema_failures(tree, syntax)
        xml_text = etree.tostring(tree, encoding="unicode")
        for stage in PLANS[fmt]:
            failures.extend(self._rule_failures(stage, family, xml_text, tree))
        failures.extend(notes)
        return ValidationReport(name, fmt, syntax, tuple(failures))

    def warm_up(self, formats: Iterable[str] = FORMATS) -> None:
        """Compile every stylesheet and load every XSD the given formats need (e.g. at start-up)."""
        for name in formats:
            fmt = _check_format_name(name) or "ubl"
            for family in _FORMAT_FAMILIES[fmt]:
                for stage in PLANS[fmt]:
                    self._stylesheet(STYLESHEETS[(stage, family)])
                for syntax in _FAMILY_SYNTAXES[family]:
                    self._schema(syntax)

    # -- schema -------------------------------------------------------------------------------

    def _schema(self, syntax: Syntax) -> tuple[etree.XMLSchema, threading.Lock]:
        with self._schema_lock:
            if syntax not in self._schemas:
                path = SCHEMAS[syntax]
                schema = etree.XMLSchema(etree.parse(str(path), hardened_parser()))
                self._schemas[syntax] = (schema, threading.Lock())
            return self._schemas[syntax]

    def _schema_failures(self, tree: etree._ElementTree, syntax: Syntax) -> list[RuleFailure]:
        schema, lock = self._schema(syntax)
        with lock:
            if schema.validate(tree):
                return []
            entries = list(schema.error_log)
        return [
            RuleFailure(
                XSD_INVALID,
                "fatal",
                f"line {e.line}" if e.line > 0 else "/",
                _CLARK_NAME.sub(lambda m: f"{_PREFIXES[m[1]]}:" if m[1] in _PREFIXES else m[0], e.message),
                "schema",
                e.line if e.line > 0 else None,
            )
            for e in entries
            if e.level >= etree.ErrorLevels.ERROR
        ]

    # -- rules --------------------------------------------------------------------------------

    def _stylesheet(self, path: Path) -> Any:
        """The compiled stylesheet at ``path``; compiled on first use only (under the lock)."""
        with self._saxon_lock:
            executable = self._stylesheets.get(path)
            if executable is None:
                if self._xslt is None:
                    from saxonche import PySaxonProcessor  # heavy native import: only when needed

                    self._processor = PySaxonProcessor(license=False)
                    self._xslt = self._processor.new_xslt30_processor()
                started = time.perf_counter()
                wrapper = _WRAPPER.format(href=_xml_attr(path.as_uri()))
                executable = self._xslt.compile_stylesheet(stylesheet_text=wrapper)
                if executable is None:  # saxonche reports some compile errors this way
                    raise RuntimeError(f"cannot compile the rule stylesheet {path}")
                self.compile_seconds[path.name] = time.perf_counter() - started
                self.compile_count += 1
                self._stylesheets[path] = executable
            return executable

    def _rule_failures(
        self, stage: Stage, family: Family, xml_text: str, tree: etree._ElementTree
    ) -> list[RuleFailure]:
        from saxonche import PySaxonApiError

        executable = self._stylesheet(STYLESHEETS[(stage, family)])
        try:
            with self._saxon_lock:
                node = self._processor.parse_xml(xml_text=xml_text)
                svrl: str | None = executable.transform_to_string(xdm_node=node)
        except PySaxonApiError as exc:  # the wrapper catches dynamic errors; this is a last resort
            return [_not_run(stage, str(exc))]
        if not svrl:
            return [_not_run(stage, "no report produced")]
        return list(_parse_svrl(svrl, stage, tree))


def _parse_svrl(svrl: str, stage: Stage, tree: etree._ElementTree) -> Iterable[RuleFailure]:
    report = etree.fromstring(svrl.encode("utf-8"), hardened_parser())
    if report.tag == _NOT_RUN_TAG:
        yield _not_run(stage, f"{report.get('code')}: {report.get('description')}")
        return
    for node in report.iter(f"{{{_SVRL_NS}}}failed-assert", f"{{{_SVRL_NS}}}successful-report"):
        rule_id = node.get("id") or "(no id)"
        text_node = node.find(f"{{{_SVRL_NS}}}text")
        text = _squash("".join(text_node.itertext()) if text_node is not None else "")
        location = node.get("location") or "/"
        yield RuleFailure(
            rule_id=rule_id,
            flag=_flag(node.get("flag")),
            location=location,
            text=_RULE_ID_PREFIX.sub("", text) if text.startswith(f"[{rule_id}]") else text,
            stage=stage,
            line=_line_of(tree, location),
        )


def _not_run(stage: Stage, reason: str) -> RuleFailure:
    # e.g. a rule casting a non-numeric amount to xs:decimal; the XSD failure names the cause
    text = f"the {stage} rules could not be evaluated on this document: {_squash(reason)}"
    return RuleFailure(RULES_NOT_RUN, "fatal", "/", text, stage)


def _xml_attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _flag(value: str | None) -> Flag:
    flag = (value or "error").strip().lower()
    if flag in ("fatal", "error", "warning", "information"):
        return cast(Flag, flag)
    return "information" if flag == "info" else "error"


def _line_of(tree: etree._ElementTree, location: str) -> int | None:
    """The source line of the node an SVRL location (Saxon's XPath 2 path) points at."""
    xpath = _SAXON_STEP.sub(r"*[local-name()='\1' and namespace-uri()='\2']", location)
    try:
        found = tree.xpath(xpath)
    except etree.XPathError:
        return None
    if not isinstance(found, list) or not found:
        return None
    first = found[0]
    parent = getattr(first, "getparent", None)  # an attribute value knows its element
    node = first if isinstance(first, etree._Element) else parent() if parent is not None else None
    line = node.sourceline if isinstance(node, etree._Element) else None
    return int(line) if line else None


def _squash(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _read(document: bytes | os.PathLike[str], source: str | None) -> tuple[bytes, str]:
    if isinstance(document, bytes | bytearray):
        return bytes(document), source or "<document>"
    if isinstance(document, str):
        raise TypeError("pass the document as bytes or as a Path, not as str")
    path = Path(document)
    return path.read_bytes(), source or str(path)


def _check_format_name(format: str | None) -> Format | None:
    if format is None:
        return None
    name = format.strip().lower().replace("-", "")
    if name not in FORMATS:
        raise FormatError(f"unknown e-invoice format {format!r}; expected one of {', '.join(FORMATS)}")
    return name


_default: Validator | None = None
_default_lock = threading.Lock()


def default_validator() -> Validator:
    """The process-wide validator used by :func:`validate`."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Validator()
        return _default


def validate(
    document: bytes | os.PathLike[str], *, format: str | None = None, source: str | None = None
) -> ValidationReport:
    """Validate one document with the process-wide :class:`Validator` (see its ``validate``)."""
    return default_validator().validate(document, format=format, source=source)


def format_report(reports: ValidationReport | Sequence[ValidationReport]) -> str:
    """The text ``billsync invoices validate`` prints: each file, its failures, then a summary.

    One line per failure, ``RULE-ID [flag] location: text``, indented under its file.
    """
    if isinstance(reports, ValidationReport):
        reports = [reports]
    lines: list[str] = []
    for report in reports:
        what = ", ".join(
            part for part in (report.format, _SYNTAX_NAMES[report.syntax] if report.syntax else None) if part
        )
        verdict = "valid" if report.ok else "INVALID"
        counts = _counts(len(report.errors), len(report.warnings))
        lines.append(f"{report.source}: {verdict}" + (f" ({what})" if what else "") + counts)
        for f in report.failures:
            where = f.short_location
            if f.line is not None and not where.startswith("line "):
                where = f"{where} (line {f.line})"
            lines.append(f"  {f.rule_id} [{f.flag}] {where}: {f.text}")
    invalid = sum(not r.ok for r in reports)
    errors = sum(len(r.errors) for r in reports)
    warnings = sum(len(r.warnings) for r in reports)
    files = f"{len(reports)} file" + ("" if len(reports) == 1 else "s")
    lines.append(f"{files}: {len(reports) - invalid} valid, {invalid} invalid{_counts(errors, warnings)}")
    return "\n".join(lines)


def _counts(errors: int, warnings: int) -> str:
    parts = []
    if errors:
        parts.append(f"{errors} error" + ("" if errors == 1 else "s"))
    if warnings:
        parts.append(f"{warnings} warning" + ("" if warnings == 1 else "s"))
    return f" — {', '.join(parts)}" if parts else ""
