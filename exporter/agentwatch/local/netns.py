"""A private network of namespaces on this machine, for multi-node tests: nothing touches the host's.

One namespace holds a bridge (the "switch"); each node gets a namespace of its own, joined to the
switch by a veth pair, with one address of a private subnet on its ``eth0``. The host's network
namespace gets no interface and no address, so every packet between nodes stays inside these
namespaces. ``close`` deletes the namespaces, and the veth pairs and the bridge go with them.

Needs root and iproute2 (``ip netns``, veth and bridge support in the kernel).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

NETNS_DIR = Path("/run/netns")
#: Namespaces this module creates are named ``aw-<id>-...``, the id being the owner's pid in hex and
#: two random hex digits: ``sweep_stale`` deletes those whose owner is gone (killed outright).
PREFIX = "aw-"
DEFAULT_SUBNET = "10.213.0.0/24"
MAX_NODES = 16
COMMAND_TIMEOUT = 30.0


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message has the command and its error output."""


def ip(*args: str, namespace: str | None = None) -> str:
    """Run ``ip [-n namespace] args``; its output, or NetnsError with the command and its stderr."""
    binary = shutil.which("ip")
    if not binary:
        raise NetnsError("ip is not installed (apt-get install iproute2)")
    argv = [binary, *(("-n", namespace) if namespace else ()), *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{' '.join(argv)}: no result within {COMMAND_TIMEOUT:.0f}s") from None
    if proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {proc.stderr.strip() or f'exit code {proc.returncode}'}")
    return proc.stdout


@dataclass(frozen=True)
class NodeNamespace:
    """One node's network namespace and its address on the private subnet."""

    name: str
    address: str
    prefixlen: int

    @property
    def path(self) -> Path:
        """What ``nsenter --net=`` takes."""
        return NETNS_DIR / self.name

    def enter(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this namespace (network only: mounts and the rest stay the host's)."""
        return [shutil.which("nsenter") or "nsenter", f"--net={self.path}", "--", *argv]


@dataclass
class PrivateNetwork:
    """A switch namespace with a bridge, and node namespaces on it; a context manager."""

    subnet: str = DEFAULT_SUBNET
    id: str = field(default_factory=lambda: f"{os.getpid():x}{secrets.token_hex(1)}")
    nodes: list[NodeNamespace] = field(default_factory=list)
    _created: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{PREFIX}{self.id}-sw"

    def start(self) -> PrivateNetwork:
        if os.geteuid() != 0:
            raise NetnsError("network namespaces need root")
        sweep_stale()
        try:
            self._add_namespace(self.switch)
            ip("link", "add", "br0", "type", "bridge", namespace=self.switch)
            ip("link", "set", "br0", "up", namespace=self.switch)
        except BaseException:
            self.close()
            raise
        return self

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._created.append(name)
        ip("link", "set", "lo", "up", namespace=name)

    def add_node(self) -> NodeNamespace:
        """A new node namespace with ``eth0`` on the bridge and the next address of the subnet."""
        index = len(self.nodes) + 1
        if index > MAX_NODES:
            raise NetnsError(f"at most {MAX_NODES} nodes")
        net = ipaddress.ip_network(self.subnet)
        node = NodeNamespace(f"{PREFIX}{self.id}-n{index}", str(net.network_address + index), net.prefixlen)
        # Both ends are made in the host namespace under names unique to this network, and moved
        # out at once; a failure in between is cleaned up with the namespaces (or here).
        inner, outer = f"aw{self.id}n{index}", f"aw{self.id}p{index}"
        try:
            self._add_namespace(node.name)
            ip("link", "add", inner, "type", "veth", "peer", "name", outer)
            ip("link", "set", inner, "netns", node.name)
            ip("link", "set", outer, "netns", self.switch)
        except BaseException:
            with contextlib.suppress(NetnsError):
                ip("link", "delete", inner)
            raise
        ip("link", "set", outer, "master", "br0", namespace=self.switch)
        ip("link", "set", outer, "up", namespace=self.switch)
        ip("link", "set", inner, "name", "eth0", namespace=node.name)
        ip("addr", "add", f"{node.address}/{node.prefixlen}", "dev", "eth0", namespace=node.name)
        ip("link", "set", "eth0", "up", namespace=node.name)
        self.nodes.append(node)
        return node

    def close(self) -> None:
        """Delete every namespace made here (their interfaces go with them); safe to call twice."""
        for name in reversed(self._created):
            with contextlib.suppress(NetnsError):
                ip("netns", "delete", name)
        self._created.clear()

    def __enter__(self) -> PrivateNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def namespaces() -> list[str]:
    """Named network namespaces on this machine."""
    with contextlib.suppress(OSError):
        return sorted(p.name for p in NETNS_DIR.iterdir())
    return []


def leftovers(network_id: str | None = None) -> list[str]:
    """Namespaces of this module still present (of one network, or of any)."""
    prefix = f"{PREFIX}{network_id}-" if network_id else PREFIX
    return [n for n in namespaces() if n.startswith(prefix)]


def _owner_alive(name: str) -> bool:
    network_id = name[len(PREFIX):].partition("-")[0]
    try:
        pid = int(network_id[:-2], 16)
    except ValueError:
        return True  # not a name of ours after all: leave it
    return Path(f"/proc/{pid}").exists()


def sweep_stale() -> list[str]:
    """Delete the namespaces of networks whose owner process is gone; the names deleted."""
    stale = [n for n in leftovers() if not _owner_alive(n)]
    for name in stale:
        with contextlib.suppress(NetnsError):
            ip("netns", "delete", name)
    return stale


def host_interfaces() -> list[str]:
    """Interface names in this process's namespace (a test checks none of ours is left there)."""
    return [line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link", "show").splitlines()
            if line.count(":") >= 2]


@contextlib.contextmanager
def private_network(nodes: int, subnet: str = DEFAULT_SUBNET) -> Iterator[PrivateNetwork]:
    """A started network with ``nodes`` node namespaces, deleted after."""
    network = PrivateNetwork(subnet=subnet).start()
    try:
        for _ in range(nodes):
            network.add_node()
        yield network
    finally:
        network.close()
