"""The chart's RBAC is derived from what the operator touches, checked in, and has no wildcards."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from devkit.paths import REPO
from sbo_operator import kube, rbac
from sbo_operator.desired import desired_state
from sbo_operator.runtime import CHILD_RESOURCES
from sbo_operator.snapshot import Snapshot
from tests.unit.factories import all_manifests, load_example
from tests.unit.shipping.support import by_kind, helm_template, rbac_rules, verbs_for

pytestmark = pytest.mark.unit

SCENARIOS = {
    "cluster-wide": (),
    "cluster-wide with peering": ("replicaCount=2",),
    "exact namespaces": ("watchNamespaces={shop,billing}",),
    "exact namespaces with peering": ("watchNamespaces={shop}", "peering.enabled=true"),
    "glob pattern": ("watchNamespaces={team-*}",),
}


def test_the_checked_in_rules_file_is_what_the_code_renders() -> None:
    assert (REPO / rbac.RULES_FILE).read_text() == rbac.render(), "run `make rbac`"
    assert rbac.main(["--check", "--output", str(REPO / rbac.RULES_FILE)]) == 0


def test_the_check_mode_fails_on_drift(tmp_path: Any) -> None:
    stale = tmp_path / "rules.yaml"
    stale.write_text(rbac.render().replace("watch", "get"))
    assert rbac.main(["--check", "--output", str(stale)]) == 1


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_rule_uses_a_wildcard_or_escalation_verbs(scenario: str) -> None:
    rules = rbac_rules(helm_template(*SCENARIOS[scenario]))
    assert rules
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
            assert not any("*" in item for item in rule[field]), rule
        assert not {"escalate", "bind", "impersonate", "deletecollection", "update"} & set(rule["verbs"]), (
            rule
        )
        assert "rbac.authorization.k8s.io" not in rule["apiGroups"], rule
        assert "nonResourceURLs" not in rule, rule


def test_secrets_are_create_get_list_watch_only() -> None:
    """kube.Kube.create makes generated Secrets; nothing updates, patches or deletes one."""
    rules = rbac_rules(helm_template())
    assert verbs_for(rules, "", "secrets") == {"create", "get", "list", "watch"}


def test_every_child_kind_is_watched_read_applied_and_deleted() -> None:
    rules = rbac_rules(helm_template())
    for resource in CHILD_RESOURCES:
        expected = {"get", "list", "watch", "create"}
        if resource.kind not in rbac.CREATE_ONLY_KINDS:
            expected |= {"patch", "delete"}
        assert verbs_for(rules, resource.group, resource.plural) == expected, resource.kind


def test_scalablebackends_are_watched_and_only_their_status_is_written() -> None:
    rules = rbac_rules(helm_template())
    # patch: the autoscaler writes spec.<component>.replicas (kube.Kube.patch_spec).
    assert verbs_for(rules, "sbo.dev", "scalablebackends") == {"list", "watch", "patch"}
    assert verbs_for(rules, "sbo.dev", "scalablebackends/status") == {"patch"}
    assert verbs_for(rules, "", "events") == {"create"}


def test_every_kind_the_builders_make_is_a_child_resource() -> None:
    """A builder that emits a kind outside CHILD_RESOURCES would have no watch and no RBAC."""
    kinds = {(m["apiVersion"], m["kind"]) for m in all_manifests(load_example("full.yaml"))}
    known = {(f"{r.group}/{r.version}" if r.group else r.version, r.kind) for r in CHILD_RESOURCES}
    assert kinds <= known, kinds - known


def test_secrets_are_never_applied_nor_deleted() -> None:
    """What CREATE_ONLY_KINDS claims, checked against desired.py."""
    backend = load_example("full.yaml")
    stray_secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-old"}}
    snapshot = Snapshot(backend={}, children={("Secret", "shop-old"): stray_secret})
    desired = desired_state(backend, snapshot)
    applied = [m["kind"] for m in [*desired.foundation, *desired.workloads]]
    assert "Secret" not in applied
    assert all(kind != "Secret" for _, kind, _ in desired.obsolete)
    assert desired.secrets_to_generate, "the Secrets are generated (created) instead"


# Every public method of kube.Kube, and the verbs operator/sbo_operator/rbac.py grants for it.
KUBE_METHODS = {
    "apply": {"create", "patch"},
    "create": {"create"},
    "get": {"get"},
    "list": {"list"},
    "list_page": {"list"},  # the child informers (informer.py)
    "watch": {"watch"},  # the child informers
    "delete": {"delete"},
    "patch_status": {"patch"},
    "patch_spec": {"patch"},
    "label_pod": {"patch"},  # the PostgreSQL role label
    "annotate_pod": {"patch"},  # a scheduled base backup, asked of the primary
    "delete_pod": {"delete"},  # fencing a failed primary
    "close": set(),
}


def test_kube_writes_only_through_methods_rbac_knows() -> None:
    """A new method in kube.py must come with a look at operator/sbo_operator/rbac.py (and this table)."""
    methods = inspect.getmembers(kube.Kube, inspect.isfunction)
    public = {name for name, _ in methods if not name.startswith("_")}
    assert public <= set(KUBE_METHODS), public - set(KUBE_METHODS)


def test_exact_namespaces_get_roles_and_nothing_cluster_wide() -> None:
    objects = helm_template("watchNamespaces={shop,billing}", "replicaCount=2")
    assert not by_kind(objects, "ClusterRole")
    assert not by_kind(objects, "ClusterRoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in by_kind(objects, "Role")) == ["billing", "shop"]
    for binding in by_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "sbo-scalable-backend-operator", "namespace": "sbo-system"}
        ]
    assert verbs_for(rbac_rules(objects), "kopf.dev", "kopfpeerings") == {"list", "watch", "patch"}
    assert verbs_for(rbac_rules(objects), "", "namespaces") == set()


def test_cluster_wide_gets_a_cluster_role_and_no_namespace_access() -> None:
    objects = helm_template()
    assert [o["kind"] for o in objects if "Role" in o["kind"]] == ["ClusterRole", "ClusterRoleBinding"]
    assert verbs_for(rbac_rules(objects), "", "namespaces") == set()
    assert verbs_for(rbac_rules(objects), "kopf.dev", "clusterkopfpeerings") == set()
    peering = helm_template("replicaCount=2")
    assert verbs_for(rbac_rules(peering), "kopf.dev", "clusterkopfpeerings") == {"list", "watch", "patch"}


def test_a_glob_pattern_adds_only_kopfs_scanning_list_and_watch() -> None:
    rules = rbac_rules(helm_template("watchNamespaces={team-*}"))
    assert verbs_for(rules, "", "namespaces") == {"list", "watch"}
    assert verbs_for(rules, "apiextensions.k8s.io", "customresourcedefinitions") == {"list", "watch"}
    for exact in (helm_template(), helm_template("watchNamespaces={shop}")):
        assert verbs_for(rbac_rules(exact), "apiextensions.k8s.io", "customresourcedefinitions") == set()
