"""How the loader words its errors (a ``ConfigError`` subclass with a file and line)."""

from __future__ import annotations

from typing import Any

from .._errors import _MISSING, ConfigError

__all__ = ["FileConfigError", "clip", "problem"]


def clip(value: Any, limit: int = 80) -> str:
    """A ``repr`` short enough for a one-line error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FileConfigError(ConfigError):
    """A :class:`ConfigError` about a place in a policy file.

    The message reads ``file:line: dotted.path: problem; expected X, got Y``; the
    *problem* part is left out when the value is simply not what was expected.
    Long values are shortened.
    """

    problem: str

    def __init__(
        self,
        path: str,
        value: Any = _MISSING,
        expected: str = "",
        *,
        problem: str = "",
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.problem = problem
        super().__init__(path, value, expected, file=file, line=line)

    def _describe(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        elif self.line is not None:
            where = f"line {self.line}: "
        parts = [self.problem] if self.problem else []
        if self.expected:
            parts.append(f"expected {self.expected}")
        text = "; ".join(parts) or "invalid"
        if self._has_value:
            text += f", got {clip(self.value)}"
        head = f"{self.path}: " if self.path else ""
        line = f"{where}{head}{text}"
        # One line per error, whatever the keys hold (``resilient check`` relies on it).
        return line.replace("\r", "\\r").replace("\n", "\\n")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (
                type(self),
                self.path,
                (self.value,) if self._has_value else (),
                self.expected,
                self.problem,
                self.file,
                self.line,
            ),
        )


def _rebuild(
    cls: type[FileConfigError],
    path: str,
    value: tuple[Any, ...],
    expected: str,
    problem: str,
    file: str | None,
    line: int | None,
) -> FileConfigError:
    if value:
        return cls(path, value[0], expected, problem=problem, file=file, line=line)
    return cls(path, expected=expected, problem=problem, file=file, line=line)


def problem(
    path: str,
    text: str,
    *,
    value: Any = _MISSING,
    expected: str = "",
    file: str | None = None,
    line: int | None = None,
) -> FileConfigError:
    """An error stated in words (``unknown key``, ``invalid YAML: ...``)."""
    return FileConfigError(path, value, expected, problem=text, file=file, line=line)
