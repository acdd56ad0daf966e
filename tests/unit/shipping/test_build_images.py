"""hack/build_images.py rebuilds an image exactly when one of its inputs changed.

The cache key covers the Dockerfile and every file its COPY steps read (nothing else in the
context), and the machine's pip settings reach the build without entering the key or the image.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from devkit.paths import REPO

pytestmark = pytest.mark.unit

DOCKERFILE = """\
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS builder
COPY deploy/requirements/app.txt /src/requirements/
RUN pip install -r /src/requirements/app.txt
COPY pyproject.toml README.md \\
     /src/
COPY app /src/app
FROM ${PYTHON_IMAGE}
COPY --from=builder /opt/venv /opt/venv
"""


@pytest.fixture(scope="module")
def build_images() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_images", REPO / "hack" / "build_images.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_images"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "deploy" / "requirements").mkdir(parents=True)
    (tmp_path / "deploy" / "requirements" / "app.txt").write_text("fastapi==0.1 --hash=sha256:00\n")
    (tmp_path / "app" / "__pycache__").mkdir(parents=True)
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\x00")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    (tmp_path / "README.md").write_text("app\n")
    (tmp_path / "notes.txt").write_text("not copied\n")
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    return tmp_path


def key(build_images: ModuleType, context: Path) -> str:
    return str(build_images.cache_key({"context": build_images.dockerfile_inputs(context, "Dockerfile")}))


def test_copy_sources_are_the_context_paths_copied_and_never_another_stage(build_images: ModuleType) -> None:
    assert build_images.copy_sources(DOCKERFILE) == [
        "deploy/requirements/app.txt",
        "pyproject.toml",
        "README.md",
        "app",
    ]


def test_the_same_inputs_give_the_same_key(build_images: ModuleType, context: Path) -> None:
    assert key(build_images, context) == key(build_images, context)
    assert len(key(build_images, context)) == 64


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("Dockerfile", DOCKERFILE + "ENV CHANGED=1\n"),
        ("deploy/requirements/app.txt", "fastapi==0.2 --hash=sha256:01\n"),  # a new lock export
        ("app/__init__.py", "VERSION = 2\n"),
        ("app/new_module.py", ""),
        ("README.md", "app, renamed\n"),
    ],
)
def test_a_changed_input_gives_a_new_key(
    build_images: ModuleType, context: Path, path: str, content: str
) -> None:
    before = key(build_images, context)
    (context / path).write_text(content)
    assert key(build_images, context) != before


@pytest.mark.parametrize("path", ["notes.txt", "app/__pycache__/__init__.cpython-311.pyc"])
def test_files_the_build_never_copies_leave_the_key_alone(
    build_images: ModuleType, context: Path, path: str
) -> None:
    before = key(build_images, context)
    (context / path).write_bytes(b"changed")
    assert key(build_images, context) == before


def test_the_base_image_key_is_part_of_the_recipe(build_images: ModuleType) -> None:
    first = build_images.cache_key({"base": "a" * 64, "context": {}})
    assert build_images.cache_key({"base": "b" * 64, "context": {}}) != first


def test_the_project_dockerfiles_copy_their_lock_exports(build_images: ModuleType) -> None:
    operator = build_images.dockerfile_inputs(REPO, build_images.OPERATOR.dockerfile)
    sample_app = build_images.dockerfile_inputs(REPO, build_images.SAMPLE_APP.dockerfile)
    assert {"Dockerfile", "deploy/requirements/operator.txt", "operator/sbo_operator/cli.py"} <= set(operator)
    assert {"sample-app/Dockerfile", "deploy/requirements/sample-app.txt", "sample-app/app/serve.py"} <= set(
        sample_app
    )
    assert not any("__pycache__" in path for path in [*operator, *sample_app])


def test_pip_settings_keep_how_pip_reaches_the_index_and_the_environment_wins(
    build_images: ModuleType, tmp_path: Path
) -> None:
    config = tmp_path / "pip.conf"
    config.write_text("[global]\ncert = /etc/ssl/certs/ca.crt\nfind-links = /opt/wheels\ntimeout = 5\n")
    environ = {
        "PIP_INDEX_URL": "https://mirror.invalid/simple",
        "PIP_DEFAULT_TIMEOUT": "180",
        "PIP_FIND_LINKS": "/x",
    }
    assert build_images.pip_settings([config, tmp_path / "absent.conf"], environ) == {
        "cert": "/etc/ssl/certs/ca.crt",
        "index-url": "https://mirror.invalid/simple",
        "default-timeout": "180",
    }


def test_the_python_base_has_the_cxx_runtime_that_compiled_wheels_link(build_images: ModuleType) -> None:
    # greenlet (SQLAlchemy's asyncio) links libstdc++.so.6; without it the sample app's
    # migrations failed on the real node. The official python images ship it too.
    assert "libstdc++6" in build_images.PYTHON_BASE.packages
