"""The insight service on synthetic readings: deaths from events and polls, settling, counters, patterns.

The engine's faults here (an event stream that is off, an oom event that comes late, a crash loop
faster than the sampling) cannot be produced on demand by a real engine, so the readings are made
by hand; the real containers are in test_real_containers.py.
"""

from __future__ import annotations

import time
from dataclasses import replace

from agentwatch.insights.crashes import CAUSES, CrashSettings
from agentwatch.insights.memory import MonitorSettings
from agentwatch.insights.service import InsightService, InsightSettings
from agentwatch.insights.store import InsightStore
from agentwatch.readings import Batch, ContainerReading, EngineEvent, GroupReading, Readings

MiB = 1 << 20
T0 = float(int(time.time()) - 3600)  # recent: the store drops records older than its retention
CID = "c0ffee" * 10 + "abcd"
SETTINGS = InsightSettings(monitor=MonitorSettings(window_seconds=60, min_samples=4, min_slope=1024),
                           crash=CrashSettings(leak_min_seconds=10, repeat_count=3), settle_seconds=5.0)


def reading(ws: float | None = 10 * MiB, running: bool = True, started: float = T0, finished: float = 0.0,
            exit_code: int | None = 0, oom: bool = False, **kw) -> ContainerReading:
    return ContainerReading(id=CID, labels=("w1", "agent:local", "p", "s"), state="running" if running else "exited",
                            running=running, working_set=ws if running else None, limit=64 * MiB, started_at=started,
                            finished_at=finished, exit_code=exit_code, oom_killed=oom, restart_count=0,
                            restart_policy="no", max_retries=0, health="none", **kw)


def die(at: float, code: int) -> EngineEvent:
    return EngineEvent("die", CID, "w1", "agent:local", "p", "s", code, at)


def oom(at: float) -> EngineEvent:
    return EngineEvent("oom", CID, "w1", "agent:local", "p", "s", None, at)


def service(tmp_path=None) -> InsightService:
    return InsightService(SETTINGS, InsightStore(None))


def batch(containers=None, events=(), attached=True, at=T0) -> Batch:
    return Batch(containers=containers, containers_at=at, events=list(events), events_attached=attached)


def counts(svc: InsightService) -> dict[str, int]:
    report = svc.report
    assert report is not None
    ((_, values),) = report.crash_counts
    return dict(zip(CAUSES, values, strict=True))


def test_every_cause_starts_at_zero_from_first_sight_and_old_deaths_are_not_invented():
    svc = service()
    svc.turn(batch([reading(running=False, finished=T0 - 3600, exit_code=1)]), now=T0)
    assert counts(svc) == dict.fromkeys(CAUSES, 0)
    assert svc.store.records() == 0


def test_a_leak_seen_by_events_and_by_polling_is_recorded_once():
    svc = service()
    for i in range(12):  # 2.25 MiB/s for 22 s, 2-second samples, up to 93% of the limit
        svc.turn(batch([reading(ws=(10 + 4.5 * i) * MiB)], at=T0 + 2 * i), now=T0 + 2 * i)
    death_at = T0 + 24.5
    svc.turn(batch(events=[oom(death_at - 0.01), die(death_at, 137)], at=T0 + 25), now=T0 + 25)
    (insight,) = svc.store.recent()
    assert (insight.cause, insight.exit_code, insight.oom) == ("memory_leak", 137, True)
    assert insight.evidence["samples"] == 12
    # the poll sees the same death (FinishedAt a few ms off) and the restart; nothing new is recorded
    svc.turn(batch([reading(ws=MiB, started=T0 + 26, finished=death_at + 0.003, exit_code=137)], at=T0 + 27),
             now=T0 + 27)
    svc.turn(batch([reading(ws=MiB, started=T0 + 26, finished=death_at + 0.003, exit_code=137)], at=T0 + 40),
             now=T0 + 40)
    assert svc.store.records() == 1
    assert counts(svc)["memory_leak"] == 1 and sum(counts(svc).values()) == 1


def test_an_exit_137_waits_for_its_late_oom_event():
    svc = service()
    svc.turn(batch([reading(ws=20 * MiB)]), now=T0)
    svc.turn(batch(events=[die(T0 + 1, 137)]), now=T0 + 1.5)
    assert svc.store.records() == 0, "judged too early it would be a signal"
    svc.turn(batch(events=[oom(T0 + 0.999)]), now=T0 + 2)
    (insight,) = svc.store.recent()
    assert insight.oom and insight.cause == "memory_spike", "one sample at 31%: the end came at once"


def test_an_exit_137_without_any_oom_evidence_is_a_signal_once_settled():
    svc = service()
    svc.turn(batch([reading(ws=20 * MiB)]), now=T0)
    svc.turn(batch(events=[die(T0 + 1, 137)]), now=T0 + 1.5)
    svc.turn(batch(), now=T0 + 7)
    (insight,) = svc.store.recent()
    assert insight.cause == "signal" and insight.signal == 9 and not insight.oom
    assert "drain_before_restart" in {r["action"] for r in insight.recommendations}


def test_with_events_off_polling_alone_finds_the_deaths():
    svc = service()
    svc.turn(batch([reading(ws=20 * MiB)], attached=False), now=T0)
    svc.turn(batch([reading(running=False, finished=T0 + 3, exit_code=137, oom=True)], attached=False, at=T0 + 4),
             now=T0 + 4)
    (insight,) = svc.store.recent()
    assert insight.oom and insight.cause in ("memory_spike", "oom")
    svc.turn(batch([reading(running=False, finished=T0 + 3, exit_code=137, oom=True)], attached=False, at=T0 + 9),
             now=T0 + 9)
    assert svc.store.records() == 1


def test_a_crash_loop_faster_than_the_sampling_lends_no_run_anothers_samples():
    svc = service()
    for i in range(6):
        svc.turn(batch([reading(ws=(10 + i) * MiB)], at=T0 + i), now=T0 + i)
    svc.turn(batch([reading(ws=MiB, started=T0 + 9.5)], at=T0 + 10), now=T0 + 10)  # restarted thrice meanwhile
    svc.turn(batch(events=[die(T0 + 6.2, 2), die(T0 + 7.5, 2), die(T0 + 9.0, 2)]), now=T0 + 10.5)
    insights = sorted(svc.store.recent(), key=lambda i: i.at)
    assert [i.evidence["samples"] for i in insights] == [6, 0, 0]
    assert [p["kind"] for p in insights[-1].patterns] == ["repeated"]
    assert counts(svc)["error"] == 3


def test_a_crash_after_agents_rose_is_a_pattern():
    svc = service()
    for i, n in enumerate((2, 2, 3, 5)):
        svc.turn(Batch(groups=[GroupReading("claude-code", n, n * 500.0 * MiB)], groups_at=T0 + i * 10,
                       containers=[reading(ws=30 * MiB)], containers_at=T0 + i * 10), now=T0 + i * 10)
    svc.turn(batch(events=[oom(T0 + 31), die(T0 + 31, 137)]), now=T0 + 32)
    (insight,) = svc.store.recent()
    rise = next(p for p in insight.patterns if p["kind"] == "agents_rise")
    assert rise["count"] == 5 and "from 2 to 5" in rise["detail"]
    assert insight.evidence["agents_before"] == 2 and insight.evidence["agents_at_crash"] == 5
    assert "lower_max_concurrency" in {r["action"] for r in insight.recommendations}


def test_the_budget_is_marked_once_the_container_stays_down():
    svc = service()
    loop = replace(reading(), restart_policy="on-failure", max_retries=2)
    svc.turn(batch([loop]), now=T0)
    svc.turn(batch(events=[die(T0 + 1, 1), die(T0 + 2, 1), die(T0 + 3, 1)]), now=T0 + 3.5)
    down = replace(loop, running=False, state="exited", working_set=None, finished_at=T0 + 3.001, exit_code=1,
                   restart_count=2)
    svc.turn(batch([down], at=T0 + 4), now=T0 + 4)
    svc.turn(batch([down], at=T0 + 10), now=T0 + 10)  # the poll of that death has settled (a duplicate)
    assert svc.store.records() == 3
    latest = svc.store.recent(limit=1)[0]
    assert [p["kind"] for p in latest.patterns] == ["repeated", "budget_exhausted"]
    assert "fix_then_start" in {r["action"] for r in latest.recommendations}
    svc.turn(batch([down], at=T0 + 15), now=T0 + 15)
    assert [p["kind"] for p in svc.store.recent(limit=1)[0].patterns] == ["repeated", "budget_exhausted"]


def test_health_report_explains_scores():
    svc = service()
    for i in range(8):
        svc.turn(batch([reading(ws=(40 + 3 * i) * MiB)], at=T0 + i), now=T0 + i)
    report = svc.report
    assert report is not None
    (row,) = report.containers
    parts = {p.part: p for p in row.score.parts}
    assert row.view is not None and row.view.threshold == "oom_imminent"  # 61 MiB of 64, rising 3 MiB/s
    assert parts["memory"].penalty == 40 and parts["trend"].penalty == 15
    assert row.score.score == 100 - 55
    assert [p.part for p in report.host.parts] == ["memory", "containers", "crashes", "leaks"]


def test_the_board_hands_over_each_batch_once_and_bounds_events():
    board = Readings(max_events=3)
    board.put_containers([reading()], ["label_x"], T0)
    for i in range(5):
        board.put_event(die(T0 + i, 1))
    first = board.take()
    assert first.containers is not None and first.extra_label_names == ("label_x",)
    assert [e.at for e in first.events] == [T0 + 2, T0 + 3, T0 + 4] and first.events_dropped == 2
    second = board.take()
    assert second.containers is None and second.events == [] and second.extra_label_names == ("label_x",)
