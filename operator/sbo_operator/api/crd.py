"""Generate the ScalableBackend CustomResourceDefinition (and its reference docs) from the models.

    python -m sbo_operator.api.crd --output crds [--docs docs/crd-reference.md] [--check]

Pydantic emits JSON Schema 2020-12; the apiserver wants a *structural* OpenAPI v3 schema. The
conversion here inlines ``$ref``s, turns ``anyOf [X, null]`` into X, drops ``default: null`` (the
models' optional fields: absent already means None), turns ``const`` into a one-value ``enum``
and numeric ``exclusiveMinimum`` into OpenAPI's boolean form, and drops ``title``,
``additionalProperties: false`` and ``propertyNames``. It then checks that every node has a type
(or is int-or-string) and every property a description, so ``kubectl explain`` is always useful.
CEL rules and ``x-kubernetes-*`` markers come verbatim from the models.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from sbo_operator.api.v1alpha1 import (
    GROUP,
    KIND,
    MAX_NAME_LENGTH,
    NAME_FORMAT_MESSAGE,
    NAME_MESSAGE,
    NAME_PATTERN,
    PLURAL,
    SHORT_NAME,
    SINGULAR,
    SWITCHOVER_TO_MESSAGE,
    SWITCHOVER_TO_RULE,
    VERSION,
    ScalableBackend,
    ScalableBackendSpec,
    ScalableBackendStatus,
)

__all__ = [
    "CRD_FILE_NAME",
    "SchemaError",
    "build_crd",
    "main",
    "render_crd_reference",
    "render_crd_yaml",
    "to_structural_schema",
]

CRD_FILE_NAME = f"{GROUP}_{PLURAL}.yaml"

# Keys the apiserver's JSONSchemaProps knows and that we pass through unchanged.
_PASSTHROUGH_KEYS = frozenset(
    {
        "type",
        "format",
        "description",
        "enum",
        "default",
        "pattern",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "uniqueItems",
        "multipleOf",
        "required",
        "nullable",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
        "x-kubernetes-embedded-resource",
    }
)
_DROPPED_KEYS = frozenset({"title", "$defs", "propertyNames", "examples"})
# The order keys are written in, so the YAML reads naturally; anything else follows, sorted.
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "x-kubernetes-int-or-string",
    "anyOf",
    "enum",
    "default",
    "pattern",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "maxProperties",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "items",
    "additionalProperties",
    "required",
    "properties",
    "x-kubernetes-validations",
)


class SchemaError(ValueError):
    """The models produce a schema the apiserver would not accept as structural."""


def to_structural_schema(json_schema: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a pydantic JSON schema (with ``$defs``) into a structural OpenAPI v3 schema."""
    definitions: Mapping[str, Any] = json_schema.get("$defs", {})
    structural = _convert(json_schema, definitions, path="")
    _check_structural(structural, path="")
    return structural


def _resolve(node: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    """Inline ``$ref``, single-element ``allOf`` and ``anyOf [X, null]``; siblings win over the target."""
    node = dict(node)
    while True:
        target: Mapping[str, Any] | None = None
        if "$ref" in node:
            reference = node.pop("$ref")
            prefix = "#/$defs/"
            if not reference.startswith(prefix):
                raise SchemaError(f"unsupported $ref {reference!r}")
            target = definitions[reference.removeprefix(prefix)]
        elif "allOf" in node and len(node["allOf"]) == 1:
            target = node.pop("allOf")[0]
        elif "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            alternatives = [option for option in node["anyOf"] if option != {"type": "null"}]
            if len(alternatives) != 1:
                raise SchemaError(f"cannot express anyOf {node['anyOf']!r} structurally")
            node.pop("anyOf")
            target = alternatives[0]
        if target is None:
            return node
        merged = dict(target)
        for key, value in node.items():
            if key == "x-kubernetes-validations" and key in merged:
                merged[key] = [*merged[key], *value]
            else:
                merged[key] = value
        node = merged


def _convert(raw: Mapping[str, Any], definitions: Mapping[str, Any], path: str) -> dict[str, Any]:
    node = _resolve(raw, definitions)
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "default" and value is None:
            continue  # An optional field's None: absent already means that, and null is not structural.
        if key == "const":
            result["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema 2020-12 has a number here; OpenAPI v3.0 (and the apiserver) a boolean.
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            result[bound] = value
            result[key] = True
        elif key == "properties":
            result["properties"] = {
                name: _convert(child, definitions, f"{path}.{name}") for name, child in value.items()
            }
        elif key == "items":
            result["items"] = _convert(value, definitions, f"{path}[]")
        elif key == "additionalProperties":
            if value is False:
                continue  # extra="forbid": unknown fields are pruned or rejected by the apiserver anyway.
            if value is True:
                raise SchemaError(f"{path or '<root>'}: additionalProperties: true is not structural")
            result["additionalProperties"] = _convert(value, definitions, f"{path}{{}}")
        elif key == "anyOf":
            result["anyOf"] = [{k: v for k, v in option.items() if k != "title"} for option in value]
        elif key == "x-kubernetes-validations":
            result[key] = [_ordered_rule(rule) for rule in value]
        elif key in _PASSTHROUGH_KEYS:
            result[key] = value
        else:
            raise SchemaError(f"{path or '<root>'}: unsupported schema keyword {key!r}")
    return _ordered(result)


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    known = [key for key in _KEY_ORDER if key in node]
    rest = sorted(key for key in node if key not in _KEY_ORDER)
    return {key: node[key] for key in [*known, *rest]}


def _ordered_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    order = ("rule", "message", "messageExpression", "fieldPath", "reason", "optionalOldSelf")
    return {
        key: rule[key]
        for key in sorted(rule, key=lambda key: (order.index(key) if key in order else 99, key))
    }


def _check_structural(node: Mapping[str, Any], path: str) -> None:
    where = path or "<root>"
    if "type" not in node and not node.get("x-kubernetes-int-or-string"):
        raise SchemaError(f"{where}: every schema node needs a type")
    for name, child in node.get("properties", {}).items():
        if not child.get("description"):
            raise SchemaError(f"{path}.{name}: every field needs a description")
        _check_structural(child, f"{path}.{name}")
    if "items" in node:
        _check_structural(node["items"], f"{path}[]")
    if "additionalProperties" in node:
        _check_structural(node["additionalProperties"], f"{path}{{}}")


def _model_schema(model: type[ScalableBackendSpec] | type[ScalableBackendStatus]) -> dict[str, Any]:
    return to_structural_schema(model.model_json_schema(by_alias=True, mode="validation"))


def _top_level_schema(
    name: str, model: type[ScalableBackendSpec] | type[ScalableBackendStatus]
) -> dict[str, Any]:
    """The schema of spec or status, with the description and default its field on the object gives."""
    field = ScalableBackend.model_fields[name]
    schema = _model_schema(model)
    schema["description"] = field.description
    if isinstance(field.json_schema_extra, dict) and "default" in field.json_schema_extra:
        schema["default"] = field.json_schema_extra["default"]
    return _ordered(schema)


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition for ScalableBackend, as a dict."""
    spec_schema = _top_level_schema("spec", ScalableBackendSpec)
    status_schema = _top_level_schema("status", ScalableBackendStatus)
    root_schema: dict[str, Any] = {
        "description": (ScalableBackend.__doc__ or "").strip(),
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion of this representation of the object: sbo.dev/v1alpha1.",
                "type": "string",
            },
            "kind": {"description": "Kind of the object: ScalableBackend.", "type": "string"},
            # No description: the apiserver allows nothing on metadata but its type and
            # restrictions on name and generateName.
            "metadata": {
                "type": "object",
                # The only metadata restrictions a CRD may make; the children are named after it.
                "properties": {
                    "name": {
                        "description": NAME_FORMAT_MESSAGE,
                        "type": "string",
                        "pattern": NAME_PATTERN,
                        "maxLength": MAX_NAME_LENGTH,
                    }
                },
            },
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": [
            {"rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}", "message": NAME_MESSAGE},
            {
                "rule": SWITCHOVER_TO_RULE,
                "message": SWITCHOVER_TO_MESSAGE,
                "fieldPath": ".spec.postgres.switchover.to",
            },
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "scalable-backend-operator"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": ["all"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.api.replicas",
                            "statusReplicasPath": ".status.api.replicas",
                            "labelSelectorPath": ".status.api.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "description": "The Ready condition.",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {
                            "name": "API",
                            "type": "string",
                            "description": "Ready out of desired api pods.",
                            "jsonPath": ".status.api.readySummary",
                        },
                        {
                            "name": "Postgres",
                            "type": "string",
                            "description": "The PostgresReady condition.",
                            "jsonPath": '.status.conditions[?(@.type=="PostgresReady")].status',
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": root_schema},
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """Block style, long lines kept whole, multi-line strings as literal blocks, no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def render_crd_yaml() -> str:
    """The CRD exactly as checked in under crds/."""
    header = (
        "# Generated by `make crds` (python -m sbo_operator.api.crd) from sbo_operator.api. Do not edit.\n"
    )
    body = yaml.dump(build_crd(), Dumper=_Dumper, sort_keys=False, width=1000, default_flow_style=False)
    return header + body


# ---- reference docs ---------------------------------------------------------------------------------


def _walk(
    node: Mapping[str, Any], path: str, required: bool
) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
    yield path, node, required
    required_children = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}", name in required_children)
    if node.get("items", {}).get("type") == "object":
        yield from _walk(node["items"], f"{path}[]", False)


def _type_of(node: Mapping[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "quantity"
    kind = str(node.get("type", "?"))
    if kind == "array":
        return f"[]{_type_of(node['items'])}"
    if kind == "object" and "additionalProperties" in node:
        return f"map[string]{_type_of(node['additionalProperties'])}"
    return kind


def _constraints(node: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{value}`" for value in node["enum"]))
    if "minimum" in node:
        parts.append(f"≥ {node['minimum']}" if not node.get("exclusiveMinimum") else f"> {node['minimum']}")
    if "maximum" in node:
        parts.append(f"≤ {node['maximum']}")
    if "maxItems" in node:
        parts.append(f"at most {node['maxItems']} items")
    for rule in node.get("x-kubernetes-validations", []):
        parts.append(f"rule: {rule['message']}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_crd_reference() -> str:
    """docs/crd-reference.md: every field with its type, default, constraints and description."""
    crd = build_crd()
    version = crd["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    lines = [
        "<!-- Generated by python -m sbo_operator.api.crd --docs docs/crd-reference.md. Do not edit. -->",
        f"# {KIND} ({GROUP}/{VERSION}) reference",
        "",
        (root["description"]),
        "",
        f"Short name `{SHORT_NAME}`; namespaced. Scale subresource: `.spec.api.replicas`. "
        f"`metadata.name`: at most {MAX_NAME_LENGTH} characters, a DNS-1035 label.",
        "",
    ]
    for section in ("spec", "status"):
        lines += [
            f"## {section}",
            "",
            "| Field | Type | Required | Default | Constraints | Description |",
            "|---|---|---|---|---|---|",
        ]
        for path, node, required in _walk(root["properties"][section], section, True):
            if path == section:
                continue
            default = (
                f"`{yaml.safe_dump(node['default'], default_flow_style=True).strip()}`"
                if "default" in node
                else ""
            )
            default = default.replace("\n...", "").replace(" ...", "")
            lines.append(
                f"| `{path}` | {_type_of(node)} | {'yes' if required else ''} | {_cell(default)} "
                f"| {_cell(_constraints(node))} | {_cell(str(node.get('description', '')))} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, required=True, help="directory to write the CRD into")
    parser.add_argument("--docs", type=Path, help="also write the CRD reference markdown to this file")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file differs")
    options = parser.parse_args(argv)
    outputs = {options.output / CRD_FILE_NAME: render_crd_yaml()}
    if options.docs is not None:
        outputs[options.docs] = render_crd_reference()
    stale = [path for path, text in outputs.items() if not path.exists() or path.read_text() != text]
    if options.check:
        for path in stale:
            print(f"{path} is out of date; run make crds", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
