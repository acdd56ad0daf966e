"""Both Dockerfiles, statically: hadolint, then the rules the images promise; the locks do not drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devkit.paths import REPO
from tests.unit.shipping.dockerfile import parse
from tests.unit.shipping.support import run, tool

pytestmark = pytest.mark.unit

UV = REPO / ".local" / "uv" / "bin" / "uv"
LOCKS = {"operator.txt": "scalable-backend-operator", "sample-app.txt": "sbo-sample-app"}
IMAGES = {"operator": REPO / "Dockerfile", "sample-app": REPO / "sample-app" / "Dockerfile"}
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|python3?-dev|libpq-dev|cargo|rustc|uv)\b")


def dockerfile(image: str) -> Path:
    path = IMAGES[image]
    if not path.exists():
        pytest.fail(f"{path.relative_to(REPO)} does not exist: the {image} image needs a Dockerfile")
    return path


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_hadolint_is_clean(image: str) -> None:
    result = run(tool("hadolint"), "--no-color", dockerfile(image), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_multi_stage_from_a_pinned_python_base(image: str) -> None:
    parsed = parse(dockerfile(image))
    assert len(parsed.stages) >= 2, "a builder stage and a final stage"
    for stage in parsed.stages:
        base = parsed.resolved_base(stage)
        if base in {s.name for s in parsed.stages}:
            continue
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), (
            f"{base}: pin an exact Python release (python:3.X.Y-slim-<debian>)"
        )


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_builder_installs_only_hashed_locked_wheels(image: str) -> None:
    parsed = parse(dockerfile(image))
    runs = " ".join(r for stage in parsed.stages[:-1] for r in stage.all("RUN"))
    envs = " ".join(e for stage in parsed.stages[:-1] for e in stage.all("ENV"))
    installs = re.findall(r"pip\"?(?: --python \S+)? install ([^&]+)", runs)
    assert installs, "the builder installs with pip"
    from_lock = [i for i in installs if re.search(r"(^|\s)(-r|--requirement)\s", i)]
    assert from_lock, "dependencies come from a requirements lock"
    for install in from_lock:
        assert "--require-hashes" in install, install
        assert "--no-deps" in install, install
    assert "PIP_ONLY_BINARY=:all:" in envs or all("--only-binary" in i for i in installs), "wheels only"
    for install in installs:
        if install not in from_lock:
            assert "--no-deps" in install, f"the project itself brings no unlocked dependency: {install}"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_final_stage_has_no_build_tools_and_runs_as_a_numeric_non_root_user(image: str) -> None:
    final = parse(dockerfile(image)).final
    for command in final.all("RUN"):
        assert "pip install" not in command, "installs belong in the builder"
        assert not BUILD_TOOLS.search(command.replace("useradd", "").replace("groupadd", "")), command
        assert "apt-get install" not in command, command
    assert final.all("COPY"), "the final stage copies the built environment"
    users = final.all("USER")
    assert users, "the final stage sets USER"
    user = users[-1].split(":")
    assert all(part.isdigit() and int(part) != 0 for part in user), f"USER {users[-1]}: numeric and non-root"


def test_the_operator_image_runs_sbo_operator() -> None:
    final = parse(dockerfile("operator")).final
    assert final.all("ENTRYPOINT") == ['["/opt/venv/bin/sbo-operator"]']
    assert final.all("CMD") == ['["run"]']


def test_the_sample_app_image_serves_on_8000() -> None:
    final = parse(dockerfile("sample-app")).final
    assert "8000" in " ".join(final.all("EXPOSE")), "the app listens on 8000"
    assert final.all("ENTRYPOINT") or final.all("CMD")


@pytest.mark.parametrize(("lock", "package"), sorted(LOCKS.items()))
def test_the_image_locks_match_uv_lock(lock: str, package: str) -> None:
    if not UV.exists():
        pytest.fail(f"{UV} is missing: run `make venv`")
    exported = run(
        UV, "export", "--frozen", "--no-dev", "--package", package, "--format", "requirements-txt",
        "--no-emit-workspace", "--no-header", "--quiet",
    ).stdout  # fmt: skip
    checked_in = (REPO / "deploy" / "requirements" / lock).read_text()
    assert checked_in == exported, f"deploy/requirements/{lock} drifted from uv.lock: run `make image-locks`"


def test_the_build_lock_is_pinned_and_hashed() -> None:
    text = (REPO / "deploy" / "requirements" / "build.txt").read_text()
    assert re.search(r"^setuptools==[\d.]+ \\$", text, re.MULTILINE)
    assert "--hash=sha256:" in text


def test_the_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert lines[[line.strip() for line in lines].index("*")] == "*", "ignore everything by default"
    for needed in ("!operator/", "!deploy/requirements/", "!pyproject.toml"):
        assert needed in lines
