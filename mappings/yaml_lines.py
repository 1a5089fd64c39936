"""YAML loading that remembers the line and column of every key.

PyYAML's ``safe_load`` throws positions away, yet an admin fixes ``billsync.yaml`` fastest when a
problem says ``billsync.yaml:12:5``. So we compose the node tree (safe tags only) and build the plain
data ourselves, recording a 1-based position for every mapping key and sequence item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    """A 1-based position in the file."""

    line: int
    column: int


class YamlSyntaxError(ValueError):
    """The text is not YAML we accept; ``line``/``column`` point at the offending spot (1-based)."""

    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


@dataclass
class LocatedDocument:
    """Plain Python data plus where each key path was written.

    ``duplicates`` lists keys written twice in one mapping (YAML keeps the last one silently, which
    hides typos such as two ``streams:`` blocks): ``(path, first, second)``.
    """

    data: Any
    marks: dict[PathKey, Mark] = field(default_factory=dict)
    duplicates: list[tuple[PathKey, Mark, Mark]] = field(default_factory=list)

    def where(self, path: PathKey) -> Mark | None:
        """Position of ``path``, else of its nearest ancestor that has one."""
        probe = tuple(path)
        while True:
            if probe in self.marks:
                return self.marks[probe]
            if not probe:
                return None
            probe = probe[:-1]


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _error_from(exc: yaml.MarkedYAMLError) -> YamlSyntaxError:
    mark = exc.problem_mark or exc.context_mark
    parts = [p for p in (exc.context, exc.problem) if p]
    message = "; ".join(parts) or "invalid YAML"
    if mark is None:
        return YamlSyntaxError(message, None, None)
    return YamlSyntaxError(message, mark.line + 1, mark.column + 1)


@dataclass(frozen=True)
class Limits:
    """Bounds that keep a hostile or broken file from exhausting memory or the stack.

    Configuration and mapping files are small; anything past these limits is a mistake or an
    attack ("billion laughs" anchors, megabyte strings, thousands of nesting levels).
    """

    max_bytes: int = 1_000_000
    max_values: int = 100_000  # after expanding anchors and aliases
    max_depth: int = 40
    max_string: int = 65_536


DEFAULT_LIMITS = Limits()


class _Budget:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.values = 0

    def spend(self, node: yaml.Node, depth: int) -> None:
        self.values += 1
        limits = self.limits
        if self.values > limits.max_values:
            mark = _mark(node)
            raise YamlSyntaxError(
                f"the document expands to more than {limits.max_values:,} values (anchors and aliases "
                "included); split it or remove repeated aliases",
                mark.line,
                mark.column,
            )
        if depth > limits.max_depth:
            mark = _mark(node)
            raise YamlSyntaxError(f"nested more than {limits.max_depth} levels deep", mark.line, mark.column)
        if isinstance(node, yaml.ScalarNode) and len(node.value) > limits.max_string:
            mark = _mark(node)
            raise YamlSyntaxError(
                f"a value is {len(node.value):,} characters long; at most {limits.max_string:,} are allowed",
                mark.line,
                mark.column,
            )


def load_located(text: str, limits: Limits = DEFAULT_LIMITS) -> LocatedDocument:
    """Parse one YAML document with the safe tag set; an empty document gives ``data=None``.

    Raises YamlSyntaxError for syntax errors, several documents, unsafe or unknown tags,
    unhashable keys, and documents past :class:`Limits`.
    """
    if len(text) > limits.max_bytes:
        raise YamlSyntaxError(
            f"the file is {len(text):,} characters; at most {limits.max_bytes:,} are allowed", None, None
        )
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise _error_from(exc) from None
        except RecursionError:
            raise YamlSyntaxError(f"nested more than {limits.max_depth} levels deep", None, None) from None
        doc = LocatedDocument(data=None)
        if root is None:
            return doc
        doc.marks[()] = _mark(root)
        doc.data = _build(loader, root, (), doc, active=set(), budget=_Budget(limits))
        return doc
    finally:
        loader.dispose()


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: PathKey,
    doc: LocatedDocument,
    active: set[int],
    budget: _Budget,
) -> Any:
    budget.spend(node, len(path))
    if id(node) in active:
        mark = _mark(node)
        raise YamlSyntaxError(
            "an alias refers to its own parent (recursive structure)", mark.line, mark.column
        )
    if isinstance(node, yaml.ScalarNode):
        try:
            return loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise _error_from(exc) from None
    active = active | {id(node)}
    expected = "tag:yaml.org,2002:seq" if isinstance(node, yaml.SequenceNode) else "tag:yaml.org,2002:map"
    if node.tag != expected:
        mark = _mark(node)
        raise YamlSyntaxError(
            f"the tag {node.tag!r} is not allowed (only plain YAML values)", mark.line, mark.column
        )
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, child in enumerate(node.value):
            doc.marks[(*path, index)] = _mark(child)
            items.append(_build(loader, child, (*path, index), doc, active, budget))
        return items
    if isinstance(node, yaml.MappingNode):
        explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        try:
            loader.flatten_mapping(node)  # resolves ``<<: *anchor`` merge keys, which come first
        except yaml.MarkedYAMLError as exc:
            raise _error_from(exc) from None
        merged = len(node.value) - explicit
        result: dict[Any, Any] = {}
        written: set[Any] = set()
        for position, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):
                mark = _mark(key_node)
                raise YamlSyntaxError(
                    "a key must be a plain value, not a list or mapping", mark.line, mark.column
                )
            key = _build(loader, key_node, path, doc, active, budget)
            child_path = (*path, key if isinstance(key, int) and not isinstance(key, bool) else str(key))
            key_mark = _mark(key_node)
            if position >= merged:  # an explicit key may override a merged one, not another explicit one
                if key in written:
                    doc.duplicates.append((child_path, doc.marks[child_path], key_mark))
                written.add(key)
            doc.marks[child_path] = key_mark
            result[key] = _build(loader, value_node, child_path, doc, active, budget)
        return result
    mark = _mark(node)  # pragma: no cover - PyYAML only produces the three node kinds
    raise YamlSyntaxError(f"unexpected YAML node {type(node).__name__}", mark.line, mark.column)
