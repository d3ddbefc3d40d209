"""Split a Markdown file into front matter and body, and derive the fields the store keeps.

The start of the file, after an optional UTF-8 BOM, decides the front matter format:

- ``---`` alone on the first line opens YAML front matter, closed by the next ``---`` line.
  It is read by the YAML 1.2 core schema, so ``no`` and ``10:30`` stay strings and dates stay
  the text the author wrote. Aliases are counted before any value is built, which stops
  "billion laughs" documents, and tags other than the core ones are rejected.
- ``+++`` alone on the first line opens TOML 1.0 front matter, closed by the next ``+++`` line.
- ``{`` starts JSON front matter: the first complete JSON object, up to the end of its line.

``front_matter`` holds only JSON values. Typed dates appear only in the derived fields
(``date``, ``publish_at``, ``expire_at``). Every rejected file raises ``FrontMatterError``
with the file line at fault.
"""

from __future__ import annotations

import codecs
import json
import math
import re
import tomllib
import unicodedata
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from pathlib import PurePosixPath
from typing import Any, Literal, NoReturn, TypeAlias

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, MaxDepthExceededError
from ruamel.yaml.error import MarkedYAMLError, StreamMark
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import BaseResolver
from ruamel.yaml.tag import Tag

from wryte_pipeline.errors import FrontMatterError, SkippedDocumentError

JSONValue: TypeAlias = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]
_FrontMatterFormat: TypeAlias = Literal["yaml", "toml", "json"]

# Ceilings on the front matter's value count and nesting, after YAML aliases are expanded.
# Hand-written front matter stays far below both. YAML is checked before any Python value
# is built, so an alias bomb is rejected before it can use memory.
_MAX_YAML_VALUES = 100_000
_MAX_NESTING_DEPTH = 64

_LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"

_OPENING_FENCE = re.compile(r"(---|\+\+\+)[ \t]*(?:\r\n|\r|\n)")
_CLOSING_FENCES = {
    fence: re.compile(rf"(?<![^\r\n]){re.escape(fence)}[ \t]*(?:\r\n|\r|\n|\Z)")
    for fence in ("---", "+++")
}
_REST_OF_LINE = re.compile(r"[ \t]*(?:\r\n|\r|\n|\Z)")
_LONE_CR = re.compile(r"\r(?!\n)")

_PUBLISH_KEYS = ("publishDate", "publish_at", "publishdate", "pubDate")
_EXPIRE_KEYS = ("expiryDate", "expire_at", "expirydate", "unpublishdate")
_FLAG_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_DATE_FORMS = "YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS+HH:MM"
_DATETIME_PATTERN = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:(?:[Tt]|[ \t]+)(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(?:[ \t]*([Zz]|[+-]\d{2}:?\d{2}|[+-]\d{1,2}))?)?"
)


_TRAILING_ZONE = re.compile(r"[ \t]([Zz]|[+-]\d{2}:?\d{2})[ \t]*\Z")


@dataclass(frozen=True)
class ParsedDocument:
    """A Markdown file split into its front matter, its body and the fields derived from both.

    Attributes:
        front_matter: the front matter as JSON values, with dates as the text written
            (YAML, JSON) or as ISO 8601 text (TOML dates and times).
        format: the front matter format, or None when the file has none.
        body: the exact text after the line ending that closes the front matter.
        title: ``title`` as text.
        slug: ``slug``, else a slug made from the file name, or from the folder name
            for ``index`` and ``_index`` pages.
        date: ``date`` as an aware datetime.
        publish_at: the first of publishDate, publish_at, publishdate, pubDate.
        expire_at: the first of expiryDate, expire_at, expirydate, unpublishdate.
        draft: ``draft`` is true, or Jekyll's ``published`` is false.
        tags: ``tags`` as a list, splitting a comma-separated string.
        categories: ``categories`` (else Jekyll's ``category``), split like tags.
        description: ``description``, else ``summary``.
    """

    front_matter: dict[str, JSONValue]
    format: Literal["yaml", "toml", "json"] | None
    body: str
    title: str | None
    slug: str
    date: datetime | None
    publish_at: datetime | None
    expire_at: datetime | None
    draft: bool
    tags: list[str]
    categories: list[str]
    description: str | None


@dataclass(frozen=True)
class _FrontMatter:
    """Loaded front matter before any field is derived.

    Attributes:
        key_lines: file line of each top-level key, used to point errors at the key.
    """

    format: _FrontMatterFormat | None
    values: dict[str, JSONValue]
    key_lines: dict[str, int]
    body: str


def is_lfs_pointer(data: bytes) -> bool:
    """Return whether ``data`` is a Git LFS pointer file instead of the file's content."""
    return data.startswith(_LFS_POINTER_PREFIX)


def parse_document(path: str, data: bytes, *, site_timezone: tzinfo = UTC) -> ParsedDocument:
    """Split a Markdown file into front matter and body, and derive the stored fields.

    Args:
        path: the file's path in the repository, used in error messages and for the slug.
        data: the file's bytes as stored in the repository.
        site_timezone: the zone for dates and times written without a UTC offset.

    Raises:
        SkippedDocumentError: the file is a Git LFS pointer.
        FrontMatterError: the file is not UTF-8 or its front matter is invalid.
    """
    if is_lfs_pointer(data):
        raise SkippedDocumentError(
            path,
            "file is a Git LFS pointer, not Markdown; fetch the real content with "
            "`git lfs pull` before syncing it",
        )
    text = _decode_utf8(path, data)
    front_matter = _read_front_matter(path, text)
    _check_values(path, front_matter)
    return _derive_document(path, front_matter, site_timezone)


def _decode_utf8(path: str, data: bytes) -> str:
    """Decode the file, dropping one leading BOM so it cannot hide the front matter."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        valid_prefix = data[: err.start].decode("utf-8")
        line = _line_at(valid_prefix, len(valid_prefix), 1)
        raise FrontMatterError(
            path,
            line,
            f"file is not valid UTF-8 (byte 0x{data[err.start]:02x}); re-save it as UTF-8",
        ) from err


def _line_at(text: str, index: int, first_line: int) -> int:
    """Return the file line of ``text[index]``, counting LF, CRLF and lone CR as line ends."""
    breaks = text.count("\n", 0, index) + text.count("\r", 0, index)
    return first_line + breaks - text.count("\r\n", 0, index)


# --- splitting ---------------------------------------------------------------------------


def _read_front_matter(path: str, text: str) -> _FrontMatter:
    """Find the front matter by the file's first characters and load it."""
    opening = _OPENING_FENCE.match(text)
    if opening is not None:
        fence = opening.group(1)
        closing = _CLOSING_FENCES[fence].search(text, opening.end())
        if closing is None:
            raise FrontMatterError(
                path,
                1,
                f"the front matter fence '{fence}' opened on line 1 is not closed; "
                f"add a closing '{fence}' line after the front matter",
            )
        source = text[opening.end() : closing.start()]
        body = text[closing.end() :]
        if fence == "---":
            values, key_lines = _YamlLoader(path, source, first_line=2).load()
            return _FrontMatter("yaml", values, key_lines, body)
        values, key_lines = _load_toml(path, source, first_line=2)
        return _FrontMatter("toml", values, key_lines, body)
    # `{{` and `{%` open Hugo shortcodes and Liquid tags, which are body text, not JSON.
    if text.startswith("{") and not text.startswith(("{{", "{%")):
        return _read_json(path, text)
    return _FrontMatter(None, {}, {}, text)


# --- JSON --------------------------------------------------------------------------------


class _DuplicateJsonKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build a JSON object, raising on a repeated key that `json` would silently drop."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateJsonKeyError(key)
        result[key] = value
    return result


def _finite_float_or_text(text: str) -> float | str:
    """Keep NaN, infinities and overflowing numbers as written, since JSON cannot hold them."""
    number = float(text)
    return number if math.isfinite(number) else text


_JSON_DECODER = json.JSONDecoder(
    object_pairs_hook=_reject_duplicate_keys,
    parse_float=_finite_float_or_text,
    parse_constant=str,
)
_JSON_KEY = re.compile(r'"((?:[^"\\\r\n]|\\.)*)"\s*:')


def _read_json(path: str, text: str) -> _FrontMatter:
    """Load the JSON object that starts the file. The body starts on the next line."""
    try:
        values, end = _JSON_DECODER.raw_decode(text)
    except json.JSONDecodeError as err:
        raise FrontMatterError(
            path,
            _line_at(text, err.pos, 1),
            f"invalid JSON front matter: {err.msg}; fix the JSON object that starts the file",
        ) from err
    except _DuplicateJsonKeyError as err:
        line = _json_key_line(text, err.key, occurrence=2)
        raise FrontMatterError(
            path, line, f"duplicate key {err.key!r} in JSON front matter; remove one of them"
        ) from err
    except RecursionError as err:
        raise FrontMatterError(
            path, 1, "JSON front matter is nested too deeply; flatten the structure"
        ) from err
    rest = _REST_OF_LINE.match(text, end)
    if rest is None:
        raise FrontMatterError(
            path,
            _line_at(text, end, 1),
            "text follows the JSON front matter on the same line; start the body on the next line",
        )
    return _FrontMatter("json", values, _json_key_lines(text[:end]), text[rest.end() :])


def _json_key_lines(source: str) -> dict[str, int]:
    """Find the line of each key in the JSON text, keeping the first occurrence.

    NOTE: keys of nested objects are found too, so a nested key seen before a top-level
    key of the same name gives the nested line. Only error messages use these lines.
    """
    lines: dict[str, int] = {}
    for match in _JSON_KEY.finditer(source):
        lines.setdefault(match.group(1), _line_at(source, match.start(), 1))
    return lines


def _json_key_line(source: str, key: str, occurrence: int) -> int:
    """Return the line of the nth ``"key":`` in the JSON text, or line 1 if not found."""
    matches = [m for m in _JSON_KEY.finditer(source) if m.group(1) == key]
    if len(matches) < occurrence:
        return 1
    return _line_at(source, matches[occurrence - 1].start(), 1)


# --- TOML --------------------------------------------------------------------------------

_TOML_ERROR_POSITION = re.compile(r"\s*\(at (?:line (\d+), column \d+|end of document)\)")
_TOML_KEY = re.compile(r"""^[ \t]*("(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[A-Za-z0-9_-]+)[ \t.=]""", re.M)
_TOML_TABLE_HEADER = re.compile(r"^[ \t]*\[", re.M)


def _load_toml(
    path: str, source: str, first_line: int
) -> tuple[dict[str, JSONValue], dict[str, int]]:
    """Load TOML front matter and turn its dates and times into ISO 8601 text.

    tomllib accepts only LF and CRLF line ends, so lone CRs become LFs first. That keeps
    every line number, and a lone CR is not valid inside a TOML string anyway.
    """
    source = _LONE_CR.sub("\n", source)
    try:
        table = tomllib.loads(source, parse_float=_finite_float_or_text)
    except tomllib.TOMLDecodeError as err:
        raise _toml_error(path, source, first_line, str(err)) from err
    except RecursionError as err:
        raise FrontMatterError(
            path, first_line, "TOML front matter is nested too deeply; flatten the structure"
        ) from err
    values = {key: _toml_to_json(value) for key, value in table.items()}
    return values, _toml_key_lines(source, first_line)


def _toml_error(path: str, source: str, first_line: int, message: str) -> FrontMatterError:
    """Build the error from tomllib's message, whose line numbers start at the TOML text."""
    position = _TOML_ERROR_POSITION.search(message)
    if position is not None and position.group(1) is not None:
        line = first_line + int(position.group(1)) - 1
    else:
        line = _line_at(source, len(source), first_line)
    if position is not None:
        message = message[: position.start()] + message[position.end() :]
    return FrontMatterError(
        path, line, f"invalid TOML front matter: {message}; check the TOML syntax on this line"
    )


def _toml_to_json(value: Any) -> JSONValue:
    """Convert tomllib's values to JSON values: dates and times become ISO 8601 text."""
    if isinstance(value, dict):
        return {key: _toml_to_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_toml_to_json(item) for item in value]
    if isinstance(value, date | time):
        return value.isoformat()
    result: JSONValue = value
    return result


def _toml_key_lines(source: str, first_line: int) -> dict[str, int]:
    """Find the line of each top-level key, which all come before the first table header.

    NOTE: a line inside a multi-line string or array can look like a key or a header,
    which gives a wrong line or none. Only error messages use these lines.
    """
    header = _TOML_TABLE_HEADER.search(source)
    end = header.start() if header is not None else len(source)
    lines: dict[str, int] = {}
    for match in _TOML_KEY.finditer(source, 0, end):
        key = match.group(1).strip("\"'")
        lines.setdefault(key, _line_at(source, match.start(), first_line))
    return lines


# --- YAML --------------------------------------------------------------------------------

_CORE_TAG_PREFIX = "tag:yaml.org,2002:"
_STR_TAG = _CORE_TAG_PREFIX + "str"
_NULL_TAG = _CORE_TAG_PREFIX + "null"
_BOOL_TAG = _CORE_TAG_PREFIX + "bool"
_INT_TAG = _CORE_TAG_PREFIX + "int"
_FLOAT_TAG = _CORE_TAG_PREFIX + "float"
_SEQ_TAG = _CORE_TAG_PREFIX + "seq"
_MAP_TAG = _CORE_TAG_PREFIX + "map"
_RESOLVED_TAGS = {
    tag: Tag(suffix=tag)
    for tag in (_STR_TAG, _NULL_TAG, _BOOL_TAG, _INT_TAG, _FLOAT_TAG, _SEQ_TAG, _MAP_TAG)
}

# Plain scalar resolution by the YAML 1.2 core schema.
_NULL_WORDS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOL_WORDS = {
    "true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False
}  # fmt: skip
_INT_PATTERN = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_PATTERN = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_NON_FINITE_PATTERN = re.compile(r"[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")


def _resolve_plain_scalar(value: str) -> str:
    """Return the core schema tag of an untagged, unquoted scalar."""
    if value in _NULL_WORDS:
        return _NULL_TAG
    if value in _BOOL_WORDS:
        return _BOOL_TAG
    if value[0] not in "-+.0123456789":
        return _STR_TAG
    if _INT_PATTERN.fullmatch(value):
        return _INT_TAG
    if _FLOAT_PATTERN.fullmatch(value) or _NON_FINITE_PATTERN.fullmatch(value):
        return _FLOAT_TAG
    return _STR_TAG


class _CoreSchemaResolver(BaseResolver):
    """Resolve untagged scalars by the YAML 1.2 core schema and nothing else.

    The resolver of ruamel.yaml 0.19 also tags timestamps and ``<<`` merge keys, and switches
    to YAML 1.1 rules (``no`` is false, ``10:30`` is a number) on a ``%YAML 1.1`` directive.
    """

    def __init__(self, version: Any = None, loader: Any = None, loadumper: Any = None) -> None:
        super().__init__(loader if loader is not None else loadumper)
        self._loader_version = version

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Tag:
        if kind is ScalarNode:
            tag = _resolve_plain_scalar(value) if implicit[0] else _STR_TAG
        else:
            tag = _SEQ_TAG if kind is SequenceNode else _MAP_TAG
        return _RESOLVED_TAGS[tag]

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        """Do nothing, because this resolver has no path resolvers to track."""

    def ascend_resolver(self) -> None:
        """Do nothing, because this resolver has no path resolvers to track."""

    @property
    def processing_version(self) -> tuple[int, int]:
        return (1, 2)


class _Alias:
    """An alias in the composed node graph, with the mark of the alias itself.

    ruamel's composer puts the anchored node in place of an alias, which loses the
    alias's position. Errors about expansion should name the alias's line.
    """

    __slots__ = ("target", "start_mark")

    def __init__(self, target: Node, start_mark: StreamMark) -> None:
        self.target = target
        self.start_mark = start_mark


class _AliasMarkingComposer(Composer):
    """Composer that wraps every alias in an ``_Alias``."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        # YAML 1.2 allows reusing an anchor name, and an alias refers to the latest anchor.
        self.warn_double_anchors = False

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            mark = self.parser.peek_event().start_mark
            return _Alias(super().compose_node(parent, index), mark)
        return super().compose_node(parent, index)


_GraphNode: TypeAlias = Node | _Alias


def _children(node: Node) -> Iterator[_GraphNode]:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value
    elif isinstance(node, SequenceNode):
        yield from node.value


def _target(node: _GraphNode) -> Node:
    return node.target if isinstance(node, _Alias) else node


class _YamlLoader:
    """Load YAML front matter by composing the node graph and converting it to JSON values.

    The graph is measured before any value is built. Aliases share nodes in the graph, so
    a "billion laughs" document of a few hundred bytes is a few dozen nodes there and only
    explodes when built. Sizes are memoized per node, so measuring is linear in the graph.
    """

    def __init__(self, path: str, source: str, first_line: int) -> None:
        self._path = path
        self._source = source
        self._first_line = first_line

    def load(self) -> tuple[dict[str, JSONValue], dict[str, int]]:
        """Return the top-level mapping as JSON values and the file line of each key."""
        root = self._compose()
        if root is None or root.tag == _NULL_TAG:
            return {}, {}
        if not isinstance(root, MappingNode):
            kind = "a list" if isinstance(root, SequenceNode) else "a single value"
            self._fail(
                root.start_mark,
                f"front matter must be a mapping of key: value pairs, not {kind}; "
                "write one 'key: value' per line",
            )
        self._measure(root, set(), {})
        values: dict[str, JSONValue] = {}
        key_lines: dict[str, int] = {}
        for key, key_node, value_node in self._items(root):
            values[key] = self._construct(value_node)
            key_lines[key] = self._line(key_node.start_mark)
        return values, key_lines

    def _compose(self) -> Node | None:
        yaml = YAML(typ="safe", pure=True)
        yaml.Composer = _AliasMarkingComposer
        yaml.Resolver = _CoreSchemaResolver
        yaml.max_depth = _MAX_NESTING_DEPTH
        try:
            root: Node | None = yaml.compose(self._source)
        except MaxDepthExceededError as err:
            self._fail(err.problem_mark, _depth_message())
        except MarkedYAMLError as err:
            self._fail_syntax(err)
        except ReaderError as err:
            line = _line_at(self._source, err.position, self._first_line)
            raise FrontMatterError(
                self._path,
                line,
                f"YAML front matter contains the control character U+{err.character:04X}; "
                "remove it",
            ) from err
        return root

    def _measure(
        self, node: _GraphNode, active: set[int], sizes: dict[int, tuple[int, int]]
    ) -> tuple[int, int]:
        """Return the value count and depth of ``node`` with every alias expanded.

        Args:
            node: the node to measure.
            active: ids of the collections being measured, to detect an alias to itself.
            sizes: memoized (count, depth) per collection id.
        """
        target = _target(node)
        if id(target) in active:
            self._fail(
                node.start_mark,
                f"alias *{target.anchor} refers to a collection that contains it; "
                "YAML front matter cannot be recursive",
            )
        if isinstance(target, ScalarNode):
            return 1, 1
        known = sizes.get(id(target))
        if known is not None:
            return known
        active.add(id(target))
        count, depth = 1, 1
        for child in _children(target):
            child_count, child_depth = self._measure(child, active, sizes)
            count += child_count
            depth = max(depth, child_depth + 1)
            if count > _MAX_YAML_VALUES:
                self._fail(child.start_mark, _size_message())
            if depth > _MAX_NESTING_DEPTH:
                self._fail(child.start_mark, _depth_message())
        active.discard(id(target))
        sizes[id(target)] = (count, depth)
        return count, depth

    def _items(self, node: MappingNode) -> Iterator[tuple[str, Node, _GraphNode]]:
        """Yield each pair with its key as text, rejecting complex and repeated keys."""
        self._checked_tag(node, {_MAP_TAG})
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = self._key_text(key_node)
            line = self._line(key_node.start_mark)
            if key in seen:
                self._fail(
                    key_node.start_mark,
                    f"duplicate key {key!r} in front matter (first on line {seen[key]}); "
                    "remove one of them",
                )
            seen[key] = line
            yield key, key_node, value_node

    def _key_text(self, key_node: _GraphNode) -> str:
        """Return a key as the text written, so ``2024``, ``on`` and ``null`` keep working."""
        target = _target(key_node)
        if not isinstance(target, ScalarNode):
            self._fail(
                key_node.start_mark,
                "front matter keys must be plain text, not a mapping or list; use a text key",
            )
        self._checked_tag(target, _SCALAR_CONSTRUCTORS)
        text: str = target.value
        return text

    def _construct(self, node: _GraphNode) -> JSONValue:
        target = _target(node)
        if isinstance(target, MappingNode):
            return {key: self._construct(value) for key, _, value in self._items(target)}
        if isinstance(target, SequenceNode):
            self._checked_tag(target, {_SEQ_TAG})
            return [self._construct(item) for item in target.value]
        tag = self._checked_tag(target, _SCALAR_CONSTRUCTORS)
        text: str = target.value
        try:
            return _SCALAR_CONSTRUCTORS[tag](text)
        except ValueError:
            self._fail(
                target.start_mark,
                f"value {text!r} does not match its tag {_shown_tag(tag)}; "
                "fix the value or remove the tag",
            )

    def _checked_tag(self, node: Node, allowed: Container[str]) -> str:
        """Return the node's tag, rejecting every tag outside ``allowed``."""
        tag = node.tag or ""
        if tag not in allowed:
            self._fail(
                node.start_mark,
                f"YAML tag {_shown_tag(tag)} is not allowed here; tags are not allowed "
                "in front matter except the core tags !!str, !!int, !!float, !!bool, "
                "!!null, !!seq and !!map",
            )
        return tag

    def _line(self, mark: StreamMark) -> int:
        return _line_at(self._source, mark.index, self._first_line)

    def _fail(self, mark: StreamMark, message: str) -> NoReturn:
        raise FrontMatterError(self._path, self._line(mark), message)

    def _fail_syntax(self, err: MarkedYAMLError) -> NoReturn:
        mark = err.problem_mark or err.context_mark
        problem = ", ".join(part for part in (err.context, err.problem) if part)
        line = self._line(mark) if mark is not None else self._first_line
        if err.context in _UNCLOSED_CONTEXTS and err.context_mark is not None:
            # ruamel reports an unclosed quote or bracket where it gave up, often lines later,
            # so point at the line that opened it.
            opened = self._line(err.context_mark)
            if opened < line:
                raise FrontMatterError(
                    self._path,
                    opened,
                    f"invalid YAML front matter: {problem} on line {line}; close the "
                    f"{_UNCLOSED_CONTEXTS[err.context]} opened on line {opened}",
                ) from err
        raise FrontMatterError(
            self._path, line, f"invalid YAML front matter: {problem}; {_yaml_hint(problem)}"
        ) from err


def _shown_tag(tag: str) -> str:
    if tag.startswith(_CORE_TAG_PREFIX):
        return "!!" + tag[len(_CORE_TAG_PREFIX) :]
    return tag


# Contexts of ruamel errors raised when a quoted scalar or a flow collection is never closed,
# with what the writer has to close.
_UNCLOSED_CONTEXTS = {
    "while scanning a quoted scalar": "quote",
    "while parsing a flow sequence": "'['",
    "while parsing a flow mapping": "'{'",
}


def _yaml_hint(problem: str) -> str:
    """Suggest the usual fix for ruamel's most common syntax errors."""
    if "mapping values are not allowed" in problem:
        return "put the value in quotes if it contains ': '"
    if "'\\t'" in problem:
        return "indent with spaces instead of tabs"
    return "check the YAML syntax, and quote values that contain special characters"


def _size_message() -> str:
    return (
        f"front matter has more than {_MAX_YAML_VALUES:,} values once YAML aliases are "
        "expanded; remove the aliases or shorten the front matter"
    )


def _depth_message() -> str:
    return (
        f"front matter is nested more than {_MAX_NESTING_DEPTH} levels deep; flatten the structure"
    )


def _construct_null(text: str) -> None:
    if text not in _NULL_WORDS:
        raise ValueError(text)


def _construct_bool(text: str) -> bool:
    if text not in _BOOL_WORDS:
        raise ValueError(text)
    return _BOOL_WORDS[text]


def _construct_int(text: str) -> int:
    if not _INT_PATTERN.fullmatch(text):
        raise ValueError(text)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_float(text: str) -> float | str:
    """Build a float, keeping ``.inf``, ``.nan`` and overflowing numbers as text for JSON."""
    if _NON_FINITE_PATTERN.fullmatch(text):
        return text
    if not _FLOAT_PATTERN.fullmatch(text):
        raise ValueError(text)
    number = float(text)
    return number if math.isfinite(number) else text


_SCALAR_CONSTRUCTORS: dict[str, Callable[[str], JSONValue]] = {
    _STR_TAG: str,
    _NULL_TAG: _construct_null,
    _BOOL_TAG: _construct_bool,
    _INT_TAG: _construct_int,
    _FLOAT_TAG: _construct_float,
}


# --- checks and derived fields ---------------------------------------------------------


_UNSTORABLE_CHARACTER = re.compile(r"[\x00\ud800-\udfff]")


def _check_values(path: str, fm: _FrontMatter) -> None:
    """Reject values nested too deeply or containing characters the database cannot store.

    Escapes in YAML and JSON strings can produce NUL and lone surrogates. UTF-8 cannot
    encode a lone surrogate, and PostgreSQL text and jsonb cannot hold NUL.
    """
    for key, value in fm.values.items():
        if _nests_deeper(value, _MAX_NESTING_DEPTH - 1):
            _fail_field(path, fm, key, _depth_message())
        character = _find_unstorable(key) or _find_unstorable(value)
        if character is not None:
            _fail_field(
                path,
                fm,
                key,
                f"'{key}' contains the character U+{ord(character):04X}, which cannot be "
                "stored as text; remove the escape that produces it",
            )


def _nests_deeper(value: JSONValue, levels: int) -> bool:
    """Return whether the value nests more than ``levels`` levels, looking no deeper."""
    if levels < 1:
        return True
    if isinstance(value, dict):
        return any(_nests_deeper(item, levels - 1) for item in value.values())
    if isinstance(value, list):
        return any(_nests_deeper(item, levels - 1) for item in value)
    return False


def _find_unstorable(value: JSONValue) -> str | None:
    """Return the first NUL or lone surrogate in the value's strings, keys included."""
    if isinstance(value, str):
        match = _UNSTORABLE_CHARACTER.search(value)
        return match.group() if match else None
    children: list[JSONValue]
    if isinstance(value, dict):
        children = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        children = value
    else:
        return None
    for child in children:
        found = _find_unstorable(child)
        if found is not None:
            return found
    return None


def _derive_document(path: str, fm: _FrontMatter, site_timezone: tzinfo) -> ParsedDocument:
    return ParsedDocument(
        front_matter=fm.values,
        format=fm.format,
        body=fm.body,
        title=_text_field(path, fm, ("title",)),
        slug=_slug(path, fm),
        date=_datetime_field(path, fm, ("date",), site_timezone),
        publish_at=_datetime_field(path, fm, _PUBLISH_KEYS, site_timezone),
        expire_at=_datetime_field(path, fm, _EXPIRE_KEYS, site_timezone),
        draft=_is_draft(path, fm),
        tags=_term_list(path, fm, ("tags",)),
        categories=_term_list(path, fm, ("categories", "category")),
        description=_text_field(path, fm, ("description", "summary")),
    )


def _first_present(fm: _FrontMatter, keys: tuple[str, ...]) -> tuple[str, JSONValue]:
    """Return the first key with a non-null value, or the first key and None."""
    for key in keys:
        value = fm.values.get(key)
        if value is not None:
            return key, value
    return keys[0], None


def _fail_field(path: str, fm: _FrontMatter, key: str, message: str) -> NoReturn:
    raise FrontMatterError(path, fm.key_lines.get(key, 1), message)


def _scalar_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _text_field(path: str, fm: _FrontMatter, keys: tuple[str, ...]) -> str | None:
    key, value = _first_present(fm, keys)
    if value is None:
        return None
    if isinstance(value, list | dict):
        _fail_field(
            path, fm, key, f"'{key}' must be text, not a list or mapping; write it as text"
        )
    return _scalar_text(value)


def _slug(path: str, fm: _FrontMatter) -> str:
    """Return ``slug`` as written, else a slug made from the file or folder name."""
    written = _text_field(path, fm, ("slug",))
    if written is not None and written.strip():
        return written.strip()
    file = PurePosixPath(path)
    name = file.stem
    if name in ("index", "_index") and file.parent.name:
        name = file.parent.name
    return _slugify(name) or name


def _slugify(name: str) -> str:
    """Turn a name into lowercase letters and digits joined by hyphens, without accents.

    Letters outside ASCII that carry no accent, such as CJK characters, are kept.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    letters = "".join(char for char in decomposed if not unicodedata.combining(char))
    return re.sub(r"[\W_]+", "-", letters.lower()).strip("-")


def _datetime_field(
    path: str, fm: _FrontMatter, keys: tuple[str, ...], site_timezone: tzinfo
) -> datetime | None:
    key, value = _first_present(fm, keys)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        _fail_field(path, fm, key, f"invalid date {value!r} in '{key}'; use {_DATE_FORMS}")
    try:
        return _parse_datetime(value, site_timezone)
    except ValueError as err:
        _fail_field(path, fm, key, f"invalid date {value!r} in '{key}': {err}; use {_DATE_FORMS}")


def _parse_datetime(text: str, site_timezone: tzinfo) -> datetime:
    """Parse a front matter date or date and time into an aware datetime.

    Accepts ``YYYY-MM-DD``, optionally followed by ``T`` or spaces, ``HH:MM``, optional
    ``:SS`` and fraction, and an optional zone: ``Z``, ``±HH:MM``, ``±HHMM`` (Jekyll) or
    ``±HH``, with or without a space before it. Without a zone, the time is in
    ``site_timezone``, and a date alone is midnight there.

    Raises:
        ValueError: the text has none of these forms or names an impossible date or time.
    """
    match = _DATETIME_PATTERN.fullmatch(text.strip()) or _lenient_match(text.strip())
    if match is None:
        raise ValueError("not a recognized date format")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    microsecond = int((fraction or "0")[:6].ljust(6, "0"))
    return datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        microsecond,
        tzinfo=_parse_zone(zone, site_timezone),
    )


def _lenient_match(text: str) -> re.Match[str] | None:
    """Match a date and time followed by stray words and a zone, as Ruby's Time.parse reads.

    Jekyll builds pages dated like ``2023-01-29 18:30:22 2023 -0800``. Such a date is read
    from its leading date and time and its trailing zone, and the words between are ignored.
    """
    head = _DATETIME_PATTERN.match(text)
    if head is None or head.group(4) is None:
        return None
    rest = text[head.end() :]
    if not rest[:1].isspace():
        return None
    zone = _TRAILING_ZONE.search(rest)
    if zone is None or head.group(8) is not None:
        return head if not rest.strip() else None
    return _DATETIME_PATTERN.fullmatch(f"{text[: head.end()]} {zone.group(1)}")


def _parse_zone(zone: str | None, site_timezone: tzinfo) -> tzinfo:
    if zone is None:
        return site_timezone
    if zone in ("Z", "z"):
        return UTC
    digits = zone[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:] or 0)
    if minutes >= 60:
        raise ValueError(f"UTC offset {zone!r} has more than 59 minutes")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if zone[0] == "-" else offset)


def _flag(path: str, fm: _FrontMatter, key: str) -> bool | None:
    """Read a yes/no field: a boolean, or the words true, false, yes, no, on, off."""
    value = fm.values.get(key)
    if value is None or isinstance(value, bool):
        return value
    word = value.strip().lower() if isinstance(value, str) else None
    if word in _FLAG_WORDS:
        return _FLAG_WORDS[word]
    _fail_field(path, fm, key, f"invalid '{key}' value {value!r}; use true or false")


def _is_draft(path: str, fm: _FrontMatter) -> bool:
    draft = _flag(path, fm, "draft")
    published = _flag(path, fm, "published")
    return draft is True or published is False


def _term_list(path: str, fm: _FrontMatter, keys: tuple[str, ...]) -> list[str]:
    """Read tags or categories: a list, or one comma-separated string."""
    key, value = _first_present(fm, keys)
    if value is None:
        return []
    if isinstance(value, str):
        return [term.strip() for term in value.split(",") if term.strip()]
    if isinstance(value, list):
        terms = []
        for item in value:
            if isinstance(item, list | dict):
                _fail_field(
                    path,
                    fm,
                    key,
                    f"'{key}' must list text values, not lists or mappings; "
                    "write one term per item",
                )
            if item is not None:
                terms.append(_scalar_text(item))
        return terms
    if isinstance(value, dict):
        _fail_field(
            path,
            fm,
            key,
            f"'{key}' must be a list or a comma-separated string; write it as [a, b]",
        )
    return [_scalar_text(value)]
