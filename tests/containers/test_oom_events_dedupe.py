"""One OOM kill is one OOM event, even when the engine sends two (issue 12: "2.19 OOM kill(s)").

The events are the shapes the engine sent, replayed into the collector: a real engine sends the
duplicate only sometimes (a child killed in a running container: two ``oom`` events 3-5 ms apart,
measured on dockerd 20.10), so the fault is replayed rather than waited for. The end-to-end test
(tests/e2e/test_incidents.py) checks the same count on a real engine and in the alert text.
"""

from __future__ import annotations

from agentwatch.collectors.docker_events import DockerEventsCollector
from agentwatch.config import DockerConfig

CID = "c" * 64
SECOND = 1_000_000_000


def _event(action: str, nanos: int, **attrs: str) -> dict[str, object]:
    return {"Type": "container", "Action": action, "status": action, "id": CID, "time": nanos // SECOND,
            "timeNano": nanos, "Actor": {"ID": CID, "Attributes": {"image": "agent:local", "name": "agent-1", **attrs}}}


def _ooms(collector: DockerEventsCollector) -> int:
    return collector._counts[("agent-1", "")].ooms


def test_two_oom_events_of_one_kill_count_once() -> None:
    collector = DockerEventsCollector(DockerConfig())
    t = 1_700_000_000 * SECOND
    collector._handle(_event("start", t))
    collector._handle(_event("oom", t + 2 * SECOND))
    collector._handle(_event("oom", t + 2 * SECOND + 4_000_000))  # the same kill, 4 ms later
    assert _ooms(collector) == 1
    collector._handle(_event("oom", t + 4 * SECOND))  # a second child killed 2 s later: a new kill
    assert _ooms(collector) == 2


def test_a_restart_loop_counts_every_kill_however_close() -> None:
    """Under on-failure the engine restarts at once: kills 0.6 s apart, each after a start, are all kills."""
    collector = DockerEventsCollector(DockerConfig())
    t = 1_700_000_000 * SECOND
    for i in range(4):
        run = t + i * 600_000_000
        collector._handle(_event("start", run))
        collector._handle(_event("oom", run + 30_000_000))
        collector._handle(_event("die", run + 50_000_000, exitCode="137"))
    assert _ooms(collector) == 4
    assert collector._counts[("agent-1", "")].dies == {"137": 4}
