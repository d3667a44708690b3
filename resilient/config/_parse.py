"""Reading a policy file into plain data, with the line of every key.

YAML is composed into nodes (which carry their line) before it is constructed,
so every key's line is exact; it is read with YAML 1.2 booleans (only
``true``/``false``), so a key such as ``on`` stays a string. TOML and JSON are
parsed by the standard library, which reports no positions; their lines are
found by a light scan of the text (table headers and ``key =`` lines for TOML,
a tokenizer for JSON), which is exact for the usual layouts and otherwise
points at the nearest enclosing key.

``${NAME}`` and ``${NAME:-default}`` in string values are replaced from the
environment (``$${`` writes a literal ``${``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from .._errors import ConfigError
from ._errors import FileConfigError, problem

__all__ = ["Document", "Format", "Lines", "interpolate", "parse_text", "read_source"]

Format: TypeAlias = Literal["yaml", "toml", "json"]
Key: TypeAlias = tuple[str, ...]

_SUFFIXES: dict[str, Format] = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}
_MAX_NODES = 200_000


@dataclass(slots=True)
class Lines:
    """The line of each dotted key path of a document (list indices as strings)."""

    of: dict[Key, int] = field(default_factory=dict)

    def find(self, path: Key) -> int | None:
        """The line of *path*, or of its nearest ancestor that has one."""
        while path:
            line = self.of.get(path)
            if line is not None:
                return line
            path = path[:-1]
        return self.of.get(())


@dataclass(slots=True)
class Document:
    """A parsed source: its data, the lines of its keys, and where it came from."""

    data: Any
    lines: Lines
    file: str | None
    """The name errors show (the path as given), or ``None`` for text."""
    path: Path | None
    """The file to read again on reload, or ``None``."""
    format: Format
    text: str | None = None


def read_source(source: str | os.PathLike[str], format: str | None) -> Document:
    """Read *source*, a file path or the text of a document."""
    fmt = _check_format(format)
    if isinstance(source, os.PathLike) or _looks_like_path(source):
        path = Path(source)
        name = os.fspath(source)
        try:
            raw = path.read_bytes()
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
            reason = getattr(exc, "strerror", None) or str(exc)
            raise problem("", f"cannot read the file ({reason})", file=name) from None
        if fmt is None:
            fmt = _SUFFIXES.get(path.suffix.lower())
            if fmt is None:
                raise problem(
                    "",
                    "cannot tell the format from the file name; expected a name ending in "
                    ".yaml, .yml, .toml or .json, or format='yaml', 'toml' or 'json'",
                    file=name,
                )
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise problem("", f"the file is not UTF-8 ({exc.reason})", file=name) from None
        doc = parse_text(text, fmt, name)
        doc.path = path
        return doc
    text = str(source)
    return parse_text(text, fmt or sniff_format(text), None)


def _check_format(format: str | None) -> Format | None:
    if format is None:
        return None
    lowered = format.lower() if isinstance(format, str) else format
    if lowered == "yml":
        return "yaml"
    if lowered not in ("yaml", "toml", "json"):
        raise ConfigError("format", format, "'yaml', 'toml', 'json' or None (from the file name)")
    return lowered  # type: ignore[return-value]


_PATH_LIKE = re.compile(r"^[^\s:={}\[\]\x00-\x1f]+$")


def _looks_like_path(source: str) -> bool:
    """A ``str`` names a file unless it looks like a document: one with a newline, or a
    line that is not a single word (``policies: {}``)."""
    if "\n" in source or not source.strip():
        return False
    return (
        Path(source).suffix.lower() in _SUFFIXES
        or os.path.exists(source)
        or bool(_PATH_LIKE.match(source))
    )


def sniff_format(text: str) -> Format:
    """Guess the format of a document given as text (``format=`` is better)."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[{")) or (stripped.startswith("[") and stripped.endswith("]")):
        try:
            json.loads(text)
        except ValueError:
            pass
        else:
            return "json"
    if re.search(r"^\s*\[[^\]\n]+\]\s*(#.*)?$", text, re.MULTILINE) or re.search(
        r"^\s*[\w\"'.-]+\s*=", text, re.MULTILINE
    ):
        return "toml"
    return "yaml"


def parse_text(text: str, format: Format, file: str | None) -> Document:
    """Parse *text* as *format*; syntax errors become ``ConfigError`` with the line."""
    if format == "yaml":
        data, lines = _parse_yaml(text, file)
    elif format == "toml":
        data, lines = _parse_toml(text, file)
    else:
        data, lines = _parse_json(text, file)
    return Document(data, lines, file, None, format, text)


# -- YAML ------------------------------------------------------------------------------------


def _yaml_loader() -> Any:
    try:
        import yaml
    except ImportError:
        raise problem(
            "",
            "reading YAML needs PyYAML: pip install 'resilient-middleware[yaml]' "
            "(or use a TOML or JSON file)",
        ) from None
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        """SafeLoader with YAML 1.2 booleans: ``on``, ``yes``, ``off`` stay strings."""

    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool",
        re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"),
    )
    return yaml, Loader


def _parse_yaml(text: str, file: str | None) -> tuple[Any, Lines]:
    yaml, loader_class = _yaml_loader()
    lines = Lines()
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines
        errors: list[ConfigError] = []
        _index_yaml(yaml, node, (), lines, errors, set(), [0], file)
        if errors:
            raise ConfigError.combine(errors)
        return loader.construct_document(node), lines
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        detail = (getattr(exc, "problem", None) or str(exc)).splitlines()[0]
        raise problem("", f"invalid YAML: {detail}", file=file, line=line) from None
    except RecursionError:
        raise problem("", "invalid YAML: nested too deeply", file=file) from None
    finally:
        loader.dispose()


def _index_yaml(
    yaml: Any,
    node: Any,
    path: Key,
    lines: Lines,
    errors: list[ConfigError],
    active: set[int],
    count: list[int],
    file: str | None,
) -> None:
    count[0] += 1
    if count[0] > _MAX_NODES:
        raise problem("", f"the document is too large (over {_MAX_NODES} nodes)", file=file)
    if id(node) in active:
        raise problem(
            ".".join(path),
            "a YAML alias refers to itself",
            file=file,
            line=node.start_mark.line + 1,
        )
    if isinstance(node, yaml.MappingNode):
        active.add(id(node))
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _index_yaml(yaml, value_node, path, lines, errors, active, count, file)
                continue
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if key in seen:
                errors.append(
                    problem(
                        ".".join(child),
                        "duplicate key (it is already set above)",
                        file=file,
                        line=line,
                    )
                )
            seen.add(key)
            lines.of.setdefault(child, line)
            _index_yaml(yaml, value_node, child, lines, errors, active, count, file)
        active.discard(id(node))
    elif isinstance(node, yaml.SequenceNode):
        active.add(id(node))
        for index, item in enumerate(node.value):
            child = (*path, str(index))
            lines.of.setdefault(child, item.start_mark.line + 1)
            _index_yaml(yaml, item, child, lines, errors, active, count, file)
        active.discard(id(node))


# -- TOML ------------------------------------------------------------------------------------

_TOML_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
_TOML_BARE = r"(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
_TOML_KEY = re.compile(rf"^\s*({_TOML_BARE}(?:\s*\.\s*{_TOML_BARE})*)\s*=")
_TOML_PART = re.compile(r"\s*(?:([A-Za-z0-9_-]+)|\"([^\"]*)\"|'([^']*)')\s*")


def _toml_key(text: str) -> Key:
    return tuple(
        next(g for g in m.groups() if g is not None) for m in _TOML_PART.finditer(text) if m.group()
    )


def _parse_toml(text: str, file: str | None) -> tuple[Any, Lines]:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(found.group(1)) if found else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
        raise problem("", f"invalid TOML: {message}", file=file, line=line) from None
    return data, _index_toml(text)


def _index_toml(text: str) -> Lines:
    lines = Lines()
    table: Key = ()
    arrays: dict[Key, int] = {}
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline is not None:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _TOML_HEADER.match(line)
        if header is not None:
            key = _toml_key(header.group(2))
            table = _with_array_indices(key, arrays)
            if header.group(1) == "[[":
                index = arrays.get(key, -1) + 1
                arrays[key] = index
                lines.of.setdefault(table, number)
                table = (*table, str(index))
            lines.of.setdefault(table, number)
            continue
        found = _TOML_KEY.match(line)
        if found is not None:
            lines.of.setdefault((*table, *_toml_key(found.group(1))), number)
            rest = line[found.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
    return lines


def _with_array_indices(key: Key, arrays: dict[Key, int]) -> Key:
    # [routes.httpx.x] after [[routes.httpx]] belongs to the array's last element.
    out: list[str] = []
    for i, part in enumerate(key):
        out.append(part)
        index = arrays.get(key[: i + 1])
        if index is not None and i + 1 < len(key):
            out.append(str(index))
    return tuple(out)


# -- JSON ------------------------------------------------------------------------------------


def _parse_json(text: str, file: str | None) -> tuple[Any, Lines]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise problem("", f"invalid JSON: {exc.msg}", file=file, line=exc.lineno) from None
    except RecursionError:
        raise problem("", "invalid JSON: nested too deeply", file=file) from None
    return data, _index_json(text)


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|\n')


def _index_json(text: str) -> Lines:
    """Record the line of every key with a small tokenizer over a valid JSON text."""
    lines = Lines()
    line = 1
    stack: list[list[Any]] = []  # per container: [kind, path, current key or index]
    pending: str | None = None
    for token in _JSON_TOKEN.finditer(text):
        value = token.group()
        if value == "\n":
            line += 1
        elif value.startswith('"'):
            line += value.count("\n")
            if stack and stack[-1][0] == "{" and stack[-1][2] is None:
                pending = json.loads(value)
        elif value == ":":
            if pending is not None:
                top = stack[-1]
                top[2] = pending
                lines.of.setdefault((*top[1], pending), line)
                pending = None
        elif value in "{[":
            path: Key = ()
            if stack:
                top = stack[-1]
                path = (*top[1], str(top[2]))
                if top[0] == "[":
                    lines.of.setdefault(path, line)
            stack.append([value, path, None if value == "{" else 0])
        elif value in "}]":
            if stack:
                stack.pop()
        elif value == "," and stack:
            top = stack[-1]
            top[2] = None if top[0] == "{" else top[2] + 1
    return lines


# -- ${ENV} interpolation --------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
_ENV_EXPECTED = "${NAME} or ${NAME:-default}, with NAME made of letters, digits and _"


def interpolate(
    data: Any, env: Mapping[str, str], lines: Lines, file: str | None
) -> tuple[Any, list[ConfigError]]:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string value of *data*."""
    errors: list[ConfigError] = []

    def substitute(text: str, path: Key) -> str:
        def one(match: re.Match[str]) -> str:
            whole = match.group()
            if whole == "$${":
                return "${"
            name = match.group(1)
            if name is None:
                errors.append(
                    FileConfigError(
                        _dotted(path), text, _ENV_EXPECTED, file=file, line=lines.find(path)
                    )
                )
                return whole
            value = env.get(name)
            default = match.group(2)
            if value is None or (value == "" and default is not None):
                if default is None:
                    errors.append(
                        problem(
                            _dotted(path),
                            f"the environment variable {name} is not set; expected it set, "
                            f"or a default as in ${{{name}:-default}}",
                            file=file,
                            line=lines.find(path),
                        )
                    )
                    return whole
                return default
            return value

        return _VARIABLE.sub(one, text) if "$" in text else text

    def walk(value: Any, path: Key) -> Any:
        if isinstance(value, str):
            return substitute(value, path)
        if isinstance(value, dict):
            return {k: walk(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, str(i))) for i, v in enumerate(value)]
        return value

    return walk(data, ()), errors


def _dotted(path: Key) -> str:
    return ".".join(path)
