"""A multi-node swarm leaves nothing behind: not after a normal end, not after SIGTERM mid-way.

The owner here is a separate process (as a CI run or a developer's session would be) that starts a
two-node swarm and waits; it is stopped with SIGTERM. Every namespace, engine (daemon, containerd,
directory) and interface it made must be gone, and the host's namespace must never have held one
of the network's interfaces or addresses.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.local.netns import PrivateNetwork, host_interfaces, leftovers, sweep_stale
from agentwatch.local.process import wait_for

pytestmark = pytest.mark.docker

OWNER = """
import time
from agentwatch.local.signals import raise_on_stop_signals
from agentwatch.local.swarm import private_swarm

raise_on_stop_signals()
with private_swarm(2) as swarm:
    nodes = [n["Description"]["Hostname"] for n in swarm.manager.docker.api.nodes()]
    print(swarm.network.id, ",".join(sorted(nodes)), *(str(n.base) for n in swarm.nodes), flush=True)
    time.sleep(300)
"""


def processes_naming(path: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if path.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def host_addresses() -> str:
    return subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout


def test_sigterm_mid_way_removes_namespaces_engines_and_interfaces():
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True, cwd="/")
    try:
        line = owner.stdout.readline() if owner.stdout else ""
        assert line, f"the owner did not bring the swarm up: {owner.stderr.read() if owner.stderr else ''}"
        network_id, nodes, *bases = line.split()
        assert nodes == "aw-node-1,aw-node-2", "two nodes joined, each with its own hostname"
        assert len(leftovers(network_id)) == 3, "a switch and two node namespaces"
        assert all(processes_naming(base) for base in bases), "both engines run"
        assert "10.213." not in host_addresses(), "the nodes' addresses exist only inside their namespaces"
        owner.send_signal(signal.SIGTERM)
        assert owner.wait(timeout=120) != 0
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    assert not leftovers(network_id)
    assert not [i for i in host_interfaces() if i.startswith(f"aw{network_id}")]
    for base in bases:
        assert not Path(base).exists(), f"{base} is left"
        wait_for(lambda b=base: not processes_naming(b), 30, what=f"no process of {base}")


def test_namespaces_of_an_owner_killed_outright_are_swept():
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    network = PrivateNetwork(id=f"{owner.pid:x}ab")
    try:
        network.start()
        network.add_node()
        owner.kill()
        owner.wait()
        assert leftovers(network.id), "a dead owner's namespaces stay until swept"
        assert set(sweep_stale()) >= {f"aw-{network.id}-sw", f"aw-{network.id}-n1"}
        assert not leftovers(network.id)
    finally:
        network.close()
        if owner.poll() is None:
            owner.kill()
