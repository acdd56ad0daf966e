"""The thin I/O layer: the only module that writes to the Kubernetes API.

Children are applied with server-side apply under one field manager. Secrets
are created, never applied, so that a generated password is never replaced.
Every write is counted by verb, which is how tests and benchmarks prove that
a steady state sends none.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.dynamic import DynamicClient
from kubernetes.aio.dynamic.resource import Resource
from kubernetes.aio.watch import Watch

from sbo_operator.metrics import OperatorMetrics

# With a charset parameter (which the API server accepts) the client sends our
# serialized body as is; for the bare type it would json.dumps() it again.
APPLY_CONTENT_TYPE = "application/apply-patch+yaml; charset=utf-8"
MERGE_PATCH_CONTENT_TYPE = "application/merge-patch+json"


class ApplyConflict(Exception):
    """Someone else's field manager owns fields we tried to set (HTTP 409 without force)."""


class ApplyRejected(Exception):
    """The API server refused a write: the object is invalid, or a quota, RBAC or admission forbids it.

    Retrying does not help until a person acts; ``code`` is the HTTP status.
    """

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


# Refusals of a write (not an error of the server or the network): 400 and 403 from admission
# webhooks, quotas and RBAC, 422 for an invalid object.
REFUSED = (400, 403, 422)


def _refused(error: ApiException) -> ApplyRejected | None:
    return ApplyRejected(_reason(error), code=error.status) if error.status in REFUSED else None


class WatchExpired(Exception):
    """The resourceVersion a watch resumed from is too old (HTTP 410 Gone): list again."""


class ObjectGone(Exception):
    """The ScalableBackend or its whole namespace no longer exists (HTTP 404)."""


class NamespaceTerminating(ObjectGone):
    """The namespace is being deleted: the API refuses new objects in it (HTTP 403)."""


class Kube:
    """Kubernetes API access for one operator process."""

    def __init__(
        self, api: client.ApiClient, dynamic: DynamicClient, *, field_manager: str, metrics: OperatorMetrics
    ) -> None:
        self._api = api
        self._dynamic = dynamic
        self._field_manager = field_manager
        self._metrics = metrics
        self._resources: dict[tuple[str, str], Resource] = {}

    @classmethod
    async def connect(cls, *, field_manager: str, connections: int, metrics: OperatorMetrics) -> Kube:
        """Log in from the pod's ServiceAccount in a cluster, else from $KUBECONFIG."""
        configuration = client.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            await config.load_kube_config(client_configuration=configuration)
        configuration.connection_pool_maxsize = connections
        api = client.ApiClient(configuration)
        dynamic = await DynamicClient(api)
        return cls(api, dynamic, field_manager=field_manager, metrics=metrics)

    async def close(self) -> None:
        await self._api.close()

    async def _resource(self, api_version: str, kind: str) -> Resource:
        key = (api_version, kind)
        if key not in self._resources:
            self._resources[key] = await self._dynamic.resources.get(api_version=api_version, kind=kind)
        return self._resources[key]

    async def apply(self, manifest: dict[str, Any], *, force: bool) -> dict[str, Any]:
        """Server-side apply. With force, our field manager takes back fields edited by hand."""
        resource = await self._resource(manifest["apiVersion"], manifest["kind"])
        self._metrics.api_writes.labels(verb="apply", kind=manifest["kind"]).inc()
        try:
            result = await self._dynamic.patch(
                resource,
                body=apply_patch_body(manifest),
                name=manifest["metadata"]["name"],
                namespace=manifest["metadata"].get("namespace"),
                content_type=APPLY_CONTENT_TYPE,
                field_manager=self._field_manager,
                force_conflicts=force,
            )
        except ApiException as error:
            if error.status == 404:  # apply creates objects, so only the namespace can be missing
                raise ObjectGone(_reason(error)) from error
            if _namespace_terminating(error):
                raise NamespaceTerminating(_reason(error)) from error
            if error.status == 409:
                raise ApplyConflict(_reason(error)) from error
            if refused := _refused(error):
                raise refused from error
            raise
        return _as_dict(result)

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create if absent: the created object, or None when it already exists."""
        resource = await self._resource(manifest["apiVersion"], manifest["kind"])
        self._metrics.api_writes.labels(verb="create", kind=manifest["kind"]).inc()
        try:
            created = await self._dynamic.create(
                resource,
                body=manifest,
                namespace=manifest["metadata"].get("namespace"),
                field_manager=self._field_manager,
            )
        except ApiException as error:
            if error.status == 409:
                return None
            if error.status == 404:
                raise ObjectGone(_reason(error)) from error
            if _namespace_terminating(error):
                raise NamespaceTerminating(_reason(error)) from error
            if refused := _refused(error):
                raise refused from error
            raise
        return _as_dict(created)

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        resource = await self._resource(api_version, kind)
        try:
            return _as_dict(await self._dynamic.get(resource, name=name, namespace=namespace))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str) -> list[dict[str, Any]]:
        resource = await self._resource(api_version, kind)
        result = _as_dict(await self._dynamic.get(resource, namespace=namespace))
        return list(result.get("items") or [])

    async def list_page(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None,
        label_selector: str,
        limit: int,
        continue_token: str | None,
    ) -> dict[str, Any]:
        """One page of a LIST, as plain JSON (no client model objects for thousands of items)."""
        resource = await self._resource(api_version, kind)
        response = await self._dynamic.get(
            resource,
            namespace=namespace,
            label_selector=label_selector,
            limit=limit,
            _continue=continue_token,
            serialize=False,
        )
        try:
            page: dict[str, Any] = await response.json()
        finally:
            response.release()
        return page

    async def watch(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None,
        label_selector: str,
        resource_version: str,
        timeout_seconds: int,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(event type, object) from `resource_version` on, until the server ends the watch.

        `timeout_seconds` must stay below the client's own request timeout (5 minutes).
        """
        resource = await self._resource(api_version, kind)
        watcher = Watch()
        try:
            async for event in watcher.stream(
                functools.partial(self._dynamic.get, resource),
                namespace=namespace,
                label_selector=label_selector,
                resource_version=resource_version,
                timeout_seconds=timeout_seconds,
                # Bookmarks keep the resume version current while nothing changes, so that a
                # quiet kind is not listed again when its version falls out of the watch cache.
                query_params=[("allowWatchBookmarks", "true")],
                serialize=False,
            ):
                yield event["type"], event["raw_object"]
        except ApiException as error:
            if error.status == 410:
                raise WatchExpired(_reason(error)) from error
            raise
        finally:
            await watcher.close()

    async def delete(
        self, api_version: str, kind: str, namespace: str, name: str, *, orphan: bool = False
    ) -> None:
        """Delete; with `orphan`, the object's dependents (e.g. a StatefulSet's pods) stay."""
        resource = await self._resource(api_version, kind)
        self._metrics.api_writes.labels(verb="delete", kind=kind).inc()
        policy = "Orphan" if orphan else "Background"
        try:
            await self._dynamic.delete(
                resource, name=name, namespace=namespace, body={"propagationPolicy": policy}
            )
        except ApiException as error:
            if refused := _refused(error):
                raise refused from error
            if error.status != 404:
                raise

    async def label_pod(self, namespace: str, name: str, uid: str, labels: dict[str, str]) -> bool:
        """Merge-patch a pod's labels, only if it is still the pod with that uid (a precondition:
        a pod recreated under the same name is not touched). False if it is gone or replaced."""
        return await self._patch_pod_metadata(namespace, name, uid, {"labels": labels})

    async def annotate_pod(self, namespace: str, name: str, uid: str, annotations: dict[str, str]) -> bool:
        """Merge-patch a pod's annotations, as :meth:`label_pod` its labels."""
        return await self._patch_pod_metadata(namespace, name, uid, {"annotations": annotations})

    async def _patch_pod_metadata(
        self, namespace: str, name: str, uid: str, metadata: dict[str, Any]
    ) -> bool:
        resource = await self._resource("v1", "Pod")
        self._metrics.api_writes.labels(verb="patch", kind="Pod").inc()
        return await _unless_gone_or_replaced(
            self._dynamic.patch(
                resource,
                body={"metadata": {"uid": uid, **metadata}},
                name=name,
                namespace=namespace,
                content_type=MERGE_PATCH_CONTENT_TYPE,
                field_manager=self._field_manager,
            )
        )

    async def delete_pod(self, namespace: str, name: str, uid: str, *, grace_seconds: int | None) -> bool:
        """Delete exactly the pod with that uid (a precondition); ``grace_seconds`` None: the pod's
        own. False if it is gone or replaced already."""
        resource = await self._resource("v1", "Pod")
        self._metrics.api_writes.labels(verb="delete", kind="Pod").inc()
        body: dict[str, Any] = {"preconditions": {"uid": uid}}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        return await _unless_gone_or_replaced(
            self._dynamic.delete(resource, name=name, namespace=namespace, body=body)
        )

    async def patch_spec(self, body: dict[str, Any], patch: dict[str, Any]) -> None:
        """Merge-patch an object's spec (the autoscaler's replicas); raises ObjectGone if deleted."""
        resource = await self._resource(body["apiVersion"], body["kind"])
        self._metrics.api_writes.labels(verb="patch", kind=body["kind"]).inc()
        try:
            await self._dynamic.patch(
                resource,
                body=patch,
                name=body["metadata"]["name"],
                namespace=body["metadata"]["namespace"],
                content_type=MERGE_PATCH_CONTENT_TYPE,
                field_manager=self._field_manager,
            )
        except ApiException as error:
            if error.status == 404:
                raise ObjectGone(_reason(error)) from error
            if refused := _refused(error):
                raise refused from error
            raise

    async def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        """Merge-patch the status subresource; raises ObjectGone if the object was deleted."""
        resource = await self._resource(api_version, kind)
        self._metrics.api_writes.labels(verb="patch_status", kind=kind).inc()
        try:
            await self._dynamic.patch(
                resource.subresources["status"],
                body={"status": status},
                name=name,
                namespace=namespace,
                content_type=MERGE_PATCH_CONTENT_TYPE,
            )
        except ApiException as error:
            if error.status == 404:
                raise ObjectGone(_reason(error)) from error
            raise


# Outside printable ASCII: escaped, so that no YAML parser can misread a character.
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")


def apply_patch_body(manifest: dict[str, Any]) -> str:
    """The manifest as an apply patch: JSON, which is YAML, in printable ASCII only.

    json.dumps() writes a character outside the Basic Multilingual Plane (an emoji)
    as a UTF-16 surrogate pair, which the API server's YAML parser rejects; YAML's
    own `\\U0001f680` escape carries it instead. YAML 1.1 also reads U+0085, U+2028
    and U+2029 as line breaks and refuses raw control characters, so everything
    outside printable ASCII is escaped. JSON escapes control characters itself,
    so the rest occur only inside quoted strings, where the escapes belong. Every
    string stays quoted: "yes", "0x10", "1e3", "null" and "~" stay strings.
    """
    text = json.dumps(manifest, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _NOT_PRINTABLE_ASCII.sub(_yaml_escape, text)


async def _unless_gone_or_replaced(request: Awaitable[Any]) -> bool:
    """True once a write guarded by a uid precondition is done; False if the object is gone (404)
    or another one has its name now: 409 for a delete's precondition, 422 for a patch naming the
    old uid (the API server answers that metadata.uid is immutable)."""
    try:
        await request
    except ApiException as error:
        if error.status in (404, 409) or _uid_differs(error):
            return False
        if refused := _refused(error):
            raise refused from error
        raise
    return True


def _yaml_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _namespace_terminating(error: ApiException) -> bool:
    """The NamespaceLifecycle admission's answer to a create in a namespace being deleted."""
    # A StatusCause's type is serialized as "reason".
    return error.status == 403 and any(
        cause.get("reason") == "NamespaceTerminating" for cause in _causes(error)
    )


def _uid_differs(error: ApiException) -> bool:
    """A patch's metadata.uid is not the object's: it was replaced under the same name."""
    return error.status == 422 and any(cause.get("field") == "metadata.uid" for cause in _causes(error))


def _causes(error: ApiException) -> list[dict[str, Any]]:
    """The StatusCauses in the API server's answer (none if it has no Status body)."""
    try:
        details = json.loads(error.body or "").get("details") or {}
        return [cause for cause in details.get("causes") or [] if isinstance(cause, dict)]
    except (TypeError, ValueError, AttributeError):
        return []


def _reason(error: ApiException) -> str:
    """The API server's own message, which names the field or the rule."""
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.reason)


def _as_dict(result: Any) -> dict[str, Any]:
    converted = result.to_dict() if hasattr(result, "to_dict") else result
    return dict(converted) if converted is not None else {}
