"""The JSON Schema of policy files, and the reference in docs/config.md generated from it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from _config_support import SETTINGS_CLASSES

from resilient.config import (
    ConfigDocument,
    json_schema,
)
from resilient.config._parse import read_source
from resilient.config._render import reference_markdown

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs" / "config.md"
EXAMPLES = sorted(
    p for p in (ROOT / "examples").iterdir() if p.suffix in (".yaml", ".toml", ".json")
)
CLASSES = SETTINGS_CLASSES


def test_every_field_is_in_the_schema_with_a_description():
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    defs = schema["$defs"]
    for cls in CLASSES:
        properties = defs[cls.__name__]["properties"]
        assert defs[cls.__name__]["additionalProperties"] is False
        for field in dataclasses.fields(cls):
            assert properties[field.name]["description"], (cls.__name__, field.name)
    top = {f.name for f in dataclasses.fields(ConfigDocument)} | {"$schema"}
    assert set(schema["properties"]) == top
    assert defs["PartialPolicySettings"].get("required") is None
    assert defs["PartialRateLimitSettings"].get("required") is None
    assert defs["RateLimitSettings"]["required"] == ["rate"]


def test_json_schema_returns_a_fresh_copy():
    schema = json_schema()
    schema["title"] = "changed"
    assert json_schema()["title"] == "resilient policy file"


def test_the_reference_in_the_docs_is_current():
    text = DOCS.read_text()
    found = re.search(r"<!-- reference:start -->\n(.*)<!-- reference:end -->", text, re.S)
    assert found is not None
    assert found.group(1).strip() == reference_markdown().strip(), (
        "docs/config.md is out of date: paste resilient.config._render.reference_markdown() "
        "between the reference markers"
    )


def test_the_docs_explain_every_warning():
    text = DOCS.read_text()
    codes = set(re.findall(r"\[([a-z-]+)\]", " ".join(_warning_codes())))
    for code in codes:
        assert f"`{code}`" in text, code


def _warning_codes() -> list[str]:
    source = (ROOT / "resilient" / "config" / "_lint.py").read_text()
    return [f"[{code}]" for code in re.findall(r'warn\(\s*"([a-z-]+)"', source)]


def test_the_warning_codes_are_found():
    assert len(_warning_codes()) >= 10


jsonschema = pytest.importorskip("jsonschema")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_validate_against_the_schema(path):
    validator = jsonschema.Draft202012Validator(json_schema())
    data = read_source(path, None).data
    assert list(validator.iter_errors(data)) == []


def test_the_schema_is_a_valid_schema_and_rejects_bad_documents():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = {
        "$schema": "x",
        "defaults": {"rate_limit": {"backend": "shared"}},
        "bases": {"b": {"retry": {"attempts": "${RETRIES}"}}},
        "policies": {
            "p": {
                "extends": "b",
                "timeout": "2s",
                "retry": 3,
                "circuit_breaker": {"window": "60s"},
                "rate_limit": "10/s",
                "bulkhead": False,
            }
        },
    }
    assert list(validator.iter_errors(good)) == []
    for bad in (
        {"polices": {}},
        {"policies": {"p": {"retry": {"atempts": 3}}}},
        {"policies": {"p": {"retry": {"attempts": 0}}}},
        {"policies": {"p": {"timeout": {"total": "2 fortnights"}}}},
        {"policies": {"p": {"rate_limit": {"burst": 2}}}},
        {"routes": {"httpx": [{"host": "x"}]}},
    ):
        assert list(validator.iter_errors(bad)), bad
