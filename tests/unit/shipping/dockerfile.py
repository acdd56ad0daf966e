"""A small Dockerfile reader for the static checks, and a replay of a build stage's RUN steps.

The replay runs the stage's exact RUN commands on this machine: ARG and ENV values, COPY sources
and every absolute path the stage creates are moved under a temporary root, so the same pip
commands install the same locked files into a clean virtual environment.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

# Read from the machine, never written by a builder stage: left where they are.
SYSTEM_PATHS = frozenset(
    {"/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/dev", "/proc", "/sys", "/nonexistent"}
)


# An absolute path's first component where a word starts: not "$SRC"/dist, which is relative to $SRC.
ABSOLUTE_PATH = re.compile(r"""(?:^|(?<=[\s=:'(,\[])|(?<=[\s=\[]"))(/[A-Za-z][\w.-]*)""")
NETWORK_SETTINGS = re.compile(
    r"^(SSL_CERT_FILE|SSL_CERT_DIR|PIP_CERT|PIP_INDEX_URL|PIP_EXTRA_INDEX_URL|PIP_TRUSTED_HOST|REQUESTS_CA_BUNDLE"
    r"|UV_INDEX_URL|UV_DEFAULT_INDEX|UV_NATIVE_TLS|(HTTPS?|NO|ALL)_PROXY)$",
    re.IGNORECASE,
)


@dataclasses.dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]


@dataclasses.dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def resolved_base(self, stage: Stage) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.global_args.get(m.group(1), m.group(0)), stage.base)


def parse(path: Path) -> Dockerfile:
    logical: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = arguments.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name, []))
        elif not stages and keyword == "ARG":
            key, _, value = arguments.partition("=")
            global_args[key.strip()] = value.strip()
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, arguments.strip()))
    return Dockerfile(global_args, stages)


def _pairs(arguments: str) -> list[tuple[str, str]]:
    return [(k, v) for k, _, v in (item.partition("=") for item in shlex.split(arguments))]


def _expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), text)


def replay(dockerfile: Path, stage_name: str, context: Path, root: Path) -> dict[str, str]:
    """Run the named stage's COPY and RUN steps under `root`; returns the stage's (moved) ENV."""
    parsed = parse(dockerfile)
    stage = next(s for s in parsed.stages if s.name == stage_name)
    roots: set[str] = set()
    for instruction in stage.instructions:  # every absolute path the stage may write to
        for token in ABSOLUTE_PATH.findall(instruction.arguments):
            if token not in SYSTEM_PATHS:
                roots.add(token)

    # One pass, so that a moved path (under /tmp, say) is never moved again.
    pattern = re.compile(
        r"(?<![\w.$-])("
        + "|".join(re.escape(top) for top in sorted(roots, key=len, reverse=True))
        + r")(?=/|\b|$)"
    )

    def move(text: str) -> str:
        return pattern.sub(lambda match: str(root) + match.group(1), text) if roots else text

    # A clean environment, except how this machine reaches the package index (TLS roots, proxies).
    env = {k: v for k, v in os.environ.items() if NETWORK_SETTINGS.match(k)}
    env |= {"PATH": os.environ["PATH"], "HOME": str(root / "home")}
    workdir = root
    for instruction in stage.instructions:
        keyword, arguments = instruction.keyword, instruction.arguments
        if keyword in ("ENV", "ARG"):
            for key, value in _pairs(arguments):
                env[key] = move(_expand(value, env))
        elif keyword == "WORKDIR":
            workdir = Path(move(_expand(arguments, env)))
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            assert "--from" not in arguments, f"replay cannot COPY --from: {arguments}"
            words = [w for w in shlex.split(arguments) if not w.startswith("--")]
            *sources, destination = (move(_expand(w, env)) for w in words)
            target = Path(destination) if destination.startswith("/") else workdir / destination
            for source in sources:
                origin = context / source
                if origin.is_dir():
                    shutil.copytree(
                        origin,
                        target if not destination.endswith("/") else target / origin.name,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
                    )
                else:
                    directory = target if destination.endswith("/") else target.parent
                    directory.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, directory / origin.name if destination.endswith("/") else target)
        elif keyword == "RUN":
            command = " ".join(json.loads(arguments)) if arguments.startswith("[") else arguments
            assert "apt-get" not in command, "the builder must need no system packages"
            done = subprocess.run(
                ["/bin/sh", "-ec", move(command)],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"RUN {command}\nexited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return env
