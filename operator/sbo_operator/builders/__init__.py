"""Pure builders: a validated ScalableBackend in, plain manifest dicts out.

One module per child area. No I/O, no clock, no randomness: secrets take their random bytes as
an argument. Every manifest is ready for server-side apply (apiVersion, kind, metadata with
name, namespace, labels and the controller ownerReference when the backend has a uid, spec) and
deterministic, so that comparing desired and actual objects causes no needless updates.
"""

from typing import Any

Manifest = dict[str, Any]
"""A Kubernetes object as a plain dict, as the builders return it and the API accepts it."""
