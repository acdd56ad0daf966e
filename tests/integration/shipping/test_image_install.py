"""The images' install steps work: each builder stage's exact RUN commands, replayed in a clean
virtual environment on this machine (real pip against PyPI, hashes required, wheels only)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devkit.paths import REPO
from tests.unit.shipping.dockerfile import parse, replay

pytestmark = pytest.mark.integration


def builder(dockerfile: Path) -> str:
    stages = parse(dockerfile).stages
    name = stages[0].name
    assert name, "the first stage is the named builder"
    return name


def test_the_operator_builder_installs_a_working_sbo_operator(tmp_path: Path) -> None:
    dockerfile = REPO / "Dockerfile"
    try:
        env = replay(dockerfile, builder(dockerfile), REPO, tmp_path)
    except RuntimeError as error:
        pytest.fail(str(error))
    venv = Path(env["VIRTUAL_ENV"])
    assert venv.is_relative_to(tmp_path)
    # The final stage's ENTRYPOINT, relative to where the venv was copied.
    entrypoint = parse(dockerfile).final.all("ENTRYPOINT")[0].strip('[]"')
    program = tmp_path / entrypoint.lstrip("/")
    assert program.exists(), entrypoint
    settings = subprocess.run(
        [str(program), "settings"], capture_output=True, text=True, check=True, env={"SBO_LOG_FORMAT": "json"}
    )
    assert '"log_format": "json"' in settings.stdout
    pip = [str(Path(env["BUILD_VENV"]) / "bin" / "pip"), "--python", str(venv / "bin" / "python")]
    installed = subprocess.run(
        [*pip, "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout
    assert "setuptools" not in installed, "build tools stay out of the runtime environment"
    assert "pip==" not in installed, "no installer in the runtime environment"
    assert "pytest" not in installed, "no dev dependencies"
    assert "kopf==" in installed


def test_the_sample_app_builder_installs_a_working_app(tmp_path: Path) -> None:
    dockerfile = REPO / "sample-app" / "Dockerfile"
    if not dockerfile.exists():
        pytest.fail("sample-app/Dockerfile does not exist: the sample app's image needs one")
    try:
        replay(dockerfile, builder(dockerfile), REPO, tmp_path)
    except RuntimeError as error:
        pytest.fail(str(error))
    final = parse(dockerfile).final
    copied = [c.split()[1] for c in final.all("COPY") if c.startswith("--from=")]
    venvs = [
        tmp_path / c.lstrip("/") for c in copied if (tmp_path / c.lstrip("/") / "bin" / "python").exists()
    ]
    assert venvs, f"the final stage copies no virtual environment from the builder: {copied}"
    workdir = tmp_path / (final.all("WORKDIR") or ["."])[-1].lstrip("/")
    imported = subprocess.run(
        [str(venvs[0] / "bin" / "python"), "-c", "import app.main, uvicorn, alembic; print('ok')"],
        capture_output=True,
        text=True,
        check=False,
        cwd=workdir,
    )
    assert imported.stdout.strip() == "ok", imported.stderr
