"""YAML loading that remembers where every key and value came from.

Admins fix a mistake faster when the error says ``account.in.yaml:14:7``; PyYAML's plain loaders
drop the positions, so this composes the node tree and keeps a ``path -> (line, column)`` table
(1-based) next to the plain Python data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PathKey = tuple[str | int, ...]


@dataclass
class SourceDoc:
    """Plain data plus the position of every mapping key / sequence item in the file."""

    file: str
    data: Any
    marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: PathKey) -> tuple[int | None, int | None]:
        """Line and column of ``path``, or of its nearest ancestor that has one."""
        probe = tuple(path)
        while probe:
            if probe in self.marks:
                return self.marks[probe]
            probe = probe[:-1]
        return self.marks.get((), (None, None))


class YamlSyntaxError(ValueError):
    def __init__(self, file: str, line: int | None, column: int | None, message: str) -> None:
        super().__init__(f"{file}:{line}:{column}: {message}")
        self.file, self.line, self.column, self.message = file, line, column, message


def _convert(node: yaml.Node, path: PathKey, marks: dict[PathKey, tuple[int, int]]) -> Any:
    marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            child = (*path, str(key))
            marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _convert(value_node, child, marks)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), marks) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    constructor = yaml.SafeLoader("")
    try:
        return constructor.construct_object(node, deep=True)
    finally:
        constructor.dispose()


def load_yaml(text: str, file: str = "<string>") -> SourceDoc:
    """Parse ``text``; raise :class:`YamlSyntaxError` with the position of a syntax error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        raise YamlSyntaxError(file, line, column, str(exc.problem or exc)) from None
    marks: dict[PathKey, tuple[int, int]] = {}
    data = None if node is None else _convert(node, (), marks)
    return SourceDoc(file=file, data=data, marks=marks)


def load_yaml_file(path: Path) -> SourceDoc:
    return load_yaml(path.read_text(encoding="utf-8"), str(path))
