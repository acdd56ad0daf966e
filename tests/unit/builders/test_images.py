"""The data services' image templates: rendering, validation, and the builders running them."""

from __future__ import annotations

import re

import pytest

from sbo_operator.api.v1alpha1 import PostgresVersion, RedisVersion
from sbo_operator.builders import Manifest
from sbo_operator.builders.images import OFFICIAL_DATA_SERVICE_IMAGES, DataServiceImages
from sbo_operator.builders.postgres import (
    build_postgres_statefulset,
)
from sbo_operator.builders.redis import build_redis_statefulset
from tests.unit.factories import backend_from

pytestmark = pytest.mark.unit

MIRROR = DataServiceImages(
    postgres="mirror.example/library/postgres:{version}",
    redis="mirror.example:5000/cache/redis:{version}-debian",
)


def pod_images(statefulset: Manifest | None) -> list[str]:
    assert statefulset is not None
    pod = statefulset["spec"]["template"]["spec"]
    return [container["image"] for container in [*pod.get("initContainers", []), *pod["containers"]]]


def test_the_defaults_are_the_official_images() -> None:
    assert DataServiceImages() == OFFICIAL_DATA_SERVICE_IMAGES
    assert [OFFICIAL_DATA_SERVICE_IMAGES.postgres_image(v) for v in PostgresVersion] == [
        "postgres:15",
        "postgres:16",
        "postgres:17",
    ]
    assert [OFFICIAL_DATA_SERVICE_IMAGES.redis_image(v) for v in RedisVersion] == [
        "redis:7.0",
        "redis:7.2",
        "redis:7.4",
    ]


@pytest.mark.parametrize(
    ("template", "version", "image"),
    [
        pytest.param("mirror.example/library/postgres:{version}", "16", "mirror.example/library/postgres:16"),
        pytest.param("localhost:5000/postgres:{version}", "15", "localhost:5000/postgres:15", id="port"),
        pytest.param("sbo.local/postgres:{version}", "15", "sbo.local/postgres:15", id="local-build"),
        pytest.param(
            "registry.example/pg{version}:stable", "17", "registry.example/pg17:stable", id="in-path"
        ),
        pytest.param("[fd00::1]:5000/postgres:{version}-alpine", "17", "[fd00::1]:5000/postgres:17-alpine"),
    ],
)
def test_version_is_substituted_wherever_it_stands(template: str, version: str, image: str) -> None:
    assert DataServiceImages(postgres=template).postgres_image(PostgresVersion(version)) == image


@pytest.mark.parametrize(
    ("field", "template", "message"),
    [
        pytest.param("postgres", "postgres:15", "must contain {version}", id="no-placeholder"),
        pytest.param("redis", "redis", "must contain {version}", id="no-placeholder-redis"),
        pytest.param("postgres", "", "must contain {version}", id="empty"),
        pytest.param(
            "redis", "redis:{version}-{os}", "gives 'redis:7.0-{os}' for version 7.0", id="other-field"
        ),
        pytest.param("postgres", "Postgres:{version}", "gives 'Postgres:15' for version 15", id="uppercase"),
        pytest.param("postgres", "postgres :{version}", "gives 'postgres :15'", id="whitespace"),
        pytest.param("redis", "mirror.example/redis:{version}:x", "gives 'mirror.example/redis:7.0:x'"),
        pytest.param("postgres", "postgres@{version}", "gives 'postgres@15'", id="version-as-digest"),
    ],
)
def test_a_bad_template_is_refused_saying_what_to_write(field: str, template: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        DataServiceImages(**{field: template})
    # Either it says what the placeholder stands for, or what an image reference looks like.
    assert "e.g. " in str(caught.value)


def test_a_template_longer_than_an_image_may_be_is_refused() -> None:
    with pytest.raises(ValueError, match="for version 15"):
        DataServiceImages(postgres="mirror.example/" + "a" * 500 + "/postgres:{version}")


def test_postgres_statefulsets_run_the_given_image_in_every_container() -> None:
    backend = backend_from({"postgres": {"readReplicas": 1, "version": "17"}})
    assert (
        pod_images(build_postgres_statefulset(backend, images=MIRROR))
        == ["mirror.example/library/postgres:17"] * 2
    )
    assert pod_images(build_postgres_statefulset(backend)) == ["postgres:17"] * 2


def test_redis_statefulset_runs_the_given_image() -> None:
    backend = backend_from({"redis": {"version": "7.0"}})
    assert pod_images(build_redis_statefulset(backend, images=MIRROR)) == [
        "mirror.example:5000/cache/redis:7.0-debian"
    ]
    assert pod_images(build_redis_statefulset(backend)) == ["redis:7.0"]


def test_only_the_image_changes_with_the_template() -> None:
    backend = backend_from({"redis": {"persistence": {"size": "1Gi"}}, "postgres": {"readReplicas": 2}})
    for build in (build_postgres_statefulset, build_redis_statefulset):
        official, mirrored = build(backend), build(backend, images=MIRROR)
        assert official is not None
        assert mirrored is not None
        pod = mirrored["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            container["image"] = container["image"].removeprefix("mirror.example/library/")
            container["image"] = container["image"].removeprefix("mirror.example:5000/cache/")
            container["image"] = container["image"].removesuffix("-debian")
        assert mirrored == official
