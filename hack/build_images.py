#!/usr/bin/env python3
"""Builds the stack's images on this machine, with no registry, into the real node's images directory.

    hack/build_images.py                 build what is out of date (as root: mmdebstrap, buildah)
    hack/build_images.py --force         rebuild everything
    hack/build_images.py --list          print each image's name and archive, build nothing

1. `sbo.local/python:3.11-bookworm`: a Python base bootstrapped with mmdebstrap from the machine's own
   apt sources (python3, python3-venv, python-is-python3, passwd for groupadd/useradd).
2. `sbo.local/sbo-operator:dev` and `sbo.local/sample-app:dev`: the project's `Dockerfile` and
   `sample-app/Dockerfile`, built for real by buildah (vfs storage, chroot isolation, the host's
   network) with that base as their PYTHON_IMAGE. pip inside RUN gets the machine's pip settings
   and CA bundle through read-only build-time mounts, so nothing machine-specific lands in a layer.
3. `sbo.local/postgres:15` and `sbo.local/redis:7.0`: Debian's packages with the official images'
   contract (uid/gid 999 created before the packages install, binaries on PATH, the data directories).

Invariant: an archive in the images directory is current exactly when the stamp beside it holds the
cache key of its inputs (recipe, Dockerfile, the files it copies, the base's key, the apt sources and
the packages' candidate versions, the builder's version); anything else is rebuilt, and an archive
is replaced only by a complete one. buildah's storage, run and temporary files live in the project's
cache directory; nothing is written to /var/lib/containers, /run/containers or /var/tmp.
"""

from __future__ import annotations

import argparse
import configparser
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
# Docs, manuals and translations stay out of every image; copyright files stay in.
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)
# What apt and dpkg leave behind that an image never needs.
CLEANUP = (
    "rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/* /var/lib/dpkg/*-old"
)
# Files a runtime (buildah's RUN, kubelet) binds over: present and empty, so no build step leaves
# an empty one in its layer, and the copies of the host's that mmdebstrap made for apt stay out.
MOUNT_POINTS = "for f in hosts hostname resolv.conf; do rm -f /etc/$f; : >/etc/$f; done"
# Files in a Dockerfile's context that never reach an image (the context's .dockerignore drops them).
IGNORED_PARTS = ("__pycache__", ".egg-info", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache")
# containers/image keeps its blob-info cache here for root whatever --root says; removed after a
# build when the build made it.
BUILDAH_HOST_PATHS = (Path("/var/lib/containers"),)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclasses.dataclass(frozen=True)
class SystemUser:
    """A user (and its group, same id) created before the packages install, so they keep this id."""

    name: str
    uid: int
    home: str
    shell: str = "/usr/sbin/nologin"


@dataclasses.dataclass(frozen=True)
class DebianImage:
    """An image whose one layer is a Debian root filesystem made by mmdebstrap."""

    name: str
    archive: str
    packages: tuple[str, ...]
    users: tuple[SystemUser, ...] = ()
    # (path, "uid:gid", octal mode) made after the packages install.
    directories: tuple[tuple[str, str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = "/"
    ports: tuple[int, ...] = ()
    stop_signal: str = ""
    # A shell command run in the root filesystem after the users exist, before the packages install.
    before_packages: str = ""


@dataclasses.dataclass(frozen=True)
class DockerfileImage:
    """An image built by buildah from one of the project's Dockerfiles (context: the repository)."""

    name: str
    archive: str
    dockerfile: str
    base: DebianImage


PYTHON_BASE = DebianImage(
    name="sbo.local/python:3.11-bookworm",
    archive="python.tar",
    # libstdc++6: compiled wheels link it (greenlet, which SQLAlchemy's asyncio needs, among them);
    # the official python images have it. Without it the sample app's migrations Job failed on the
    # real node with "The SQLAlchemy asyncio module requires ... 'greenlet'".
    packages=("python3", "python3-venv", "python-is-python3", "passwd", "libstdc++6"),
    env=(("PATH", SYSTEM_PATH), ("LANG", "C.UTF-8")),
    cmd=("python3",),
)
OPERATOR = DockerfileImage(
    name="sbo.local/sbo-operator:dev", archive="sbo-operator.tar", dockerfile="Dockerfile", base=PYTHON_BASE
)
SAMPLE_APP = DockerfileImage(
    name="sbo.local/sample-app:dev",
    archive="sample-app.tar",
    dockerfile="sample-app/Dockerfile",
    base=PYTHON_BASE,
)
# The official postgres image: postgres 999:999, binaries first on PATH, PGDATA, a writable socket dir.
# Plus barman-cloud (WAL archiving, base backups and restore to S3-compatible stores), as the
# images CloudNativePG runs carry it: the official image has none, so backups need an image like this.
POSTGRES = DebianImage(
    name="sbo.local/postgres:15",
    archive="postgres.tar",
    packages=("postgresql-15", "hostname", "barman-cli-cloud"),
    users=(SystemUser("postgres", 999, "/var/lib/postgresql", "/bin/bash"),),
    directories=(("/var/lib/postgresql/data", "999:999", "1777"), ("/var/run/postgresql", "999:999", "3777")),
    env=(
        ("PATH", f"/usr/lib/postgresql/15/bin:{SYSTEM_PATH}"),
        ("LANG", "C.UTF-8"),
        ("PGDATA", "/var/lib/postgresql/data"),
    ),
    # Like the official image: no cluster in /var/lib/postgresql/15/main, PGDATA starts empty.
    before_packages="mkdir -p /etc/postgresql-common/createcluster.d"
    " && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/sbo.conf",
    cmd=("postgres",),
    ports=(5432,),
    stop_signal="SIGINT",
)
# The official redis image: redis 999:999, /data as the working directory.
REDIS = DebianImage(
    name="sbo.local/redis:7.0",
    archive="redis.tar",
    packages=("redis-server", "redis-tools"),
    users=(SystemUser("redis", 999, "/var/lib/redis"),),
    directories=(("/data", "999:999", "0755"),),
    env=(("PATH", SYSTEM_PATH),),
    cmd=("redis-server",),
    workdir="/data",
    ports=(6379,),
)
# In build order; the base is not loaded into the node (only the images built from it are).
IMAGES: tuple[DebianImage | DockerfileImage, ...] = (PYTHON_BASE, OPERATOR, SAMPLE_APP, POSTGRES, REDIS)
NODE_IMAGES = tuple(image for image in IMAGES if image is not PYTHON_BASE)


def say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


# ---- cache keys (pure: inputs in, a digest out) -----------------------------------------------


def cache_key(inputs: Mapping[str, object]) -> str:
    """One digest of every input; the same inputs always give the same key."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def copy_sources(dockerfile_text: str) -> list[str]:
    """The context paths a Dockerfile's COPY (and ADD) instructions read; not COPY --from=stage."""
    logical = re.sub(r"\\\n", " ", dockerfile_text)
    sources: list[str] = []
    for line in logical.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        flags = [w for w in words[1:] if w.startswith("--")]
        if any(flag.startswith("--from") for flag in flags):
            continue
        sources.extend(w for w in words[1:-1] if not w.startswith("--"))
    return sources


def context_files(context: Path, sources: Sequence[str]) -> Iterator[Path]:
    for source in sources:
        path = context / source
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for candidate in candidates:
            relative = candidate.relative_to(context)
            if candidate.is_file() and not any(part.endswith(IGNORED_PARTS) for part in relative.parts):
                yield candidate


def files_digest(context: Path, files: Sequence[Path]) -> dict[str, str]:
    return {str(f.relative_to(context)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def dockerfile_inputs(context: Path, dockerfile: str) -> dict[str, str]:
    """The Dockerfile and every file it copies (the lock exports included), by content."""
    path = context / dockerfile
    files = [path, *context_files(context, copy_sources(path.read_text()))]
    dockerignore = context / ".dockerignore"
    if dockerignore.exists():
        files.append(dockerignore)
    return files_digest(context, files)


# ---- the machine's Debian sources and tools ---------------------------------------------------


def apt_sources() -> list[Path]:
    """The machine's enabled apt source files for this suite, in both formats."""
    candidates = [Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    enabled = []
    for candidate in candidates:
        if not candidate.is_file():
            continue
        lines = [
            ln for ln in candidate.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")
        ]
        if any(SUITE in ln for ln in lines):
            enabled.append(candidate)
    if not enabled:
        raise SystemExit(f"build_images: no apt source for {SUITE} in /etc/apt; mmdebstrap needs one")
    return enabled


def candidate_versions(packages: Sequence[str]) -> dict[str, str]:
    """What apt would install for each package now: a new Debian point release changes the key."""
    policy = subprocess.run(
        ["apt-cache", "policy", *packages], capture_output=True, text=True, check=True
    ).stdout
    versions: dict[str, str] = {}
    current = ""
    for line in policy.splitlines():
        if not line.startswith(" "):
            current = line.rstrip(":")
        elif line.strip().startswith("Candidate:"):
            versions[current] = line.split(":", 1)[1].strip()
    return versions


# pip's own configuration files, in pip's order (later wins), then PIP_* variables.
PIP_CONFIG_FILES = (
    Path("/etc/xdg/pip/pip.conf"),
    Path("/etc/pip.conf"),
    Path.home() / ".pip" / "pip.conf",
    Path.home() / ".config" / "pip" / "pip.conf",
)
# How pip reaches the index; paths such as find-links would name nothing inside the build.
PIP_NETWORK_SETTINGS = (
    "cert",
    "client-cert",
    "index-url",
    "extra-index-url",
    "trusted-host",
    "proxy",
    "default-timeout",
    "retries",
)


def pip_settings(files: Sequence[Path], environ: Mapping[str, str]) -> dict[str, str]:
    """The network settings pip on this machine uses, from its config files and PIP_* variables."""
    parser = configparser.ConfigParser()
    extra = environ.get("PIP_CONFIG_FILE")
    parser.read([*files, *([Path(extra)] if extra else [])])
    settings: dict[str, str] = {}
    for section in ("global", "install", "download"):
        if parser.has_section(section):
            settings |= {k: v for k, v in parser.items(section) if k in PIP_NETWORK_SETTINGS}
    for key in PIP_NETWORK_SETTINGS:
        if value := environ.get("PIP_" + key.upper().replace("-", "_")):
            settings[key] = value
    return settings


def tool_version(command: str) -> str:
    return subprocess.run([command, "--version"], capture_output=True, text=True, check=True).stdout.strip()


# ---- building -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Builder:
    images_dir: Path
    work_dir: Path
    force: bool = False
    keys: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def storage_flags(self) -> list[str]:
        return [
            "--root", str(self.work_dir / "storage"),
            "--runroot", str(self.work_dir / "run"),
            "--storage-driver", "vfs",
        ]  # fmt: skip

    def archive(self, image: DebianImage | DockerfileImage) -> Path:
        # The base is only an input of the Dockerfile builds: it stays out of the node's directory.
        return (self.work_dir if image is PYTHON_BASE else self.images_dir) / image.archive

    @property
    def buildah_env(self) -> dict[str, str]:
        """Every buildah call, even a read-only one, takes its settings from here: without CONTAINERS_CONF,
        buildah creates /etc/cni/net.d/cni.lock on the host (seen from `buildah inspect`)."""
        return {
            **os.environ,
            "TMPDIR": str(self.work_dir / "tmp"),
            "BUILDAH_ISOLATION": "chroot",
            "CONTAINERS_CONF": str(self.containers_conf()),
        }

    def buildah(self, *args: str, capture: bool = False) -> str:
        result = subprocess.run(
            ["buildah", *self.storage_flags, *args],
            env=self.buildah_env,
            check=True,
            text=True,
            stdout=subprocess.PIPE if capture else sys.stderr,
        )
        return result.stdout.strip() if capture else ""

    def containers_conf(self) -> Path:
        """buildah's settings: its network configuration (and lock) under the work directory, not /etc/cni."""
        path = self.work_dir / "containers.conf"
        wanted = f'[network]\nnetwork_backend = "cni"\nnetwork_config_dir = "{self.work_dir / "cni"}"\n'
        if not path.exists() or path.read_text() != wanted:
            (self.work_dir / "cni").mkdir(exist_ok=True)
            path.write_text(wanted)
        return path

    def key(self, image: DebianImage | DockerfileImage) -> str:
        if image.name not in self.keys:
            inputs: dict[str, object] = {
                "recipe": dataclasses.asdict(image),
                # How it is built is an input too: a change to this script rebuilds.
                "builder": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
                "buildah": tool_version("buildah"),
            }
            if isinstance(image, DebianImage):
                inputs |= {
                    "sources": {str(p): p.read_text() for p in apt_sources()},
                    "candidates": candidate_versions(image.packages),
                    "mmdebstrap": tool_version("mmdebstrap"),
                    "suite": SUITE,
                }
            else:
                inputs |= {"base": self.key(image.base), "context": dockerfile_inputs(REPO, image.dockerfile)}
            self.keys[image.name] = cache_key(inputs)
        return self.keys[image.name]

    def is_current(self, image: DebianImage | DockerfileImage) -> bool:
        archive = self.archive(image)
        stamp = archive.with_name(archive.name + ".stamp")
        return archive.exists() and stamp.exists() and stamp.read_text().strip() == self.key(image)

    def in_storage(self, image: DebianImage | DockerfileImage) -> bool:
        found = subprocess.run(
            ["buildah", *self.storage_flags, "inspect", "--type", "image", image.name],
            env=self.buildah_env,
            capture_output=True,
            check=False,
        )
        return found.returncode == 0

    def build(self, image: DebianImage | DockerfileImage) -> tuple[str, float]:
        """Builds IMAGE unless its archive is current; returns ("built" | "cached", seconds)."""
        started = time.monotonic()
        if not self.force and self.is_current(image):
            if isinstance(image, DebianImage) and image is PYTHON_BASE and not self.in_storage(image):
                say(f"{image.name}: current; loading its archive into buildah's storage")
                self.buildah("pull", "--quiet", f"oci-archive:{self.archive(image)}")
            say(f"{image.name}: up to date ({self.key(image)[:12]})")
            return "cached", time.monotonic() - started
        say(f"{image.name}: building (inputs {self.key(image)[:12]})")
        if isinstance(image, DebianImage):
            self.build_debian(image)
        else:
            self.build_dockerfile(image)
        self.export(image)
        return "built", time.monotonic() - started

    def build_debian(self, image: DebianImage) -> None:
        rootfs = self.work_dir / "tmp" / f"{image.archive}.rootfs.tar"
        # Users go in right after the essential packages (base-passwd made /etc/passwd), before the
        # packages whose scripts would otherwise pick the next free id.
        users = "; ".join(
            f"echo '{u.name}:x:{u.uid}:{u.uid}::{u.home}:{u.shell}' >>\"$1/etc/passwd\"; "
            f"echo '{u.name}:x:{u.uid}:' >>\"$1/etc/group\""
            for u in image.users
        )
        directories = "; ".join(
            f'mkdir -p "$1{path}" && chown {owner} "$1{path}" && chmod {mode} "$1{path}"'
            for path, owner, mode in image.directories
        )
        hooks = [f"--essential-hook={users}"] if users else []
        if image.before_packages:
            hooks.append(f'--essential-hook=chroot "$1" sh -c {shlex.quote(image.before_packages)}')
        if directories:
            hooks.append(f"--customize-hook={directories}")
        command = [
            "mmdebstrap", "--variant=essential", "--quiet",
            # Merged /usr through the usr-is-merged package, without usrmerge's Perl.
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            f"--include={','.join(image.packages)}",
            *(f"--dpkgopt={option}" for option in DPKG_EXCLUDES),
            *hooks,
            f"--customize-hook=chroot \"$1\" sh -c {shlex.quote(CLEANUP)}",
            f"--customize-hook=chroot \"$1\" sh -c {shlex.quote(MOUNT_POINTS)}",
            SUITE, str(rootfs), *map(str, apt_sources()),
        ]  # fmt: skip
        log = self.work_dir / "logs" / f"{image.archive}.mmdebstrap.log"
        log.parent.mkdir(exist_ok=True)
        say(f"{image.name}: mmdebstrap {SUITE} with {', '.join(image.packages)} (log: {log})")
        with log.open("w") as output:
            bootstrapped = subprocess.run(
                command,
                check=False,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TMPDIR": str(rootfs.parent)},
            )
        if bootstrapped.returncode:
            sys.stderr.write("".join(log.read_text().splitlines(keepends=True)[-30:]))
            raise SystemExit(f"build_images: mmdebstrap failed for {image.name}; see {log}")
        say(f"{image.name}: committing the root filesystem with buildah")
        container = self.buildah("from", "--quiet", "scratch", capture=True)
        try:
            self.buildah("add", "--quiet", container, str(rootfs), "/")
            config = [f"--env={key}={value}" for key, value in image.env]
            config += [f"--cmd={json.dumps(list(image.cmd))}", f"--workingdir={image.workdir}"]
            config += [f"--port={port}" for port in image.ports]
            if image.stop_signal:
                config.append(f"--stop-signal={image.stop_signal}")
            self.buildah("config", *config, container)
            self.buildah("commit", "--quiet", "--rm", container, image.name, capture=True)
        except BaseException:
            self.buildah("rm", container, capture=True)
            raise
        finally:
            rootfs.unlink(missing_ok=True)

    def build_dockerfile(self, image: DockerfileImage) -> None:
        if not self.in_storage(image.base):
            raise SystemExit(f"build_images: {image.base.name} is not in buildah's storage; build it first")
        mounts = self.pip_mounts()
        say(f"{image.name}: buildah bud -f {image.dockerfile} --build-arg PYTHON_IMAGE={image.base.name}")
        self.buildah(
            "bud", "--isolation", "chroot", "--network", "host", "--pull=never", "--layers",
            "--build-arg", f"PYTHON_IMAGE={image.base.name}",
            *(f"--volume={source}:{target}:ro" for source, target in mounts),
            "-f", str(REPO / image.dockerfile), "-t", image.name, str(REPO),
        )  # fmt: skip

    def pip_mounts(self) -> list[tuple[str, str]]:
        """The machine's pip settings and the CA bundles they name, mounted read-only for the build only.

        The settings go in as root's home (/root, which the base has, so no mount point is left in a
        layer), holding just .config/pip/pip.conf; the bundles over the base's own bundle path."""
        settings = pip_settings(PIP_CONFIG_FILES, os.environ)
        home = self.work_dir / "pip-home"
        (home / ".config" / "pip").mkdir(parents=True, exist_ok=True)
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        (home / ".config" / "pip" / "pip.conf").write_text("[global]\n" + lines)
        bundles = [settings[key] for key in ("cert", "client-cert") if key in settings]
        return [(str(home), "/root"), *((b, b) for b in bundles if Path(b).is_file())]

    def export(self, image: DebianImage | DockerfileImage) -> None:
        """The image as an OCI archive for `ctr images import`, then its stamp: both or neither."""
        archive = self.archive(image)
        partial = archive.with_name(archive.name + ".partial")
        partial.unlink(missing_ok=True)
        # Uncompressed layers: containerd imports them without unpacking gzip.
        self.buildah(
            "push", "--quiet", "--disable-compression", image.name, f"oci-archive:{partial}:{image.name}"
        )
        partial.replace(archive)
        archive.with_name(archive.name + ".stamp").write_text(self.key(image) + "\n")


def images_dir() -> Path:
    out = subprocess.run(
        [str(REPO / "hack" / "install-tools.sh"), "images-dir"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--force", action="store_true", help="rebuild every image")
    parser.add_argument("--list", action="store_true", help="print each node image and its archive")
    args = parser.parse_args(argv)
    target = images_dir()
    if args.list:
        for image in NODE_IMAGES:
            print(f"{image.name}\t{target / image.archive}")
        return 0
    if os.geteuid() != 0:
        raise SystemExit(
            "build_images: run as root (mmdebstrap and buildah bootstrap and mount root filesystems)"
        )
    for tool in ("mmdebstrap", "buildah"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, check=False).returncode:
            raise SystemExit(
                f"build_images: {tool} is not installed; run `hack/install-tools.sh image-tools`"
            )
    work = target.parent / "image-build"
    for directory in (target, work / "tmp", work / "run", work / "storage"):
        directory.mkdir(parents=True, exist_ok=True)
    # One build at a time per cache: checkouts share the images directory and buildah's storage.
    with open(work / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        builder = Builder(images_dir=target, work_dir=work, force=args.force)
        strays = [path for path in BUILDAH_HOST_PATHS if not path.exists()]
        try:
            results = [(image, *builder.build(image)) for image in IMAGES]
        finally:
            for stray in strays:
                shutil.rmtree(stray, ignore_errors=True)
    print(f"{'image':34} {'result':7} {'seconds':>8} {'archive MB':>10}")
    for image, outcome, seconds in results:
        size = builder.archive(image).stat().st_size / 1e6
        print(f"{image.name:34} {outcome:7} {seconds:8.1f} {size:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
