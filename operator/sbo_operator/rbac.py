"""The operator's RBAC, derived from what it touches; `python -m sbo_operator.rbac` renders it.

Every rule comes from one place in the code:

* handlers.py keeps a Kopf index of the ScalableBackends, and informer.py lists (in pages) and
  watches every child kind: list, watch.
* kube.Kube.apply is server-side apply, which creates an absent object: create, patch.
* kube.Kube.get reads a child back after an apply conflict: get.
* kube.Kube.delete removes obsolete children: delete.
* kube.Kube.create makes the generated Secrets, which are never applied, updated,
  patched or deleted (desired.py keeps Secrets out of `obsolete`): create only.
* kube.Kube.patch_status merge-patches scalablebackends/status: patch.
* kube.Kube.patch_spec: the autoscaler merge-patches spec.<component>.replicas of a
  ScalableBackend, so that the one reconcile path applies them: patch.
* storage.py / reconcile: growing storage lists a StatefulSet's PersistentVolumeClaims
  (kube.Kube.list) and merge-patches their size (kube.Kube.patch_spec): list, patch.
* reconcile posts Events through kopf.event: create.
* The PostgreSQL pods (runtime.POSTGRES_PODS): informer.py lists and watches them, the
  election's executor labels them with their role (kube.Kube.patch_spec) and deletes a failed
  primary's pod with a uid precondition (kube.Kube.delete): list, watch, patch, delete.
* Kopf peering (SBO_PEERING) watches and patches its KopfPeering objects.
* Kopf's scanning lists and watches namespaces (to match glob patterns) and CRDs (to notice
  new resources). With exact namespaces or cluster-wide it is not needed, and without the
  permission Kopf falls back; with a glob pattern it is granted.

The chart reads the rendered file (charts/scalable-backend-operator/files/rbac-rules.yaml);
tests fail when it drifts from this module. No rule uses a wildcard.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from sbo_operator.api.v1alpha1 import GROUP, PLURAL
from sbo_operator.runtime import CHILD_RESOURCES, POSTGRES_PODS, ChildResource

WATCH = ("list", "watch")
APPLY = ("create", "patch")
READ_BACK = ("get",)
DELETE = ("delete",)
CREATE_ONLY = ("create",)

# Kinds the operator only ever creates (kube.Kube.create), never applies or deletes.
CREATE_ONLY_KINDS = frozenset({"Secret"})

KOPF_GROUP = "kopf.dev"
RULES_FILE = Path("charts/scalable-backend-operator/files/rbac-rules.yaml")
VERB_ORDER = ("get", "list", "watch", "create", "update", "patch", "delete")


@dataclasses.dataclass(frozen=True)
class PolicyRule:
    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "apiGroups": [self.api_group],
            "resources": list(self.resources),
            "verbs": sorted(set(self.verbs), key=VERB_ORDER.index),
        }


def child_verbs(resource: ChildResource) -> tuple[str, ...]:
    if resource.kind in CREATE_ONLY_KINDS:
        return (*READ_BACK, *WATCH, *CREATE_ONLY)
    return (*READ_BACK, *WATCH, *APPLY, *DELETE)


def _grouped(rules: Iterable[PolicyRule]) -> list[PolicyRule]:
    """One rule per (group, verbs), resources sorted: short and stable."""
    merged: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for rule in rules:
        verbs = tuple(sorted(set(rule.verbs), key=VERB_ORDER.index))
        merged.setdefault((rule.api_group, verbs), set()).update(rule.resources)
    return [
        PolicyRule(group, tuple(sorted(resources)), verbs)
        for (group, verbs), resources in sorted(merged.items())
    ]


def operator_rules() -> list[PolicyRule]:
    """What the operator needs in every namespace it serves."""
    rules = [
        PolicyRule(GROUP, (PLURAL,), (*WATCH, "patch")),
        PolicyRule(GROUP, (f"{PLURAL}/status",), ("patch",)),
        PolicyRule("", ("events",), ("create",)),
        PolicyRule("", ("persistentvolumeclaims",), ("list", "patch")),
        PolicyRule(POSTGRES_PODS.group, (POSTGRES_PODS.plural,), (*WATCH, "patch", *DELETE)),
    ]
    rules += [PolicyRule(r.group, (r.plural,), child_verbs(r)) for r in CHILD_RESOURCES]
    return _grouped(rules)


def peering_rules(*, clusterwide: bool) -> list[PolicyRule]:
    """Kopf's peering: watch the peering object and patch it to keep alive."""
    plural = "clusterkopfpeerings" if clusterwide else "kopfpeerings"
    return [PolicyRule(KOPF_GROUP, (plural,), ("list", "watch", "patch"))]


def kopf_scanning_rules() -> list[PolicyRule]:
    """Kopf matches glob patterns (e.g. SBO_NAMESPACES=team-*) against namespaces as they come
    and go, and watches CRDs while it scans."""
    return [
        PolicyRule("", ("namespaces",), WATCH),
        PolicyRule("apiextensions.k8s.io", ("customresourcedefinitions",), WATCH),
    ]


def render() -> str:
    document = {
        "operator": [rule.as_dict() for rule in operator_rules()],
        "peeringNamespaced": [rule.as_dict() for rule in peering_rules(clusterwide=False)],
        "peeringClusterwide": [rule.as_dict() for rule in peering_rules(clusterwide=True)],
        "kopfScanning": [rule.as_dict() for rule in kopf_scanning_rules()],
    }
    header = (
        "# Generated by `python -m sbo_operator.rbac` (operator/sbo_operator/rbac.py); do not edit.\n"
        "# operator: in every watched namespace (a Role each, or one ClusterRole).\n"
        "# peeringNamespaced / peeringClusterwide: with Kopf peering.\n"
        "# kopfScanning: when a watched namespace is a glob pattern.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sbo_operator.rbac", description="Render the operator's RBAC rules for the chart."
    )
    parser.add_argument("--output", type=Path, default=RULES_FILE, help="rules file (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="fail if the file differs from the code")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            sys.stderr.write(f"{args.output} is out of date: run `make rbac`\n")
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
