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


def load_located(text: str) -> LocatedDocument:
    """Parse one YAML document with the safe tag set; an empty document gives ``data=None``.

    Raises YamlSyntaxError for syntax errors, several documents, unsafe or unknown tags and
    unhashable keys.
    """
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise _error_from(exc) from None
        doc = LocatedDocument(data=None)
        if root is None:
            return doc
        doc.marks[()] = _mark(root)
        doc.data = _build(loader, root, (), doc, active=set())
        return doc
    finally:
        loader.dispose()


def _build(
    loader: yaml.SafeLoader, node: yaml.Node, path: PathKey, doc: LocatedDocument, active: set[int]
) -> Any:
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
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, child in enumerate(node.value):
            doc.marks[(*path, index)] = _mark(child)
            items.append(_build(loader, child, (*path, index), doc, active))
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
            key = _build(loader, key_node, path, doc, active)
            child_path = (*path, key if isinstance(key, int) and not isinstance(key, bool) else str(key))
            key_mark = _mark(key_node)
            if position >= merged:  # an explicit key may override a merged one, not another explicit one
                if key in written:
                    doc.duplicates.append((child_path, doc.marks[child_path], key_mark))
                written.add(key)
            doc.marks[child_path] = key_mark
            result[key] = _build(loader, value_node, child_path, doc, active)
        return result
    mark = _mark(node)  # pragma: no cover - PyYAML only produces the three node kinds
    raise YamlSyntaxError(f"unexpected YAML node {type(node).__name__}", mark.line, mark.column)
