"""Mapping specs: one YAML file per system x entity x direction, compiled into rules.

A spec looks like this (the full language is documented in docs/mappings.md)::

    billsync_mapping: 1
    system: salesforce
    object: Account
    entity: customer
    direction: inbound
    key: Id
    fields:
      name: {from: Name, ops: [trim]}
      currency: {from: CurrencyIsoCode, default: USD, ops: [upper]}
      billing_address.city: BillingCity

Compiling checks everything it can before any record is touched and reports every problem with
its file, line and column, so an admin fixes a spec in one pass.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import TypeAdapter, ValidationError

from mappings.canonical import ENTITY_MODELS
from mappings.schema import SchemaLookup
from mappings.transforms import CASTS, OPS, PARAM_OPS, TransformError
from mappings.yaml_lines import LocatedDocument, PathKey, YamlSyntaxError, load_located

SPEC_VERSION = 1
SOURCES = ("from", "const", "template", "coalesce", "lookup", "money", "each")
MODIFIERS = ("ops", "map", "fallback", "cast", "format", "timezone", "default", "required", "when", "fields")
TOP_KEYS = (
    "billsync_mapping",
    "match_on",
    "name",
    "description",
    "system",
    "object",
    "entity",
    "direction",
    "key",
    "fields",
)
CONDITION_KEYS = ("field", "equals", "in", "exists", "not", "all", "any")


@dataclass(frozen=True)
class SpecProblem:
    file: str
    line: int | None
    column: int | None
    field: str
    message: str
    allowed: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line or '?'}:{self.column or '?'}"
        tail = f" (allowed: {self.allowed})" if self.allowed else ""
        return f"{where}: {self.field}: {self.message}{tail}"


class SpecError(ValueError):
    """Every problem found in one or more specs."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Condition:
    kind: str  # equals | in | exists | not | all | any
    field: str | None = None
    value: Any = None
    children: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Rule:
    target: str
    source: str  # one of SOURCES
    arg: Any  # path / constant / template / paths / (entity, system, path) / (amount, currency) paths
    ops: tuple[Callable[[Any], Any], ...] = ()
    value_map: Mapping[str, Any] | None = None
    fallback: Any = None
    has_fallback: bool = False
    cast: str | None = None
    caster: Callable[[Any], Any] | None = None  # the cast with its format and time zone bound
    default: Any = None
    has_default: bool = False
    required: bool = False
    when: Condition | None = None
    fields: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class MappingSpec:
    file: str
    system: str
    object: str
    entity: str
    direction: str
    key: str | None
    rules: tuple[Rule, ...]
    name: str = ""
    description: str = ""
    source_fields: tuple[str, ...] = field(default=())
    match_on: str | None = None  # outbound: the target field that identifies a record (DocNumber)


_KINDS: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    Decimal: "decimal",
    dt.datetime: "datetime",
    dt.date: "date",
    str: "string",
}


def scalar_kind(annotation: Any) -> str | None:
    """``Decimal | None`` -> ``"decimal"``; ``None`` for structured or union-of-several types."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, types.UnionType):
        if len(args) != 1:
            return None
        return scalar_kind(args[0])
    if get_origin(annotation) is Literal:
        return "string" if all(isinstance(a, str) for a in args) else None
    return _KINDS.get(annotation) if isinstance(annotation, type) else None


_SEGMENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*|[0-9]+")


def valid_path(path: str) -> bool:
    """A field path is dotted names or list indexes; never a leading underscore (no ``__class__``)."""
    return bool(path) and len(path) <= 255 and all(_SEGMENT.fullmatch(part) for part in path.split("."))


def _closest(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {match[0]}?" if match else ""


def template_fields(template: str) -> list[str] | None:
    """Field names in ``"{FirstName} {LastName}"``; ``None`` if braces are unbalanced.
    ``{{`` and ``}}`` are literal braces."""
    names: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if template.startswith("{{", i) or template.startswith("}}", i):
            i += 2
            continue
        if ch == "}":
            return None
        if ch == "{":
            end = template.find("}", i)
            if end < 0:
                return None
            name = template[i + 1 : end].strip()
            if not name or "{" in name:
                return None
            names.append(name)
            i = end + 1
            continue
        i += 1
    return names


class _Compiler:
    def __init__(self, doc: LocatedDocument, file: str, schemas: SchemaLookup | None = None) -> None:
        self.doc = doc
        self.file = file
        self.schemas = schemas
        self.source_marks: dict[str, PathKey] = {}
        self.declared: set[str] = set()  # top-level targets written, even those whose rule failed
        self.problems: list[SpecProblem] = []
        self.sources: set[str] = set()
        for path, first, _second in doc.duplicates:
            self.problem(path, ".".join(str(p) for p in path), f"written twice (first on line {first.line})")

    def problem(self, path: PathKey, fieldname: str, message: str, allowed: str | None = None) -> None:
        mark = self.doc.where(path)
        line, column = (mark.line, mark.column) if mark else (None, None)
        self.problems.append(SpecProblem(self.file, line, column, fieldname, message, allowed))

    def use(self, path: str, where: PathKey = (), target: str = "") -> bool:
        """Record a source path; an invalid one is reported (and not recorded)."""
        if not valid_path(path):
            self.problem(
                where,
                target or path,
                f"{path!r} is not a field path",
                "names of letters, digits and _ (not starting with _), joined by dots; list indexes as numbers",
            )
            return False
        self.sources.add(path)
        self.source_marks.setdefault(path, where)
        return True

    # -- top level -------------------------------------------------------------------------------
    def compile(self) -> MappingSpec | None:
        data = self.doc.data
        if not isinstance(data, dict):
            self.problem(
                (), "(file)", "a mapping spec must be a YAML mapping with the keys below", ", ".join(TOP_KEYS)
            )
            return None
        for key in data:
            if key not in TOP_KEYS:
                self.problem(
                    (key,), str(key), f"unknown key{_closest(str(key), TOP_KEYS)}", ", ".join(TOP_KEYS)
                )
        version = data.get("billsync_mapping")
        if version != SPEC_VERSION:
            self.problem(
                ("billsync_mapping",), "billsync_mapping", f"spec version {version!r} is not supported", "1"
            )
        direction = data.get("direction")
        if direction not in ("inbound", "outbound"):
            self.problem(
                ("direction",), "direction", f"{direction!r} is not a direction", "inbound, outbound"
            )
        entity = data.get("entity")
        if entity not in ENTITY_MODELS and entity != "invoice":
            allowed = ", ".join([*ENTITY_MODELS, "invoice"])
            self.problem(
                ("entity",),
                "entity",
                f"unknown entity {entity!r}{_closest(str(entity), ENTITY_MODELS)}",
                allowed,
            )
        for key in ("system", "object"):
            if not isinstance(data.get(key), str) or not data.get(key):
                self.problem((key,), key, "required text value is missing")
        key_field = data.get("key")
        if direction == "inbound":
            if not isinstance(key_field, str):
                self.problem(
                    ("key",), "key", "inbound specs name the source field that holds the record's id"
                )
            else:
                self.use(key_field, ("key",), "key")
        match_on = data.get("match_on")
        if match_on is not None and not isinstance(match_on, str):
            self.problem(
                ("match_on",), "match_on", f"must be a field name, but YAML read {match_on!r}; quote it"
            )
            match_on = None
        elif match_on is not None and direction != "outbound":
            self.problem(("match_on",), "match_on", "only outbound specs name a target field to match on")
            match_on = None
        elif match_on is None and direction == "outbound":
            self.problem(
                (),
                "match_on",
                "outbound specs name the target field that identifies a record (e.g. DocNumber), so a "
                "write whose outcome is unknown is looked up instead of sent twice",
            )
        fields = data.get("fields")
        rules: tuple[Rule, ...] = ()
        if not isinstance(fields, dict) or not fields:
            self.problem(("fields",), "fields", "a non-empty mapping of target field -> rule is required")
        else:
            rules = self.rules(fields, ("fields",))
            self.declared = {str(name).split(".")[0] for name in fields}
            if direction == "inbound" and entity in ENTITY_MODELS:
                self.check_targets(rules, str(entity))
            self.check_vendor_side(str(data.get("system")), str(data.get("object")), str(direction), rules)
            if match_on is not None and not any(r.target == match_on for r in rules):
                self.problem(
                    ("match_on",), "match_on", f"{match_on!r} is not one of the mapped target fields"
                )
        if self.problems:
            return None
        return MappingSpec(
            file=self.file,
            system=str(data["system"]),
            object=str(data["object"]),
            entity=str(entity),
            direction=str(direction),
            key=key_field if isinstance(key_field, str) else None,
            rules=rules,
            name=str(data.get("name", "")),
            description=str(data.get("description", "")),
            source_fields=tuple(sorted(self.sources)),
            match_on=match_on,
        )

    def check_targets(self, rules: tuple[Rule, ...], entity: str) -> None:
        model = ENTITY_MODELS[entity]
        known = set(model.model_fields)
        for rule in rules:
            top = rule.target.split(".")[0]
            if top not in known:
                self.problem(
                    ("fields", rule.target),
                    rule.target,
                    f"{entity} has no field {top!r}{_closest(top, known)}",
                    ", ".join(sorted(known)),
                )
            elif "." not in rule.target:
                self.check_type(rule, entity, model.model_fields[top].annotation)
        for name, info in model.model_fields.items():
            if info.is_required() and name not in self.declared:
                self.problem(("fields",), name, f"required {entity} field {name!r} is not mapped")

    def check_vendor_side(self, system: str, obj: str, direction: str, rules: tuple[Rule, ...]) -> None:
        """Source fields (inbound) or target fields (outbound) against the vendor's object, when known."""
        schema = self.schemas(system, obj) if self.schemas else None
        if schema is None:
            return
        allowed = ", ".join(sorted(schema.fields))
        if direction == "inbound":
            for path in sorted(self.sources):
                head = path.split(".")[0]
                if not schema.knows(head) and path in self.source_marks:
                    hint = _closest(head, schema.fields)
                    self.problem(self.source_marks[path], path, f"{obj} has no field {head!r}{hint}", allowed)
            return
        for rule in rules:
            head = rule.target.split(".")[0]
            if not schema.knows(head):
                hint = _closest(head, schema.fields)
                self.problem(
                    ("fields", rule.target), rule.target, f"{obj} has no field {head!r}{hint}", allowed
                )
            elif "." not in rule.target:
                self.check_vendor_type(rule, obj, schema.kinds.get(head), schema.enums.get(head))
        if any(rule.target == "Id" and rule.required for rule in rules):
            return  # it names the record it writes (a void, an update by Id): it never creates one
        for name in sorted(schema.required - self.declared):
            self.problem(("fields",), name, f"{system} requires {obj}.{name} on create, and it is not mapped")

    def check_vendor_type(
        self, rule: Rule, obj: str, kind: str | None, choices: tuple[str, ...] | None
    ) -> None:
        """A cast, constant or mapped value that the vendor's published type refuses is a spec error."""
        where = ("fields", rule.target)
        if kind is not None and rule.cast is not None and rule.cast != kind:
            self.problem(
                (*where, "cast"),
                rule.target,
                f"cast {rule.cast}, but {obj}.{rule.target} is a {kind}",
                f"cast: {kind}",
            )
        if choices is None:
            return
        written = []
        if rule.source == "const":
            written.append(rule.arg)
        if rule.value_map is not None:
            written.extend(rule.value_map.values())
            if rule.has_fallback:
                written.append(rule.fallback)
        for value in written:
            if value is not None and str(value) not in choices:
                self.problem(
                    where,
                    rule.target,
                    f"{value!r} is not a value {obj}.{rule.target} accepts",
                    ", ".join(choices),
                )

    def check_type(self, rule: Rule, entity: str, annotation: Any) -> None:
        """A constant, a default or a cast that can never fit the canonical field is a spec error."""
        kind = scalar_kind(annotation)
        if kind is None:
            return
        where = ("fields", rule.target)
        if rule.cast is not None and rule.cast != kind and not (kind == "string" and rule.cast == "string"):
            self.problem(
                (*where, "cast"),
                rule.target,
                f"cast {rule.cast} gives a {rule.cast}, but {entity}.{rule.target} is a {kind}",
                f"cast: {kind}",
            )
        for label, value in (
            ("const", rule.arg if rule.source == "const" else None),
            ("default", rule.default),
        ):
            if value is None or (label == "default" and not rule.has_default):
                continue
            try:
                TypeAdapter(annotation).validate_python(value)
            except ValidationError:
                self.problem(
                    (*where, label),
                    rule.target,
                    f"{label} {value!r} is not a valid {kind} for {entity}.{rule.target}",
                    f"a {kind}",
                )

    # -- rules -----------------------------------------------------------------------------------
    def rules(self, fields: dict[str, Any], path: PathKey) -> tuple[Rule, ...]:
        out = []
        for target, body in fields.items():
            if not isinstance(target, str):
                # YAML 1.1 reads No/Yes/On/Off as booleans and 1.5 as a number: a classic trap.
                self.problem(
                    (*path, str(target)),
                    str(target),
                    f"a target field name must be text, but YAML read this key as {type(target).__name__} {target!r}",
                    'quote the name, e.g. "No":',
                )
                continue
            rule = self.rule(str(target), body, (*path, str(target)))
            if rule is not None:
                out.append(rule)
        return tuple(out)

    def rule(self, target: str, body: Any, path: PathKey) -> Rule | None:
        if isinstance(body, str):
            self.use(body, path, target)
            return Rule(target=target, source="from", arg=body)
        if not isinstance(body, dict):
            self.problem(
                path, target, f"a rule is a source field name or a mapping, not {type(body).__name__}"
            )
            return None
        for key in body:
            if key not in SOURCES and key not in MODIFIERS:
                allowed = ", ".join((*SOURCES, *MODIFIERS))
                self.problem(
                    (*path, key),
                    target,
                    f"unknown rule key {key!r}{_closest(str(key), allowed.split(', '))}",
                    allowed,
                )
        present = [s for s in SOURCES if s in body]
        if not present and "fields" in body:
            self.problem(
                path,
                target,
                "fields: maps the items of a list; add each: naming the source list",
                "each: <source list path>",
            )
            return None
        if len(present) != 1:
            message = (
                "no value source" if not present else f"more than one value source ({', '.join(present)})"
            )
            self.problem(path, target, message + "; give exactly one", ", ".join(SOURCES))
            return None
        source = present[0]
        arg = self.source_arg(source, body[source], (*path, source), target)
        ops = self.ops(body.get("ops", []), (*path, "ops"), target)
        caster = self.caster(body, path, target)
        cast = body.get("cast") if caster else None
        value_map = body.get("map")
        if value_map is not None and not isinstance(value_map, dict):
            self.problem((*path, "map"), target, "map must be a mapping of source value -> target value")
            value_map = None
        required = body.get("required", False)
        if not isinstance(required, bool):
            self.problem((*path, "required"), target, f"required must be true or false, not {required!r}")
        when = self.condition(body["when"], (*path, "when"), target) if "when" in body else None
        sub_fields: tuple[Rule, ...] = ()
        if source == "each":
            sub = body.get("fields")
            if not isinstance(sub, dict) or not sub:
                self.problem((*path, "fields"), target, "each: needs fields: (the mapping of one item)")
            else:
                outer = self.sources
                self.sources = set()
                sub_fields = self.rules(sub, (*path, "fields"))
                outer.update(f"{arg}.{name}" for name in self.sources)
                self.sources = outer
        elif "fields" in body:
            self.problem((*path, "fields"), target, "fields: is only allowed together with each:")
        default = body.get("default")
        if "default" in body and default is not None and caster is not None:
            try:
                default = caster(default)
            except TransformError as exc:
                self.problem((*path, "default"), target, f"default does not fit cast {cast}: {exc}")
        return Rule(
            target=target,
            source=source,
            arg=arg,
            ops=ops,
            value_map={str(k): v for k, v in value_map.items()} if value_map else None,
            fallback=body.get("fallback"),
            has_fallback="fallback" in body,
            cast=cast,
            caster=caster,
            default=default,
            has_default="default" in body,
            required=bool(required),
            when=when,
            fields=sub_fields,
        )

    def ops(self, value: Any, path: PathKey, target: str) -> tuple[Callable[[Any], Any], ...]:
        """``[trim, upper, {split: ","}, {join: "; "}]`` -> bound functions, checked once here."""
        items = value if isinstance(value, list) else [value]
        allowed = ", ".join([*OPS, *(f"{{{name}: TEXT}}" for name in PARAM_OPS)])
        out: list[Callable[[Any], Any]] = []
        for i, op in enumerate(items):
            if isinstance(op, str) and op in OPS:
                out.append(OPS[op])
            elif isinstance(op, dict) and len(op) == 1 and next(iter(op)) in PARAM_OPS:
                name, arg = next(iter(op.items()))
                if not isinstance(arg, str) or not arg:
                    self.problem((*path, i), target, f"{name} takes a non-empty separator text, not {arg!r}")
                    continue
                out.append(functools.partial(PARAM_OPS[name], arg))
            else:
                label = op if isinstance(op, str) else next(iter(op), op) if isinstance(op, dict) else op
                hint = _closest(str(label), [*OPS, *PARAM_OPS])
                self.problem((*path, i), target, f"unknown operation {label!r}{hint}", allowed)
        return tuple(out)

    def caster(self, body: dict[str, Any], path: PathKey, target: str) -> Callable[[Any], Any] | None:
        cast, fmt, zone = body.get("cast"), body.get("format"), body.get("timezone")
        if cast is None:
            for key in ("format", "timezone"):
                if key in body:
                    self.problem((*path, key), target, f"{key}: only applies together with cast:")
            return None
        if cast not in CASTS:
            self.problem(
                (*path, "cast"),
                target,
                f"unknown cast {cast!r}{_closest(str(cast), CASTS)}",
                ", ".join(CASTS),
            )
            return None
        if fmt is not None and (cast not in ("date", "datetime", "string") or not isinstance(fmt, str)):
            self.problem(
                (*path, "format"),
                target,
                "format: is a strptime pattern for date/datetime casts, e.g. '%d.%m.%Y'",
            )
            return None
        tz = None
        if zone is not None:
            if cast != "datetime":
                self.problem((*path, "timezone"), target, "timezone: only applies to cast: datetime")
                return None
            try:
                tz = ZoneInfo(str(zone))
            except (ZoneInfoNotFoundError, ValueError):
                self.problem(
                    (*path, "timezone"),
                    target,
                    f"unknown time zone {zone!r}",
                    "IANA names such as Europe/Berlin, UTC",
                )
                return None
        return functools.partial(CASTS[cast], fmt=fmt, tz=tz)

    def source_arg(self, source: str, value: Any, path: PathKey, target: str) -> Any:
        if source in ("from", "each"):
            if not isinstance(value, str) or not value:
                self.problem(path, target, f"{source}: takes a source field path such as BillingAddress.city")
            else:
                self.use(value, path, target)
            return value
        if source == "const":
            return value
        if source == "template":
            names = template_fields(value) if isinstance(value, str) else None
            if names is None:
                self.problem(
                    path,
                    target,
                    'template must be text with {Field} placeholders, e.g. "{FirstName} {LastName}"',
                )
                return ""
            for name in names:
                self.use(name, path, target)
            return value
        if source == "coalesce":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                self.problem(path, target, "coalesce takes a list of source field paths")
                return []
            for name in value:
                self.use(name, path, target)
            return tuple(value)
        if source == "money":
            if not isinstance(value, dict) or set(value) != {"amount", "currency"}:
                self.problem(
                    path, target, "money takes amount: and currency: source field paths", "amount, currency"
                )
                return ("", "")
            for key in ("amount", "currency"):
                self.use(str(value[key]), (*path, key), target)
            return (str(value["amount"]), str(value["currency"]))
        # lookup
        if not isinstance(value, dict) or "entity" not in value or "from" not in value:
            self.problem(
                path,
                target,
                "lookup needs entity: and from: (and optionally system:)",
                "entity, from, system",
            )
            return ("", None, "")
        for key in value:
            if key not in ("entity", "from", "system"):
                self.problem((*path, key), target, f"unknown lookup key {key!r}", "entity, from, system")
        self.use(str(value["from"]), (*path, "from"), target)
        return (str(value["entity"]), value.get("system"), str(value["from"]))

    def condition(self, value: Any, path: PathKey, target: str) -> Condition | None:
        if not isinstance(value, dict):
            self.problem(path, target, "when: takes a mapping such as {field: Status, equals: Activated}")
            return None
        unknown = [k for k in value if k not in CONDITION_KEYS]
        for key in unknown:
            self.problem((*path, key), target, f"unknown condition key {key!r}", ", ".join(CONDITION_KEYS))
        if "not" in value:
            child = self.condition(value["not"], (*path, "not"), target)
            return Condition("not", children=(child,)) if child else None
        for group in ("all", "any"):
            if group in value:
                items = value[group]
                if not isinstance(items, list):
                    self.problem((*path, group), target, f"{group}: takes a list of conditions")
                    return None
                children = [self.condition(c, (*path, group, i), target) for i, c in enumerate(items)]
                return Condition(group, children=tuple(c for c in children if c))
        fieldname = value.get("field")
        if not isinstance(fieldname, str):
            self.problem(path, target, "a condition names its field: ")
            return None
        self.use(fieldname, (*path, "field"), target)
        tests = [k for k in ("equals", "in", "exists") if k in value]
        if len(tests) != 1:
            self.problem(path, target, "a condition has exactly one test", "equals, in, exists")
            return None
        test = tests[0]
        arg = value[test]
        if test == "in" and not isinstance(arg, list):
            self.problem((*path, "in"), target, "in: takes a list of values")
            return None
        return Condition(test, field=fieldname, value=arg)


def compile_spec(doc: LocatedDocument, file: str, schemas: SchemaLookup | None = None) -> MappingSpec:
    compiler = _Compiler(doc, file, schemas)
    spec = compiler.compile()
    if spec is None:
        raise SpecError(compiler.problems)
    return spec


def load_spec_text(text: str, file: str = "<string>", schemas: SchemaLookup | None = None) -> MappingSpec:
    """Compile a spec from text; every problem is raised together as one :class:`SpecError`."""
    try:
        doc = load_located(text)
    except YamlSyntaxError as exc:
        raise SpecError([SpecProblem(file, exc.line, exc.column, "(syntax)", exc.message)]) from None
    return compile_spec(doc, file, schemas)


def load_spec(path: Path, schemas: SchemaLookup | None = None) -> MappingSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(
            [SpecProblem(str(path), None, None, "(file)", f"cannot read the spec: {exc.strerror}")]
        ) from None
    return load_spec_text(text, str(path), schemas)


#: Specs shipped with billsync, referenced from billsync.yaml as ``builtin:<system>/<name>``.
BUILTIN_DIR = Path(__file__).parent / "specs"
