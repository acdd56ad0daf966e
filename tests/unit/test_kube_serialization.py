"""The apply patch the operator sends is read back by a YAML parser as exactly the manifest."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from sbo_operator.kube import apply_patch_body

pytestmark = pytest.mark.unit

# Every kind of value the CRD accepts for an env var, and a few the YAML spec treats specially.
VALUES = {
    "empty": "",
    "emoji": "\U0001f680",
    "astral_mix": "a\U0001d11eb\U00010348c\U0010fffd",
    "bmp": "Grüße, 東京, \u20ac, \ufffd",
    "newline": "one\ntwo\r\n\tthree",
    "yaml_line_breaks": "nel\x85 ls\u2028 ps\u2029",
    "controls": "del\x7f c1\x9f nul\x00 bell\x07",
    "bom": "\ufeffbom",
    "quotes": "\"'\\ \\U0001f680 literally",
    "yes": "yes",
    "no": "no",
    "on": "on",
    "hex": "0x10",
    "octal": "0o17",
    "exp": "1e3",
    "null": "null",
    "tilde": "~",
    "true": "True",
    "inf": ".inf",
    "date": "2001-12-14",
    "colon": "key: value",
    "dash": "- item",
    "big": "x" * 32 * 1024,
}


def manifest(values: dict[str, str]) -> dict[str, Any]:
    env = [{"name": name.upper(), "value": value} for name, value in values.items()]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop-api", "namespace": "demo", "annotations": {"\u00e9t\u00e9": "\U0001f680"}},
        "spec": {
            "replicas": 2,
            "paused": False,
            "template": {"spec": {"containers": [{"name": "api", "env": env}]}},
        },
    }


def test_every_value_survives_a_yaml_parser_unchanged() -> None:
    """Failed before for astral characters: json.dumps() sent surrogate pairs, which YAML rejects."""
    original = manifest(VALUES)
    body = apply_patch_body(original)
    assert body.isascii(), "no raw character a YAML reader could refuse or fold"
    assert body.isprintable()
    assert yaml.safe_load(body) == original


@pytest.mark.parametrize(("name", "value"), sorted(VALUES.items()))
def test_each_value_alone(name: str, value: str) -> None:
    original = manifest({name: value})
    assert yaml.safe_load(apply_patch_body(original)) == original


def test_without_astral_characters_the_body_is_also_json() -> None:
    original = manifest({name: value for name, value in VALUES.items() if "astral" not in name})
    original["metadata"].pop("annotations")
    original["spec"]["template"]["spec"]["containers"][0]["env"].pop(1)  # the emoji
    assert json.loads(apply_patch_body(original)) == original


def test_numbers_and_booleans_keep_their_types() -> None:
    body = yaml.safe_load(apply_patch_body({"a": 1, "b": 2.5, "c": True, "d": None, "e": "1"}))
    assert body == {"a": 1, "b": 2.5, "c": True, "d": None, "e": "1"}
    assert [type(v) for v in body.values()] == [int, float, bool, type(None), str]
