"""The images PostgreSQL and Redis run: a template per data service, ``{version}`` the spec's version.

The invariant: a ``DataServiceImages`` only ever holds templates that give a valid image reference
for every supported version, so a builder can render one without a failure path, and a bad
template is refused when the operator starts (naming its setting), never as InvalidImageName in
a pod. The defaults are the official images; a registry mirror or an air-gapped cluster sets
e.g. ``mirror.example/library/postgres:{version}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from enum import StrEnum

from pydantic import TypeAdapter, ValidationError

from sbo_operator.api.v1alpha1 import IMAGE_MESSAGE, Image, PostgresVersion, RedisVersion

__all__ = [
    "OFFICIAL_DATA_SERVICE_IMAGES",
    "OFFICIAL_POSTGRES_IMAGE",
    "OFFICIAL_REDIS_IMAGE",
    "VERSION_PLACEHOLDER",
    "DataServiceImages",
    "check_postgres_image_template",
    "check_redis_image_template",
    "checked_image_template",
]

VERSION_PLACEHOLDER = "{version}"
OFFICIAL_POSTGRES_IMAGE = f"postgres:{VERSION_PLACEHOLDER}"
OFFICIAL_REDIS_IMAGE = f"redis:{VERSION_PLACEHOLDER}"

_IMAGE = TypeAdapter(Image)


def _render(template: str, version: str) -> str:
    return template.replace(VERSION_PLACEHOLDER, version)


def checked_image_template(template: str, *, service: str, official: str, versions: Iterable[StrEnum]) -> str:
    """``template`` if it gives a valid image reference for each of ``versions``; else ValueError.

    The message says what to write; the caller (a setting) names where it was written.
    """
    values = [version.value for version in versions]
    if VERSION_PLACEHOLDER not in template:
        raise ValueError(
            f"must contain {VERSION_PLACEHOLDER}, which becomes the {service} version "
            f"({', '.join(values)}), e.g. {official} or mirror.example/library/{official}"
        )
    for version in values:
        image = _render(template, version)
        try:
            _IMAGE.validate_python(image)
        except ValidationError:
            raise ValueError(f"gives {image!r} for version {version}, but {IMAGE_MESSAGE}") from None
    return template


def check_postgres_image_template(template: str) -> str:
    return checked_image_template(
        template, service="PostgreSQL", official=OFFICIAL_POSTGRES_IMAGE, versions=PostgresVersion
    )


def check_redis_image_template(template: str) -> str:
    return checked_image_template(
        template, service="Redis", official=OFFICIAL_REDIS_IMAGE, versions=RedisVersion
    )


@dataclasses.dataclass(frozen=True)
class DataServiceImages:
    """Image templates of the data services; ``{version}`` is replaced by spec.<service>.version."""

    postgres: str = OFFICIAL_POSTGRES_IMAGE
    redis: str = OFFICIAL_REDIS_IMAGE

    def __post_init__(self) -> None:
        check_postgres_image_template(self.postgres)
        check_redis_image_template(self.redis)

    def postgres_image(self, version: PostgresVersion) -> str:
        return _render(self.postgres, version.value)

    def redis_image(self, version: RedisVersion) -> str:
        return _render(self.redis, version.value)


OFFICIAL_DATA_SERVICE_IMAGES = DataServiceImages()
"""The official ``postgres:<version>`` and ``redis:<version>`` images (Docker Hub's library)."""
