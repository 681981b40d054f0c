"""Loading workflow definitions from YAML, with a line number on every problem.

The reader differs from ``yaml.safe_load`` on purpose:
- Scalars resolve as in YAML 1.2's core schema: only ``true``/``false`` are booleans and only plain
  decimal, ``0o`` and ``0x`` numbers are numbers. ``on``, ``yes``, ``no``, ``y``, dates and ``1:30``
  stay text, so ``if:``/``on:`` keys and ``run: no`` mean what they say.
- Mapping keys are always text as written (``123:`` is the key ``"123"``).
- A key repeated in one mapping is a problem, not a silent "last one wins".
- Anchors, aliases and ``<<`` merges work; recursive aliases and alias bombs are problems.
- Malformed YAML becomes one problem with line and column, never a traceback.
"""

from __future__ import annotations

import os
import re
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from actors.definitions._problems import Path, ProblemLog
from actors.definitions._subflows import embed_files
from actors.definitions.mapping import definition_mapping
from actors.definitions.validate import build_definition
from events.definition import WorkflowDefinition
from events.errors import InvalidWorkflow

__all__ = ["load_workflow_file", "load_workflow_text"]

_TAG: Final = "tag:yaml.org,2002:"
_SCALAR_TAGS: Final = frozenset(f"{_TAG}{name}" for name in ("str", "int", "float", "bool", "null"))
_MAX_NODES: Final = 100_000  # far beyond any real workflow; stops "billion laughs" alias bombs
_MAX_DEPTH: Final = 100


class _CoreSchemaLoader(yaml.SafeLoader):
    # Start from no implicit types at all; the core schema's are added below.
    yaml_implicit_resolvers: dict[Any, Any] = {}

    def construct_yaml_int(self, node: ScalarNode) -> int:
        # YAML 1.2: 010 is ten, not octal eight as PyYAML's 1.1 rules would have it.
        text = str(self.construct_scalar(node)).replace("_", "")
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        if digits.startswith(("0x", "0o")):
            return sign * int(digits[2:], 16 if digits[1] == "x" else 8)
        return sign * int(digits)


_CoreSchemaLoader.add_constructor(f"{_TAG}int", _CoreSchemaLoader.construct_yaml_int)
for _tag, _pattern, _first in (
    (f"{_TAG}bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (f"{_TAG}null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (f"{_TAG}int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        f"{_TAG}float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
    (f"{_TAG}merge", r"^(?:<<)$", "<"),
):
    _CoreSchemaLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def load_workflow_file(
    path: str | os.PathLike[str], *, _included_by: tuple[str, ...] = ()
) -> WorkflowDefinition:
    """Read and validate a workflow file; problems are prefixed ``<path>:<line>``.

    An unreadable file is reported as an ``InvalidWorkflow`` too, so callers handle one error.
    The files its ``workflow:`` jobs name are read too and embedded (``_subflows``).
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = file.read()
    except OSError as error:
        raise InvalidWorkflow([f"{source}: cannot read: {error.strerror}"], source=source) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        problem = f"{source}: not UTF-8 text (byte {error.start})"
        raise InvalidWorkflow([problem], source=source) from None
    return load_workflow_text(text, source=source, _included_by=_included_by, _from_file=True)


def load_workflow_text(
    text: str,
    *,
    source: str = "<string>",
    _included_by: tuple[str, ...] = (),
    _from_file: bool = False,
) -> WorkflowDefinition:
    """Parse and validate YAML ``text``; ``source`` names it in problems."""
    lines: dict[Path, int] = {}
    log = ProblemLog(source=source, lines=lines)
    raw = _read_document(text, source, log, lines)
    if _from_file:

        def load(child: str, chain: tuple[str, ...]) -> WorkflowDefinition:
            return load_workflow_file(child, _included_by=chain)

        embed_files(raw, source, log, load, definition_mapping, _included_by)
    return build_definition(raw, log)


def _read_document(text: str, source: str, log: ProblemLog, lines: dict[Path, int]) -> Any:
    loader: _CoreSchemaLoader | None = None
    try:
        loader = _CoreSchemaLoader(text)  # checks for unprintable characters straight away
        node = loader.get_single_node()
        if node is None:
            return None
        return _Reader(loader, log, lines).value(node, ())
    except yaml.YAMLError as error:
        raise InvalidWorkflow([_describe_yaml_error(error, text, source)], source=source) from None
    except RecursionError:
        problem = f"{source}: nested too deeply to read"
        raise InvalidWorkflow([problem], source=source) from None
    finally:
        if loader is not None:
            loader.dispose()


def _describe_yaml_error(error: yaml.YAMLError, text: str, source: str) -> str:
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        character = f"#x{error.character:04x}" if isinstance(error.character, int) else "a byte"
        return f"{source}:{line}:{column} malformed YAML: character {character} is not allowed"
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        what = ", ".join(part for part in (error.context, error.problem) if part)
        if mark is not None:
            return f"{source}:{mark.line + 1}:{mark.column + 1} malformed YAML: {what}"
        return f"{source}: malformed YAML: {what}"
    return f"{source}: malformed YAML: {error}"


def _shown_tag(tag: str) -> str:
    return f"!!{tag[len(_TAG) :]}" if tag.startswith(_TAG) else tag


class _Reader:
    """Builds plain Python data from composed nodes, recording the line of every path."""

    def __init__(self, loader: _CoreSchemaLoader, log: ProblemLog, lines: dict[Path, int]) -> None:
        self.loader = loader
        self.log = log
        self.lines = lines
        self.visited = 0
        self.open_nodes: set[int] = set()  # ids of collections being read, to spot alias loops
        self.flattened: set[int] = set()  # ids of mappings whose `<<` merges are resolved

    def value(self, node: Node, path: Path) -> Any:
        self.visited += 1
        if self.visited > _MAX_NODES:
            raise yaml.YAMLError(f"the document expands to more than {_MAX_NODES} values")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.open_nodes or len(path) > _MAX_DEPTH:
            self.log.add(path, "an alias refers to itself or nests too deeply")
            return None
        self.open_nodes.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                self.expect_tag(node, "seq", path)
                return [self.value(item, (*path, index)) for index, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
            return None
        finally:
            self.open_nodes.discard(id(node))

    def scalar(self, node: ScalarNode, path: Path) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self.log.add(path, f"unsupported YAML tag {_shown_tag(node.tag)}: use plain values")
            return None
        try:
            return self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError) as error:
            self.log.add(
                path, f"cannot read {node.value[:40]!r} as {node.tag[len(_TAG) :]}: {error}"
            )
            return None

    def mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        self.expect_tag(node, "map", path)
        if id(node) not in self.flattened:
            self.flattened.add(id(node))
            self.report_duplicates(node, path)
            self.loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                line = key_node.start_mark.line + 1
                self.log.add(
                    path, "a mapping key must be plain text, not a list or mapping", line=line
                )
                continue
            key = str(key_node.value)
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = self.value(value_node, (*path, key))
        return result

    def report_duplicates(self, node: MappingNode, path: Path) -> None:
        first_seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == f"{_TAG}merge":
                continue
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key not in first_seen:
                first_seen[key] = line
                continue
            what = "job" if path == ("jobs",) else "key"
            message = f"duplicate {what} {key!r}: first defined on line {first_seen[key]}"
            self.log.add((*path, key), message, line=line)

    def expect_tag(self, node: Node, kind: str, path: Path) -> None:
        if node.tag != f"{_TAG}{kind}":
            self.log.add(path, f"unsupported YAML tag {_shown_tag(node.tag)}: use plain values")
