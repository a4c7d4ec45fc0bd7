"""A real multi-node Docker Swarm on one machine: private engines, each in a namespace of its own.

Each node is a ``PrivateDockerd`` started inside:

* its own network namespace on a private bridge (``agentwatch.local.netns``), so the nodes reach
  each other (raft on 2377, gossip on 7946, VXLAN on 4789) and nothing else;
* its own mount namespace with a fresh ``/run``, where it also listens on the standard
  ``/var/run/docker.sock``: a global service that mounts that path gets its own node's engine,
  as on real hosts; the owner talks to each engine through ``<base>/docker.sock`` instead;
* its own UTS namespace, so each node has its own hostname (what Swarm reports and what the
  ``node`` label of the scrape config is made from).

Node 1 initialises the swarm and is its manager; the others join as workers. ``close`` stops every
engine (``PrivateDockerd.stop``: containers, daemon, shims, files) and deletes the namespaces.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docker

from agentwatch.local.dockerd import PrivateDockerd
from agentwatch.local.netns import NodeNamespace, PrivateNetwork
from agentwatch.local.process import wait_for

SWARM_PORT = 2377
#: Overlay subnets come from here, apart from the nodes' own subnet (netns.DEFAULT_SUBNET).
OVERLAY_POOL = "10.214.0.0/16"
#: What runs between entering the node's namespaces and dockerd: its hostname and a private /run.
_NODE_SCRIPT = 'set -e; hostname "$1"; shift; mount -t tmpfs -o mode=0755,size=64m aw-run /run; exec "$@"'


def node_launcher(namespace: NodeNamespace, hostname: str) -> list[str]:
    """The command prefix that starts dockerd in ``namespace`` with ``hostname`` and its own /run."""
    unshare = shutil.which("unshare") or "unshare"
    return namespace.enter([unshare, "--mount", "--uts", "--propagation", "private", "--",
                            "sh", "-c", _NODE_SCRIPT, "sh", hostname])


class SwarmNode(PrivateDockerd):
    """One engine of the swarm: a private dockerd in its node's namespaces."""

    def __init__(self, namespace: NodeNamespace, hostname: str, start_timeout: float = 90.0) -> None:
        super().__init__(base=Path(tempfile.mkdtemp(prefix="aw-node-", dir="/tmp")), start_timeout=start_timeout,
                         launcher=node_launcher(namespace, hostname),
                         extra_args=["-H", "unix:///var/run/docker.sock"])
        self.namespace = namespace
        self.hostname = hostname

    @property
    def address(self) -> str:
        return self.namespace.address

    @property
    def docker(self) -> docker.DockerClient:
        assert self.client is not None, "the node is not started"
        return self.client


@dataclass
class PrivateSwarm:
    """``nodes`` engines joined into one swarm; a context manager. ``join_seconds`` per worker hostname."""

    size: int = 3
    network: PrivateNetwork = field(default_factory=PrivateNetwork)
    nodes: list[SwarmNode] = field(default_factory=list)
    join_seconds: dict[str, float] = field(default_factory=dict)
    #: Unix time each worker's join returned (to time its first scrape from).
    joined_at: dict[str, float] = field(default_factory=dict)

    @property
    def manager(self) -> SwarmNode:
        return self.nodes[0]

    def start(self, join: bool = True) -> PrivateSwarm:
        """Start every engine, initialise the swarm on the first; join the others unless ``join`` is False."""
        try:
            self.network.start()
            for index in range(1, self.size + 1):
                node = SwarmNode(self.network.add_node(), f"aw-node-{index}")
                self.nodes.append(node)
                node.start()
            manager = self.manager
            manager.docker.swarm.init(advertise_addr=manager.address,
                                      listen_addr=f"{manager.address}:{SWARM_PORT}",
                                      default_addr_pool=[OVERLAY_POOL], subnet_size=24)
            if join:
                for node in self.nodes[1:]:
                    self.join(node)
        except BaseException:
            self.close()
            raise
        return self

    def join(self, node: SwarmNode) -> float:
        """Join ``node`` as a worker; seconds until the manager lists it ready."""
        token = self.manager.docker.swarm.attrs["JoinTokens"]["Worker"]
        started = time.monotonic()
        node.docker.swarm.join(remote_addrs=[f"{self.manager.address}:{SWARM_PORT}"], join_token=token,
                               advertise_addr=node.address, listen_addr=f"{node.address}:{SWARM_PORT}")
        self.joined_at[node.hostname] = time.time()
        wait_for(lambda: self.ready(node.hostname), 60, interval=0.5, what=f"{node.hostname} ready in the swarm")
        self.join_seconds[node.hostname] = round(time.monotonic() - started, 2)
        return self.join_seconds[node.hostname]

    def ready(self, hostname: str) -> bool:
        return any(n.attrs["Description"]["Hostname"] == hostname and n.attrs["Status"]["State"] == "ready"
                   for n in self.manager.docker.nodes.list())

    def copy_image(self, tag: str, source: SwarmNode, targets: Sequence[SwarmNode]) -> None:
        """``docker save`` on ``source``, ``docker load`` on each target (no registry here)."""
        with tempfile.TemporaryFile(dir=source.base) as fh:
            for chunk in source.docker.images.get(tag).save(named=True):
                fh.write(chunk)
            for node in targets:
                fh.seek(0)
                node.docker.api.load_image(fh)

    def cli(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120.0) -> str:
        """The docker CLI against the manager (``docker stack deploy`` and the like); raises with its output."""
        binary = shutil.which("docker")
        if not binary:
            raise RuntimeError("the docker CLI is not installed (apt-get install docker.io)")
        proc = subprocess.run([binary, *args], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(env or {}),
                                                    "DOCKER_HOST": self.manager.host, "HOME": str(self.manager.base)},
                              cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} exited with {proc.returncode}: "
                               f"{(proc.stdout + proc.stderr).strip()[-2000:]}")
        return proc.stdout

    def close(self) -> None:
        """Remove the services, stop every engine, delete the namespaces; safe to call twice."""
        if self.nodes and self.nodes[0].client is not None:
            with contextlib.suppress(Exception):
                for service in self.manager.docker.services.list():
                    service.remove()
        for node in reversed(self.nodes):
            node.stop()
        self.nodes.clear()
        self.network.close()

    def __enter__(self) -> PrivateSwarm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def private_swarm(size: int = 3, join: bool = True) -> Iterator[PrivateSwarm]:
    """A started swarm of ``size`` nodes, torn down after (also when the body is interrupted)."""
    swarm = PrivateSwarm(size=size).start(join=join)
    try:
        yield swarm
    finally:
        swarm.close()
