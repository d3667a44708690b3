"""Shared by the policy-file tests: every settings dataclass, derived from the schema
module so a new section is covered without editing a list."""

from __future__ import annotations

import dataclasses

from resilient.config import _schema

SETTINGS_CLASSES: tuple[type, ...] = tuple(
    cls
    for name, cls in sorted(vars(_schema).items())
    if not name.startswith("_")
    and isinstance(cls, type)
    and dataclasses.is_dataclass(cls)
    and cls.__module__ == _schema.__name__
    and cls is not _schema.ConfigDocument
)
