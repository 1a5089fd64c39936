"""Apply a compiled :class:`~mappings.spec.MappingSpec` to one record.

Per field, in this order: take the value from its source, apply ``ops``, the value ``map``
(with ``fallback``), the ``cast``, then the ``default`` for a missing value, then ``required``.
A field whose ``when`` condition is false is left out. Every problem in a record is collected, so a
dead letter tells support staff everything that is wrong with it at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mappings.spec import Condition, MappingSpec, Rule
from mappings.transforms import TransformError, money

_MISSING = object()


class Lookups(Protocol):
    """Cross-references through bindings.

    Inbound: the id of a record in ``system`` -> its canonical id. Outbound: a canonical id -> the
    id of the record in ``system``. ``None`` when no binding exists yet.
    """

    def resolve(self, *, system: str, entity: str, value: str, inbound: bool) -> str | None: ...


class MissingBindingError(TransformError):
    """A lookup found no binding yet: the referenced record has not been synced (retry later)."""


@dataclass(frozen=True)
class MappingIssue:
    field: str
    message: str
    missing_binding: bool = False

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class MappingError(ValueError):
    """A record could not be mapped; ``issues`` lists every field that failed."""

    def __init__(self, issues: Sequence[MappingIssue]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(str(i) for i in self.issues))

    @property
    def only_missing_bindings(self) -> bool:
        """True when the record is fine but waits for records it refers to."""
        return all(issue.missing_binding for issue in self.issues)


def get_path(record: Any, path: str) -> Any:
    """Read ``a.b.0.c`` from nested mappings/lists; a missing step gives ``None``."""
    current = record
    for part in path.split("."):
        if current is None:
            return None
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, Sequence) and not isinstance(current, str) and part.isdigit():
            index = int(part)
            current = current[index] if index < len(current) else None
        else:
            return None
    return current


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Write ``a.b`` (nested objects) or ``LinkedTxn.0.TxnId`` (a number makes a list) into ``target``."""
    parts = path.split(".")
    node: Any = target
    for part, following in zip(parts, parts[1:], strict=False):
        empty: Any = [] if following.isdigit() else {}
        if isinstance(node, list):
            index = int(part)
            while len(node) <= index:
                node.append(None)
            if not isinstance(node[index], dict | list):
                node[index] = empty
            node = node[index]
        else:
            if not isinstance(node.get(part), dict | list):
                node[part] = empty
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        index = int(last)
        while len(node) <= index:
            node.append(None)
        node[index] = value
    else:
        node[last] = value


def _present(value: Any) -> bool:
    return value is not None and value != ""


def check(condition: Condition, record: Any) -> bool:
    if condition.kind == "not":
        return not check(condition.children[0], record)
    if condition.kind == "all":
        return all(check(c, record) for c in condition.children)
    if condition.kind == "any":
        return any(check(c, record) for c in condition.children)
    value = get_path(record, condition.field or "")
    if condition.kind == "exists":
        return _present(value) is bool(condition.value)
    if condition.kind == "equals":
        return bool(value == condition.value)
    return value in condition.value  # "in"


def _render(template: str, record: Any) -> str:
    out: list[str] = []
    i = 0
    while i < len(template):
        if template.startswith("{{", i) or template.startswith("}}", i):
            out.append(template[i])
            i += 2
            continue
        if template[i] == "{":
            end = template.index("}", i)
            value = get_path(record, template[i + 1 : end].strip())
            out.append("" if value is None else str(value))
            i = end + 1
            continue
        out.append(template[i])
        i += 1
    return "".join(out)


_Getter = Callable[[Any], Any]


def path_getter(path: str) -> _Getter:
    """A reader for ``path``; a plain name (the common case) is one ``dict.get``."""
    if "." in path:
        return lambda record: get_path(record, path)

    def get(record: Any) -> Any:
        try:
            return record.get(path)
        except AttributeError:  # not an object: nothing at this path
            return None

    return get


def _setter(target: str) -> Callable[[dict[str, Any], Any], None]:
    parts = target.split(".")
    if len(parts) == 2 and not parts[1].isdigit():  # billing_address.city: the common nesting
        outer, inner = parts

        def put_nested(out: dict[str, Any], value: Any) -> None:
            node = out.get(outer)
            if not isinstance(node, dict):
                node = out[outer] = {}
            node[inner] = value

        return put_nested
    if len(parts) > 1:
        return lambda out, value: set_path(out, target, value)

    def put(out: dict[str, Any], value: Any) -> None:
        out[target] = value

    return put


_ValueFn = Callable[[Any, str, list[MappingIssue]], Any]


def _column(
    records: Sequence[Any],
    outs: list[dict[str, Any]],
    field_name: str,
    op: Callable[[Any], Any] | None,
    target: list[str],
) -> None:
    """One simple rule over a page: read, maybe transform, write where there is a value."""
    outer, inner = (target[0], target[1]) if len(target) == 2 and not target[1].isdigit() else (None, None)
    for record, out in zip(records, outs, strict=True):
        try:
            v = record.get(field_name)
        except AttributeError:
            continue
        if v is None:
            continue
        if op is not None:
            v = op(v)
            if v is None:
                continue
        if v == "":
            continue
        if len(target) == 1:
            out[target[0]] = v
        elif outer is not None:
            node = out.get(outer)
            if not isinstance(node, dict):
                node = out[outer] = {}
            node[inner] = v
        else:
            set_path(out, ".".join(target), v)


#: One compiled rule: (target name, condition, value function, plain target key or None, setter).
#: A tuple, unpacked per record; a plain key is written inline, a dotted target through the setter.
_Step = tuple[str, Condition | None, _ValueFn, str | None, Callable[[dict[str, Any], Any], None]]


class Mapper:
    """A spec bound to a lookup service; call :meth:`map` once per record.

    Each rule is turned into one closure when the mapper is built, so mapping a record is a loop
    of plain function calls: no per-record interpretation of the spec.
    """

    def __init__(self, spec: MappingSpec, lookups: Lookups | None = None) -> None:
        self.spec = spec
        self.lookups = lookups
        # value functions of rules that just read a top-level field (and maybe trim it): mapped a
        # column at a time by map_many
        self._simple: dict[_ValueFn, tuple[str, Callable[[Any], Any] | None]] = {}
        self._plan = self._compile(spec.rules)

    def map(self, record: Mapping[str, Any]) -> dict[str, Any]:
        issues: list[MappingIssue] = []
        out = self._run(self._plan, record, "", issues)
        if issues:
            raise MappingError(issues)
        return out

    def map_many(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | MappingError]:
        """Map a page of records, rule by rule over the whole page (a column at a time).

        Same results as :meth:`map` per record, but the per-field work of simple rules runs in one
        tight loop per rule instead of a function call per field and record; a failed record's
        slot holds its :class:`MappingError`.
        """
        outs: list[dict[str, Any]] = [{} for _ in records]
        issues: list[list[MappingIssue]] = [[] for _ in records]
        for step in self._plan:
            name, when, value_of, key, put = step
            simple = self._simple.get(value_of) if when is None else None
            if simple is not None:
                _column(records, outs, simple[0], simple[1], name.split("."))
                continue
            for record, out, found in zip(records, outs, issues, strict=True):
                if when is not None and not check(when, record):
                    continue
                try:
                    value = value_of(record, "", found)
                except TransformError as exc:
                    found.append(MappingIssue(name, str(exc), isinstance(exc, MissingBindingError)))
                    continue
                except (ArithmeticError, ValueError, TypeError) as exc:  # a value no rule foresaw
                    found.append(MappingIssue(name, f"unexpected value: {type(exc).__name__}: {exc}"))
                    continue
                if value is not None:
                    if key is not None:
                        out[key] = value
                    else:
                        put(out, value)
        return [MappingError(found) if found else out for out, found in zip(outs, issues, strict=True)]

    def external_id(self, record: Mapping[str, Any]) -> str:
        value = get_path(record, self.spec.key or "")
        if not _present(value):
            raise MappingError([MappingIssue(self.spec.key or "key", "the record has no id")])
        return str(value)

    @staticmethod
    def _run(plan: Sequence[_Step], record: Any, prefix: str, issues: list[MappingIssue]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, when, value_of, key, put in plan:
            if when is not None and not check(when, record):
                continue
            try:
                value = value_of(record, prefix, issues)
            except TransformError as exc:
                issues.append(MappingIssue(prefix + name, str(exc), isinstance(exc, MissingBindingError)))
                continue
            except (ArithmeticError, ValueError, TypeError) as exc:  # a value no rule foresaw
                issues.append(MappingIssue(prefix + name, f"unexpected value: {type(exc).__name__}: {exc}"))
                continue
            if value is not None:
                if key is not None:
                    out[key] = value
                else:
                    put(out, value)
        return out

    def _compile(self, rules: Sequence[Rule]) -> list[_Step]:
        return [
            (
                rule.target,
                rule.when,
                self._value_fn(rule),
                None if "." in rule.target else rule.target,
                _setter(rule.target),
            )
            for rule in rules
        ]

    def _value_fn(self, rule: Rule) -> Callable[[Any, str, list[MappingIssue]], Any]:
        if rule.source == "each":
            items_of = path_getter(rule.arg)
            sub_plan = self._compile(rule.fields)
            run = self._run
            target = rule.target

            def each(record: Any, prefix: str, issues: list[MappingIssue]) -> Any:
                items = items_of(record)
                if items is None:
                    return []
                if not isinstance(items, Sequence) or isinstance(items, str):
                    raise TransformError(f"{rule.arg} is not a list")
                return [
                    run(sub_plan, item, f"{prefix}{target}[{i}].", issues) for i, item in enumerate(items)
                ]

            return each

        source = self._source_fn(rule)
        ops = rule.ops
        value_map, has_fallback, fallback = rule.value_map, rule.has_fallback, rule.fallback
        caster, has_default, default, required = rule.caster, rule.has_default, rule.default, rule.required
        if value_map is None and caster is None and not has_default and not required and len(ops) <= 1:
            # the most common rules (a field, maybe trimmed): the shortest path
            op = ops[0] if ops else None
            if rule.source == "from" and "." not in rule.arg:
                field_name = rule.arg

                def plain_field(record: Any, prefix: str, issues: list[MappingIssue]) -> Any:
                    try:
                        v = record.get(field_name)
                    except AttributeError:
                        return None
                    if v is not None and op is not None:
                        v = op(v)
                    return None if v == "" else v

                self._simple[plain_field] = (field_name, op)
                return plain_field

            def plain(record: Any, prefix: str, issues: list[MappingIssue]) -> Any:
                v = source(record)
                if v is not None and op is not None:
                    v = op(v)
                return None if v == "" else v

            return plain

        def value(record: Any, prefix: str, issues: list[MappingIssue]) -> Any:
            v = source(record)
            if v is not None:
                for op in ops:
                    v = op(v)
                if value_map is not None:
                    key = str(v)
                    if key in value_map:
                        v = value_map[key]
                    elif has_fallback:
                        v = fallback
                    else:
                        mapped = ", ".join(sorted(value_map))
                        raise TransformError(f"value {key!r} is not in the map (mapped values: {mapped})")
                if v == "":
                    v = None
                elif v is not None and caster is not None:
                    v = caster(v)
            if v is None:
                if has_default:
                    v = default  # already cast when the spec was compiled
                if v is None and required:
                    raise TransformError("is required but the source has no value")
            return v

        return value

    def _source_fn(self, rule: Rule) -> _Getter:
        if rule.source == "from":
            return path_getter(rule.arg)
        if rule.source == "const":
            constant = rule.arg
            return lambda record: constant
        if rule.source == "template":
            template = rule.arg
            return lambda record: _render(template, record)
        if rule.source == "money":
            amount_of, currency_of = path_getter(rule.arg[0]), path_getter(rule.arg[1])
            return lambda record: money(amount_of(record), currency_of(record))
        if rule.source == "coalesce":
            getters = [path_getter(path) for path in rule.arg]

            def first(record: Any) -> Any:
                for get in getters:
                    found = get(record)
                    if _present(found):
                        return found
                return None

            return first
        return self._lookup_fn(rule)

    def _lookup_fn(self, rule: Rule) -> _Getter:
        entity, system, path = rule.arg
        reference_of = path_getter(path)
        inbound = self.spec.direction == "inbound"
        target_system = system or self.spec.system
        lookups = self.lookups

        def lookup(record: Any) -> Any:
            value = reference_of(record)
            if not _present(value):
                return None
            if lookups is None:
                raise TransformError(f"lookup of {entity} needs the bindings, which are not available here")
            found = lookups.resolve(system=target_system, entity=entity, value=str(value), inbound=inbound)
            if found is None:
                where = (
                    f"{target_system} {entity} {value}" if inbound else f"{entity} {value} in {target_system}"
                )
                raise MissingBindingError(f"no binding for {where} yet")
            return found

        return lookup
