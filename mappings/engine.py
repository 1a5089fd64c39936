"""Apply a compiled :class:`~mappings.spec.MappingSpec` to one record.

Per field, in this order: take the value from its source, apply ``ops``, the value ``map``
(with ``fallback``), the ``cast``, then the ``default`` for a missing value, then ``required``.
A field whose ``when`` condition is false is left out. Every problem in a record is collected, so a
dead letter tells support staff everything that is wrong with it at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


class Mapper:
    """A spec bound to a lookup service; call :meth:`map` once per record."""

    def __init__(self, spec: MappingSpec, lookups: Lookups | None = None) -> None:
        self.spec = spec
        self.lookups = lookups

    def map(self, record: Mapping[str, Any]) -> dict[str, Any]:
        issues: list[MappingIssue] = []
        out = self._apply(self.spec.rules, record, "", issues)
        if issues:
            raise MappingError(issues)
        return out

    def external_id(self, record: Mapping[str, Any]) -> str:
        value = get_path(record, self.spec.key or "")
        if not _present(value):
            raise MappingError([MappingIssue(self.spec.key or "key", "the record has no id")])
        return str(value)

    def _apply(
        self, rules: Sequence[Rule], record: Any, prefix: str, issues: list[MappingIssue]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for rule in rules:
            name = prefix + rule.target
            if rule.when is not None and not check(rule.when, record):
                continue
            try:
                value = self._value(rule, record, name, issues)
            except TransformError as exc:
                issues.append(MappingIssue(name, str(exc), isinstance(exc, MissingBindingError)))
                continue
            if value is not None:
                set_path(out, rule.target, value)
        return out

    def _value(self, rule: Rule, record: Any, name: str, issues: list[MappingIssue]) -> Any:
        if rule.source == "each":
            items = get_path(record, rule.arg)
            if items is None:
                items = []
            if not isinstance(items, Sequence) or isinstance(items, str):
                raise TransformError(f"{rule.arg} is not a list")
            return [self._apply(rule.fields, item, f"{name}[{i}].", issues) for i, item in enumerate(items)]
        value = self._source(rule, record)
        if value is not None:
            for op in rule.ops:
                value = op(value)
        if value is not None and rule.value_map is not None:
            key = str(value)
            if key in rule.value_map:
                value = rule.value_map[key]
            elif rule.has_fallback:
                value = rule.fallback
            else:
                allowed = ", ".join(sorted(rule.value_map))
                raise TransformError(f"value {key!r} is not in the map (mapped values: {allowed})")
        if value == "":
            value = None
        if value is not None and rule.caster is not None:
            value = rule.caster(value)
        if value is None and rule.has_default:
            value = rule.default  # already cast when the spec was compiled
        if value is None and rule.required:
            raise TransformError("is required but the source has no value")
        return value

    def _source(self, rule: Rule, record: Any) -> Any:
        if rule.source == "from":
            return get_path(record, rule.arg)
        if rule.source == "const":
            return rule.arg
        if rule.source == "template":
            return _render(rule.arg, record)
        if rule.source == "money":
            amount_path, currency_path = rule.arg
            return money(get_path(record, amount_path), get_path(record, currency_path))
        if rule.source == "coalesce":
            for path in rule.arg:
                value = get_path(record, path)
                if _present(value):
                    return value
            return None
        entity, system, path = rule.arg  # lookup
        value = get_path(record, path)
        if not _present(value):
            return None
        if self.lookups is None:
            raise TransformError(f"lookup of {entity} needs the bindings, which are not available here")
        inbound = self.spec.direction == "inbound"
        target_system = system or self.spec.system
        found = self.lookups.resolve(system=target_system, entity=entity, value=str(value), inbound=inbound)
        if found is None:
            where = f"{target_system} {entity} {value}" if inbound else f"{entity} {value} in {target_system}"
            raise MissingBindingError(f"no binding for {where} yet")
        return found
