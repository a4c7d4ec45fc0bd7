"""The compose stack's images, built here with no image registry at all.

No registry is reachable from the machines the tests run on, so the images the compose file names
are made locally and passed through its ``*_IMAGE`` variables:

* a Debian root filesystem from ``debootstrap`` (packages from the apt mirror this host is
  configured with), made an image with ``docker import``: one with Python for agentwatch, one with
  Debian's ``prometheus`` and ``prometheus-alertmanager`` for the two upstream services;
* agentwatch's own image, built from ``compose/Dockerfile`` on that base with the network off,
  from a wheelhouse that ``pip wheel`` fills on the host.

Root filesystems, the wheelhouse and the built agentwatch image are cached as files under
``/var/tmp/agentwatch-images`` (``AGENTWATCH_IMAGE_CACHE``), keyed by what went into them, so only
the first run on a machine pays for debootstrap and the build. Building needs root and the
``debootstrap`` package (and PyPI, once, for the wheels).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from agentwatch import __version__

DEFAULT_CACHE = Path(os.environ.get("AGENTWATCH_IMAGE_CACHE") or "/var/tmp/agentwatch-images")
SUITE = "bookworm"
#: Bump when ``_prepare`` changes what goes into a root filesystem, to invalidate the cache.
ROOTFS_FORMAT = 1
#: Bounds on the slow steps; a hung mirror fails the build instead of hanging it.
DEBOOTSTRAP_TIMEOUT = 1200.0
PIP_TIMEOUT = 900.0
#: The user the upstream Prometheus and Alertmanager images run as (nobody:nogroup).
NOBODY = 65534


class ImageBuildError(RuntimeError):
    """A step of the image build failed; the message says which and how."""


@dataclass(frozen=True)
class RootfsSpec:
    """One debootstrapped root filesystem: the packages in it and the directories it needs."""

    name: str
    packages: tuple[str, ...]
    #: Directories created owned by nobody:nogroup (the data directories of the upstream images).
    nobody_dirs: tuple[str, ...] = ()
    #: Symlinks ``link -> target`` made after the install (upstream command names, busybox applets).
    links: tuple[tuple[str, str], ...] = ()
    #: Paths removed after the install: what the images never run (and data that triples their size).
    remove: tuple[str, ...] = ()

    def key(self) -> str:
        """Cache key: whatever changes the tarball's content."""
        text = json.dumps([ROOTFS_FORMAT, SUITE, sorted(self.packages), self.nobody_dirs, self.links, self.remove])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


#: Busybox gives the images ``wget``, which the compose healthchecks use (as in the upstream images).
_WGET = ("usr/local/bin/wget", "/bin/busybox")
PYTHON_ROOTFS = RootfsSpec("python", ("python3", "python3-venv", "busybox"), links=(_WGET,))
MONITORING_ROOTFS = RootfsSpec(
    "monitoring", ("busybox", "prometheus", "prometheus-alertmanager"),
    nobody_dirs=("prometheus", "alertmanager"),
    links=(_WGET, ("usr/local/bin/alertmanager", "/usr/bin/prometheus-alertmanager")),
    # The command-line tools, and moment-timezone's raw data (220 MB the web UI does not load).
    remove=("usr/bin/promtool", "usr/bin/amtool", "usr/share/javascript/moment-timezone/data"))

#: Local tags. The versions are the Debian bookworm packages' (the compose defaults pin the same).
PYTHON_BASE = "agentwatch-local/python:bookworm"
PROMETHEUS = "agentwatch-local/prometheus:2.42.0"
ALERTMANAGER = "agentwatch-local/alertmanager:0.25.0"
AGENTWATCH = f"agentwatch:{__version__}"

#: What the upstream images set, applied at import (a Dockerfile would copy the layer per step on vfs).
PROMETHEUS_CHANGES = (f"USER {NOBODY}:{NOBODY}", "WORKDIR /prometheus", 'ENTRYPOINT ["/usr/bin/prometheus"]',
                      'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]')
ALERTMANAGER_CHANGES = (f"USER {NOBODY}:{NOBODY}", "WORKDIR /alertmanager",
                        'ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]',
                        'CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]')


@dataclass
class StackImages:
    """The tags built, the figures measured while building them, and the variables for compose."""

    agentwatch: str = AGENTWATCH
    prometheus: str = PROMETHEUS
    alertmanager: str = ALERTMANAGER
    #: step -> seconds (``rootfs:python``, ``wheelhouse``, ``import:python``, ``build:agentwatch``...).
    seconds: dict[str, float] = field(default_factory=dict)
    #: step -> whether it came from the file cache.
    cached: dict[str, bool] = field(default_factory=dict)
    #: tag -> size in bytes as the engine reports it.
    sizes: dict[str, int] = field(default_factory=dict)

    def compose_env(self) -> dict[str, str]:
        return {"AGENTWATCH_IMAGE": self.agentwatch, "PROMETHEUS_IMAGE": self.prometheus,
                "ALERTMANAGER_IMAGE": self.alertmanager}


# -- the apt mirror --------------------------------------------------------------------------------

def _deb822_uris(text: str) -> Iterator[tuple[str, list[str]]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split()


def _one_line_uris(text: str) -> Iterator[tuple[str, list[str]]]:
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], [words[2]]


def apt_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = SUITE) -> str:
    """The Debian mirror this host installs ``suite`` from (``AGENTWATCH_DEBIAN_MIRROR`` wins)."""
    forced = os.environ.get("AGENTWATCH_DEBIAN_MIRROR", "").strip()
    if forced:
        return forced
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list")),
             *sorted((apt_dir / "sources.list.d").glob("*.sources"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        entries = _deb822_uris(text) if path.suffix == ".sources" else _one_line_uris(text)
        for uri, suites in entries:
            if suite in suites and uri.startswith(("http://", "https://", "file:/")):
                return uri
    raise ImageBuildError(f"no apt source for {suite} in {apt_dir}/sources.list*: "
                          "set AGENTWATCH_DEBIAN_MIRROR to a Debian mirror URL")


# -- cached files ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One builder per cache directory at a time (two test sessions would race on the same files)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(argv: list[str], what: str, timeout: float, **kwargs: Any) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    except FileNotFoundError:
        raise ImageBuildError(f"{what}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ImageBuildError(f"{what}: no result within {timeout:.0f}s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise ImageBuildError(f"{what} failed with exit code {proc.returncode}:\n{tail}")


def _prepare(root: Path, spec: RootfsSpec) -> None:
    """Slim the tree and add what the images need; runs on the host, not in a chroot."""
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                "usr/share/info", "usr/share/locale", "var/log"):
        target = root / sub
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                elif child.name != "lock":
                    child.unlink()
    for name in spec.remove:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for name in spec.nobody_dirs:
        path = root / name
        path.mkdir(mode=0o755, exist_ok=True)
        os.chown(path, NOBODY, NOBODY)
    for link, points_to in spec.links:
        path = root / link
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.symlink_to(points_to)


def rootfs_tarball(spec: RootfsSpec, cache: Path = DEFAULT_CACHE, mirror: str | None = None) -> tuple[Path, bool]:
    """The root filesystem of ``spec`` as a tarball in ``cache``, and whether it was cached already."""
    tarball = cache / f"rootfs-{spec.name}-{SUITE}-{spec.key()}.tar"
    with _locked(cache):
        if tarball.exists():
            return tarball, True
        if os.geteuid() != 0:
            raise ImageBuildError("debootstrap needs root")
        work = cache / f"build-{spec.name}-{os.getpid()}"
        debs = cache / "debs"
        debs.mkdir(exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        try:
            _run(["debootstrap", "--variant=minbase", f"--include={','.join(spec.packages)}",
                  f"--cache-dir={debs}", SUITE, str(work), mirror or apt_mirror()],
                 f"debootstrap {spec.name}", DEBOOTSTRAP_TIMEOUT)
            _prepare(work, spec)
            partial = tarball.with_suffix(".partial")
            _run(["tar", "--numeric-owner", "--xattrs", "-C", str(work), "--exclude=./dev/*", "--exclude=./proc/*",
                  "--exclude=./sys/*", "-cf", str(partial), "."], f"tar {spec.name}", 600)
            partial.rename(tarball)
            _drop_stale(cache, f"rootfs-{spec.name}-{SUITE}-*.tar", keep=tarball)
        finally:
            _unmount_below(work)
            shutil.rmtree(work, ignore_errors=True)
        return tarball, False


def _drop_stale(cache: Path, pattern: str, keep: Path) -> None:
    """Remove what an older spec left in the cache, so it does not grow with every change."""
    for path in cache.glob(pattern):
        if path != keep:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _unmount_below(path: Path) -> None:
    """debootstrap mounts /proc and /sys in the target; an interrupted run can leave them mounted."""
    prefix = str(path.resolve()) + "/"
    with contextlib.suppress(OSError):
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def build_requirements(root: Path) -> list[str]:
    """What the offline build installs: the project's dependencies and its build backend."""
    project = tomllib.loads((root / "pyproject.toml").read_text())
    return [*project["build-system"]["requires"], *project["project"]["dependencies"]]


def wheelhouse(root: Path, cache: Path = DEFAULT_CACHE) -> tuple[Path, bool]:
    """Wheels for every requirement (``pip wheel`` on the host), and whether they were cached."""
    requirements = build_requirements(root)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    key = hashlib.sha256(json.dumps([tag, requirements]).encode()).hexdigest()[:16]
    target = cache / f"wheelhouse-{tag}-{key}"
    with _locked(cache):
        if (target / ".complete").exists():
            return target, True
        partial = cache / f"wheelhouse-partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            _run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--quiet",
                  "--wheel-dir", str(partial), *requirements], "pip wheel", PIP_TIMEOUT)
            (partial / ".complete").write_text("\n".join(requirements) + "\n")
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
            _drop_stale(cache, f"wheelhouse-{tag}-*", keep=target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target, False


# -- images ----------------------------------------------------------------------------------------

def _source_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = Path(info.name).parts
    if any(p == "__pycache__" or p.endswith((".egg-info", ".pyc")) for p in parts):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_context(root: Path, wheels: Path) -> bytes:
    """The build context ``compose/Dockerfile`` expects, with the wheelhouse in place."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("pyproject.toml", "README.md", "compose/Dockerfile", "exporter/agentwatch"):
            tar.add(root / name, arcname=name, filter=_source_filter)
        tar.add(wheels, arcname="compose/wheelhouse", filter=_source_filter)
    return buf.getvalue()


def context_digest(context: bytes) -> str:
    """A digest of the context's names and contents (not its mtimes): what the built image depends on."""
    digest = hashlib.sha256()
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        for member in tar:
            digest.update(f"{member.name}\0{member.mode:o}\0{member.linkname}\0".encode())
            data = tar.extractfile(member) if member.isfile() else None
            if data is not None:
                digest.update(data.read())
    return digest.hexdigest()


def _build(client: docker.DockerClient, context: bytes, tag: str, dockerfile: str = "Dockerfile",
           buildargs: dict[str, str] | None = None, timeout: float = 900.0) -> None:
    """``docker build`` with the network off; raises with the build's last lines on a failure."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    stream = client.api.build(fileobj=io.BytesIO(context), custom_context=True, dockerfile=dockerfile, tag=tag,
                              buildargs=buildargs or {}, network_mode="none", rm=True, forcerm=True,
                              decode=True, timeout=timeout)
    for chunk in stream:
        if "stream" in chunk:
            lines.extend(chunk["stream"].splitlines())
        if "error" in chunk:
            tail = "\n".join(lines[-15:])
            raise ImageBuildError(f"docker build {tag}: {chunk['error'].strip()}\n{tail}")
        if time.monotonic() > deadline:
            raise ImageBuildError(f"docker build {tag}: no result within {timeout:.0f}s")


def _import(client: docker.DockerClient, tarball: Path, tag: str, changes: tuple[str, ...] = ()) -> None:
    repository, _, version = tag.rpartition(":")
    client.api.import_image_from_file(str(tarball), repository=repository, tag=version, changes=list(changes))


def _timed(images: StackImages, step: str) -> contextlib.AbstractContextManager[None]:
    @contextlib.contextmanager
    def timer() -> Iterator[None]:
        start = time.monotonic()
        yield
        images.seconds[step] = round(time.monotonic() - start, 1)
    return timer()


def build_agentwatch(client: docker.DockerClient, context: bytes, tag: str, cache: Path = DEFAULT_CACHE,
                     reuse: bool = True) -> bool:
    """Build ``compose/Dockerfile`` offline on the local base; whether a saved build was loaded instead.

    The image is saved in ``cache`` under a digest of its whole input (the context, the Dockerfile,
    the wheels, the base's package list), so an unchanged tree loads it in seconds instead of
    building it again; ``reuse=False`` always builds.
    """
    key = hashlib.sha256(f"{context_digest(context)} {PYTHON_ROOTFS.key()}".encode()).hexdigest()[:16]
    saved = cache / f"image-agentwatch-{key}.tar"
    with _locked(cache):
        if reuse and saved.exists():
            with open(saved, "rb") as fh:
                client.api.load_image(fh)
            return True
        _build(client, context, tag, dockerfile="compose/Dockerfile",
               buildargs={"BASE_IMAGE": PYTHON_BASE, "PIP_OFFLINE": "1"})
        partial = saved.with_suffix(".partial")
        with open(partial, "wb") as fh:
            for chunk in client.images.get(tag).save(named=True):
                fh.write(chunk)
        partial.rename(saved)
        _drop_stale(cache, "image-agentwatch-*.tar", keep=saved)
        return False


def build_stack_images(client: docker.DockerClient, root: Path, cache: Path = DEFAULT_CACHE,
                       reuse: bool = True) -> StackImages:
    """Every image the compose stack runs (Grafana aside), tagged in ``client``'s engine.

    ``reuse=False`` builds agentwatch's image from its Dockerfile even when a saved build matches.
    """
    images = StackImages()
    tarballs: dict[str, Path] = {}
    for spec in (PYTHON_ROOTFS, MONITORING_ROOTFS):
        with _timed(images, f"rootfs:{spec.name}"):
            tarballs[spec.name], images.cached[f"rootfs:{spec.name}"] = rootfs_tarball(spec, cache)
    with _timed(images, "import"):
        _import(client, tarballs[PYTHON_ROOTFS.name], PYTHON_BASE)
        _import(client, tarballs[MONITORING_ROOTFS.name], images.prometheus, PROMETHEUS_CHANGES)
        _import(client, tarballs[MONITORING_ROOTFS.name], images.alertmanager, ALERTMANAGER_CHANGES)
    with _timed(images, "wheelhouse"):
        wheels, images.cached["wheelhouse"] = wheelhouse(root, cache)
    with _timed(images, "build:agentwatch"):
        images.cached["build:agentwatch"] = build_agentwatch(client, build_context(root, wheels), images.agentwatch,
                                                             cache, reuse)
    for tag in (PYTHON_BASE, images.agentwatch, images.prometheus, images.alertmanager):
        images.sizes[tag] = int(client.images.get(tag).attrs.get("Size") or 0)
    return images
