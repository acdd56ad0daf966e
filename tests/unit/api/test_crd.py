"""The generated CRD: no drift from the checked-in file, structural, and carrying every rule."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from sbo_operator.api import crd as crd_module
from sbo_operator.api.base import MAX_REPLICAS
from sbo_operator.api.crd import CRD_FILE_NAME, build_crd, render_crd_reference, render_crd_yaml
from sbo_operator.api.v1alpha1 import (
    IMAGE_PATTERN,
    MAX_NAME_LENGTH,
    MAX_READ_REPLICAS,
    QUANTITY_PATTERN,
    RECOVERY_IMMUTABLE_MESSAGE,
    RECOVERY_SOURCE_IS_DESTINATION_MESSAGE,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


def root_schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def at(path: str) -> dict[str, Any]:
    """The schema node of a dotted field path, e.g. spec.postgres.storage.size; [] steps into items."""
    node = root_schema()
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def walk(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def rules(path: str) -> dict[str, str]:
    return {rule["rule"]: rule["message"] for rule in at(path).get("x-kubernetes-validations", [])}


# ---- drift ------------------------------------------------------------------------------------------


def test_checked_in_crd_matches_the_models() -> None:
    checked_in = (REPO / "crds" / CRD_FILE_NAME).read_text()
    assert checked_in == render_crd_yaml(), "crds/ is stale: run `make crds`"


def test_checked_in_reference_docs_match_the_models() -> None:
    checked_in = (REPO / "docs" / "crd-reference.md").read_text()
    assert checked_in == render_crd_reference(), (
        "docs/crd-reference.md is stale: "
        "run python -m sbo_operator.api.crd --output crds --docs docs/crd-reference.md"
    )


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    assert crd_module.main(["--output", str(tmp_path), "--check"]) == 1
    assert crd_module.main(["--output", str(tmp_path)]) == 0
    assert crd_module.main(["--output", str(tmp_path), "--check"]) == 0


def test_rendered_yaml_round_trips() -> None:
    assert yaml.safe_load(render_crd_yaml()) == build_crd()


# ---- shape ------------------------------------------------------------------------------------------


def test_names_scope_and_version() -> None:
    crd = build_crd()
    assert crd["metadata"]["name"] == "scalablebackends.sbo.dev"
    assert crd["spec"]["group"] == "sbo.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "ScalableBackend",
        "scalablebackends",
        ["sb"],
        ["all"],
    )
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)


def test_status_and_scale_subresources() -> None:
    subresources = build_crd()["spec"]["versions"][0]["subresources"]
    assert subresources["status"] == {}
    assert subresources["scale"] == {
        "specReplicasPath": ".spec.api.replicas",
        "statusReplicasPath": ".status.api.replicas",
        "labelSelectorPath": ".status.api.selector",
    }
    # The paths must exist in the schema.
    assert at("spec.api.replicas")["type"] == "integer"
    assert at("status.api.replicas")["type"] == "integer"
    assert at("status.api.selector")["type"] == "string"


def test_printer_columns() -> None:
    columns = build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [column["name"] for column in columns] == ["Ready", "API", "Postgres", "Age"]
    paths = {column["name"]: column["jsonPath"] for column in columns}
    assert paths["API"] == ".status.api.readySummary"
    assert at("status.api.readySummary")["type"] == "string"


# ---- structural -------------------------------------------------------------------------------------


def test_schema_is_structural() -> None:
    for path, node in walk(root_schema()):
        assert not {"$ref", "allOf", "oneOf"} & node.keys(), path
        assert "title" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert not node.get("x-kubernetes-preserve-unknown-fields"), path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "anyOf" not in node, path
            assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        assert not isinstance(node.get("exclusiveMinimum"), int | float) or isinstance(
            node.get("exclusiveMinimum"), bool
        ), path


def test_optional_fields_carry_no_null_default() -> None:
    # The models leave None defaults in their JSON schema; the generator drops them, once, for all.
    optional_fields = ["spec.worker", "spec.api.image", "spec.prometheus.url", "status.observedGeneration"]
    for path in optional_fields:
        assert "default" not in at(path), path
    for path, node in walk(root_schema()):
        assert "default" not in node or node["default"] is not None, path


def test_generator_drops_a_null_default_and_keeps_others() -> None:
    schema = {
        "type": "object",
        "properties": {
            "optional": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "default": None,
                "description": "o",
            },
            "counted": {"type": "integer", "default": 0, "description": "c"},
        },
    }
    properties = crd_module.to_structural_schema(schema)["properties"]
    assert properties["optional"] == {"description": "o", "type": "string"}
    assert properties["counted"]["default"] == 0


def test_every_field_has_a_description() -> None:
    for path, node in walk(root_schema()):
        for name, child in node.get("properties", {}).items():
            if f"{path}.{name}" == ".metadata":
                # The apiserver forbids anything on metadata but restrictions of name/generateName.
                assert set(child) == {"type", "properties"}
                continue
            assert child.get("description"), f"{path}.{name}"


def test_every_list_and_string_is_bounded_for_cel_cost_estimation() -> None:
    # Only spec is validated with CEL; status is written by the operator.
    for path, node in walk(at("spec"), "spec"):
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if node.get("type") == "string" and "enum" not in node and "format" not in node:
            assert "maxLength" in node, path


def test_defaults_reach_nested_objects() -> None:
    assert at("spec.api")["default"] == {}
    assert at("spec.redis")["default"] == {}
    assert at("spec.postgres")["default"] == {}
    assert at("spec.postgres.storage")["default"] == {"size": "10Gi"}
    assert at("spec.postgres.retainOnDelete")["default"] is True
    assert at("spec.postgres.version")["default"] == "16"
    assert at("spec.imagePullPolicy")["default"] == "IfNotPresent"


def test_env_is_a_list_map_keyed_by_name() -> None:
    env = at("spec.api.env")
    assert env["x-kubernetes-list-type"] == "map"
    assert env["x-kubernetes-list-map-keys"] == ["name"]
    assert "name" in env["items"]["required"]


def test_quantities_are_int_or_string_with_the_pattern() -> None:
    for path in ("spec.redis.maxMemory", "spec.postgres.storage.size", "spec.redis.persistence.size"):
        node = at(path)
        assert node["x-kubernetes-int-or-string"] is True, path
        assert node["pattern"] == QUANTITY_PATTERN, path
    limits = at("spec.api.resources.limits")["additionalProperties"]
    assert limits["x-kubernetes-int-or-string"] is True


# ---- every bad input has a rule ---------------------------------------------------------------------


def test_negative_replicas_are_rejected() -> None:
    assert at("spec.api.replicas")["minimum"] == 0
    assert at("spec.worker.replicas")["minimum"] == 0
    assert at("spec.postgres.readReplicas")["minimum"] == 0


def test_read_replicas_are_capped() -> None:
    assert at("spec.postgres.readReplicas")["maximum"] == MAX_READ_REPLICAS == 5


def test_images_may_not_contain_whitespace() -> None:
    for path in ("spec.image", "spec.api.image", "spec.worker.image"):
        assert at(path)["pattern"] == IMAGE_PATTERN, path
    for image in ("shop 1.0", "shop:1.0\n", "shop:\t1.0", " shop"):
        assert re.fullmatch(IMAGE_PATTERN, image) is None, image


def test_autoscaling_bounds_fit_the_replicas_they_set() -> None:
    # The autoscaler writes its decision into spec.<deployment>.replicas; a bound above that
    # field's maximum would make its scale patch fail forever.
    for deployment in ("api", "worker"):
        cap = at(f"spec.{deployment}.replicas")["maximum"]
        assert cap == MAX_REPLICAS
        for bound in ("minReplicas", "maxReplicas", "fallback.replicas"):
            assert at(f"spec.{deployment}.autoscaling.{bound}")["maximum"] == cap, (deployment, bound)


def test_status_defaults_to_an_unobserved_generation() -> None:
    # As Flux's CRDs do: kstatus reads a backend the operator has not looked at as InProgress.
    assert at("status")["default"] == {"observedGeneration": -1}
    assert at("status.observedGeneration")["minimum"] == -1


def test_postgres_version_is_an_enum() -> None:
    assert at("spec.postgres.version")["enum"] == ["15", "16", "17"]


def test_storage_transition_rules() -> None:
    for path in ("spec.postgres.storage", "spec.redis.persistence"):
        found = {rule["rule"]: rule for rule in at(path)["x-kubernetes-validations"]}
        grow = found["quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) >= 0"]
        assert grow["fieldPath"] == ".size"
        assert "size" in grow["message"]
        immutable = next(rule for text, rule in found.items() if "oldSelf.storageClassName" in text)
        assert immutable["fieldPath"] == ".storageClassName"
        assert "storageClassName" in immutable["message"]


def test_postgres_version_is_immutable() -> None:
    assert any("self.version == oldSelf.version" in rule for rule in rules("spec.postgres"))


def test_backup_and_recovery_rules_sit_on_postgres_which_holds_both() -> None:
    found = {rule["message"]: rule for rule in at("spec.postgres")["x-kubernetes-validations"]}
    immutable = found[RECOVERY_IMMUTABLE_MESSAGE]
    assert immutable["fieldPath"] == ".bootstrap"
    assert "oldSelf.bootstrap" in immutable["rule"]
    same_path = found[RECOVERY_SOURCE_IS_DESTINATION_MESSAGE]
    assert same_path["fieldPath"] == ".backup.destination"
    assert "self.backup.writeToRecoverySource" in same_path["rule"]


def test_backup_and_recovery_wire_names_and_defaults() -> None:
    backup = at("spec.postgres.backup")
    assert set(backup["required"]) == {"destination", "credentials"}
    assert {"endpointURL", "writeToRecoverySource", "archiveTimeout"} <= set(backup["properties"])
    assert at("spec.postgres.backup.schedule")["default"] == "0 3 * * *"
    assert at("spec.postgres.backup.archiveTimeout")["default"] == "30s"
    assert "default" not in at("spec.postgres.backup.retention")
    assert at("spec.postgres.backup.credentials.accessKeyIdKey")["default"] == "AWS_ACCESS_KEY_ID"
    source = at("spec.postgres.bootstrap.recovery.source")
    assert not {"schedule", "retention", "archiveTimeout", "writeToRecoverySource"} & set(
        source["properties"]
    )
    assert at("spec.postgres.bootstrap.recovery.target")["default"] == {}
    assert set(at("status.postgres.backup.lastSuccessfulBackup")["properties"]) == {
        "name",
        "startedAt",
        "completedAt",
        "beginLSN",
        "endLSN",
    }
    assert {"lastArchivedWAL", "lastFailedWAL"} <= set(at("status.postgres.backup")["properties"])


def test_name_length_rule_at_the_top_level() -> None:
    top = {rule["rule"]: rule["message"] for rule in root_schema()["x-kubernetes-validations"]}
    message = top[f"size(self.metadata.name) <= {MAX_NAME_LENGTH}"]
    assert "metadata.name" in message
    name = at("metadata.name")
    assert name["maxLength"] == MAX_NAME_LENGTH
    assert name["pattern"] == "^[a-z]([-a-z0-9]*[a-z0-9])?$"


def test_name_cap_keeps_every_child_label_within_63() -> None:
    name = "n" * MAX_NAME_LENGTH
    revision_hash = "9" * 10  # the StatefulSet controller-revision-hash suffix: a uint32, safe-encoded
    assert len(f"{name}-postgres-replica-{revision_hash}") == 63
    assert len(f"{name}-postgres-replica-{MAX_READ_REPLICAS - 1}") <= 63
    assert len(f"{name}-migrations-{'f' * 10}") <= 63


def test_env_rules() -> None:
    assert "!(has(self.value) && has(self.valueFrom))" in rules("spec.api.env.[]")
    assert any("secretKeyRef" in rule for rule in rules("spec.api.env.[].valueFrom"))


def test_reserved_postgres_names_rules() -> None:
    messages = rules("spec.postgres").values()
    assert any("user" in message for message in messages)
    assert any("database" in message for message in messages)


def test_autoscaling_rules_come_from_the_autoscaling_models() -> None:
    assert any("minReplicas" in message for message in rules("spec.api.autoscaling").values())
    assert any("minReplicas" in message for message in rules("spec.worker.autoscaling").values())


def test_unknown_fields_are_not_preserved() -> None:
    # With a structural schema and no preserve-unknown-fields, strict field validation rejects them.
    assert not any(node.get("x-kubernetes-preserve-unknown-fields") for _, node in walk(root_schema()))
