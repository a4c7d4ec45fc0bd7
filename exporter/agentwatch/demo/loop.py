"""``agentwatch demo``: the whole monitoring loop on one machine, and a scripted incident walked through.

It starts every part on loopback (``agentwatch.demo.stack``), prints the URLs, then plays two
incidents and prints each step as it is observed, stamped with the time since the start:

1. a container leaks memory past 80% of its limit (memory alert pending, firing, delivered, the
   scaler's decision), is OOM-killed and crash-loops under ``on-failure`` (OOM and crash-loop
   alerts, delivered, decided); the demo applies the scaler's dry-run resize by hand;
2. a burst of agents fills the agent server's client pool (pool alert, delivered, decided);
3. recovery: every alert that fired resolves and the resolved notifications arrive.

Exit codes: 0 the walkthrough completed, or ``--duration`` elapsed; 1 a step was not observed
within its bound (the output says which); 2 the demo could not start (one line says why);
128+N stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP). Every process, container and
file the demo made is gone when it exits, in every case.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from agentwatch.demo import incident
from agentwatch.demo.receivers import Message
from agentwatch.demo.stack import GROUP_INTERVAL, GROUP_WAIT, INTERVAL, DemoStack, StackError
from agentwatch.demo.timeline import DurationReached, Event, Timeline
from agentwatch.demo.watch import Watcher
from agentwatch.local import signals

T = TypeVar("T")
MiB = 1024 * 1024
MEMORY_ALERTS = frozenset({"AgentContainerMemoryNearLimit", "AgentContainerMemoryCritical"})
OOM_ALERTS = frozenset({"AgentContainerOOMKilled"})
LOOP_ALERTS = frozenset({"AgentContainerCrashLooping"})
RESTART_ALERTS = frozenset({"AgentContainerCrashLooping", "AgentContainerRetriesExhausted"})
POOL_ALERTS = frozenset({"AgentPoolExhausted"})
STEADY_SECONDS = 15.0
RECOVERY_BUDGET = 240.0
POOL_TITLE = "agent server pool exhausted"


class StepMissed(Exception):
    """A required step was not observed in time; the rest of its incident is skipped."""


@dataclass
class Incident:
    """One incident's steps and when each was observed (monotonic)."""

    title: str
    started: float = field(default_factory=time.monotonic)
    steps: list[tuple[str, float]] = field(default_factory=list)

    def mark(self, label: str, at: float) -> None:
        self.steps.append((label, at))

    def summary(self) -> str:
        steps = sorted(self.steps, key=lambda step: step[1])
        return ", ".join(f"{label} +{at - self.started:.1f}s" for label, at in steps) or "no step observed"


class Walkthrough:
    """The scripted incidents, each step awaited (bounded) on what the watchers and receivers saw."""

    def __init__(self, stack: DemoStack, timeline: Timeline) -> None:
        self.stack = stack
        self.timeline = timeline
        self.missed: list[str] = []
        self.incidents: list[Incident] = []
        self.delivery = stack.alertmanager is not None

    def say(self, text: str) -> None:
        self.timeline.say("demo", text)

    # --- waiting ---------------------------------------------------------------------------------------
    def require(self, inc: Incident, label: str, what: str, check: Callable[[], T | None], timeout: float) -> T:
        result = self.timeline.wait(what, check, timeout)
        if not result:
            self.missed.append(f"{inc.title}: {what}")
            self.say(f"MISSED: {what} was not observed within {timeout:.0f}s")
            raise StepMissed(what)
        inc.mark(label, result.at if isinstance(result, Event) else time.monotonic())
        return result

    def alert(self, kind: str, names: frozenset[str], after: float) -> Callable[[], Event | None]:
        return lambda: self.timeline.find(
            lambda e: e.source == "prometheus" and e.kind == kind and e.alertname in names, after)

    def delivered(self, status: str, names: frozenset[str], after: float) -> Callable[[], Event | None]:
        return lambda: self.timeline.find(
            lambda e: e.kind == "delivered" and e.data.get("status") == status and e.alertname in names, after)

    def decision(self, names: frozenset[str], after: float, triggers: tuple[str, ...] = ("firing",)
                 ) -> Callable[[], Event | None]:
        return lambda: self.timeline.find(
            lambda e: e.kind == "decision" and e.alertname in names and e.data.get("trigger") in triggers, after)

    def query(self, expr: str) -> float | None:
        assert self.stack.prometheus is not None
        try:
            result = self.stack.prometheus.query(expr)
        except (AssertionError, OSError, ValueError):
            return None
        return float(result[0]["value"][1]) if result else None

    # --- the incidents ---------------------------------------------------------------------------------
    def run(self) -> None:
        if self.stack.engine is not None:
            self._attempt(self.container_incident)
        else:
            self.say("Incident 1 (a container leaking memory) needs containers: skipped")
        self._attempt(self.pool_incident)
        self._attempt(self.recovery)
        self.timeline.plain("\nSummary (time since each incident's first failure):")
        for inc in self.incidents:
            self.timeline.plain(textwrap.fill(f"{inc.title}: {inc.summary()}", 110, initial_indent="  ",
                                              subsequent_indent="      "))
        if self.missed:
            self.timeline.plain(textwrap.fill("Not observed in time: " + "; ".join(self.missed), 110,
                                              subsequent_indent="      "))

    def _attempt(self, play: Callable[[], None]) -> None:
        try:
            play()
        except StepMissed:
            pass
        except incident.IncidentError as exc:
            self.missed.append(str(exc))
            self.say(f"MISSED: {exc}")

    def container_incident(self) -> None:
        assert self.stack.engine is not None and self.stack.engine.client is not None
        self.timeline.plain("")
        self.say(f"Incident 1: {incident.LEAKY} (memory limit {incident.LIMIT // MiB} MiB, restart on-failure:"
                 f"{incident.RETRIES}) starts leaking memory. It holds at about 85% of its limit until the alert "
                 "has been handled, then goes on past the limit.")
        container = incident.start_containers(self.stack.engine.client)
        inc = Incident("container memory leak, OOM kill, crash loop")
        self.incidents.append(inc)
        ratio_expr = f'agentwatch_container_memory_working_set_ratio{{container="{incident.LEAKY}"}}'
        ratio = self.require(inc, "past 80%", f"the working set of {incident.LEAKY} past 80% of its limit",
                             lambda: (r if (r := self.query(ratio_expr)) is not None and r > 0.8 else None), 90)
        self.timeline.say("prometheus", f"working set of {incident.LEAKY} at {ratio:.0%} of its memory limit")
        t0 = inc.started  # the alert may go pending before the ratio query above sees it
        self.require(inc, "pending", "the memory alert pending", self.alert("pending", MEMORY_ALERTS, t0), 60)
        self.require(inc, "firing", "the memory alert firing", self.alert("firing", MEMORY_ALERTS, t0), 90)
        memory_decision: Event | None = None
        if self.delivery:
            self.require(inc, "delivered", "the memory alert delivered to a chat receiver",
                         self.delivered("firing", MEMORY_ALERTS, t0), 60)
            memory_decision = self.require(inc, "scaler decided", "the scaler's decision on the memory alert",
                                           self.decision(MEMORY_ALERTS, t0), 60)
        self.say(f"The leak goes on past the limit of {incident.LEAKY}.")
        incident.let_it_leak(container)
        t1 = time.monotonic()
        self.require(inc, "OOM-killed", f"the kernel OOM-killing {incident.LEAKY}", lambda: self._oom_killed(container),
                     60)
        self.timeline.say("engine", f"{incident.LEAKY} OOM-killed (exit 137); the engine restarts it (on-failure)")
        restarts = self.require(inc, "crash loop", f"{incident.LEAKY} restarting in a loop (3 restarts)",
                                lambda: self._restarts(container, 3), 90)
        self.timeline.say("engine", f"{incident.LEAKY} restarted {restarts} times: a crash loop")
        self.require(inc, "OOM alert firing", "AgentContainerOOMKilled firing",
                     self.alert("firing", OOM_ALERTS, t1), 60)
        self.require(inc, "crash-loop alert firing", "AgentContainerCrashLooping firing",
                     self.alert("firing", LOOP_ALERTS, t1), 120)
        if self.delivery:
            self.require(inc, "delivered", "the crash-loop alert delivered to a chat receiver",
                         self.delivered("firing", LOOP_ALERTS, t1), 60)
            self.require(inc, "scaler decided", "the scaler's decision on the crash loop",
                         self.decision(RESTART_ALERTS, t1), 60)
        limit = self._new_limit(memory_decision)
        self.say(f"The scaler runs in dry run, so the demo applies its memory decision by hand: the limit of "
                 f"{incident.LEAKY} goes from {incident.LIMIT // MiB} MiB to {limit // MiB} MiB, and it is started.")
        incident.raise_limit(container, limit)
        inc.mark("fix applied", time.monotonic())
        self.require(inc, "steady", f"{incident.LEAKY} running {STEADY_SECONDS:.0f}s without a restart",
                     self._steady(container), 90)
        now_ratio = self.query(ratio_expr)
        shown = f" at {now_ratio:.0%} of its new limit" if now_ratio is not None else ""
        self.timeline.say("engine", f"{incident.LEAKY} has run {STEADY_SECONDS:.0f}s without a restart{shown}")

    def _oom_killed(self, container: Any) -> bool:
        state = incident.inspect(container)
        return state is not None and (state.oom_killed or state.exit_code == 137 or state.restarts > 0)

    def _restarts(self, container: Any, at_least: int) -> int | None:
        state = incident.inspect(container)
        return state.restarts if state is not None and state.restarts >= at_least else None

    def _new_limit(self, decision: Event | None) -> int:
        desired = decision.data.get("desired") if decision is not None else None
        if isinstance(desired, int | float) and desired > incident.LIMIT:
            return int(desired)
        return incident.LIMIT * 2

    def _steady(self, container: Any) -> Callable[[], bool]:
        since: list[float] = []
        seen: list[int] = []

        def check() -> bool:
            state = incident.inspect(container)
            if state is None or state.status != "running" or (seen and state.restarts != seen[0]):
                since.clear()
                seen.clear()
                return False
            if not since:
                since.append(time.monotonic())
                seen.append(state.restarts)
            return time.monotonic() - since[0] >= STEADY_SECONDS
        return check

    def pool_incident(self) -> None:
        agents = self.stack.agents
        assert agents is not None
        self.timeline.plain("")
        self.say(f"Incident {2 if self.stack.engine else 1}: a burst of {len(incident.BURST_TOOLS)} agents, each "
                 f"needing a client of its own tool, hits the agent server, whose MCP client pool holds "
                 f"{incident.POOL_SIZE}. Each agent runs {incident.BURST_SECONDS}s.")
        inc = Incident(POOL_TITLE)
        self.incidents.append(inc)
        try:
            started = incident.start_burst(agents)
        except OSError as exc:
            raise incident.IncidentError(f"cannot start the burst of agents: {exc}") from None
        self.timeline.say("agents", f"{started} agents accepted")

        def full() -> dict[str, int] | None:
            s = incident.pool_stats(agents)
            return s if s and s.get("waiting", 0) > 0 and s.get("in_use", 0) >= s.get("max_size", 1) else None

        stats = self.require(inc, "pool full", "the pool full with agents waiting", full, 30)
        self.timeline.say("agents", f"pool mcp: {stats.get('in_use')}/{stats.get('max_size')} clients in use, "
                                    f"{stats.get('waiting')} agents waiting")
        t0 = inc.started
        self.require(inc, "pending", "AgentPoolExhausted pending", self.alert("pending", POOL_ALERTS, t0), 60)
        self.require(inc, "firing", "AgentPoolExhausted firing", self.alert("firing", POOL_ALERTS, t0), 90)
        if not self.delivery:
            return
        self.require(inc, "delivered", "the pool alert delivered to a chat receiver",
                     self.delivered("firing", POOL_ALERTS, t0), 60)
        decision = self.require(inc, "scaler decided", "the scaler's decision on the pool alert",
                                self.decision(POOL_ALERTS, t0), 60)
        desired, current = decision.data.get("desired"), decision.data.get("current")
        if decision.data.get("outcome") == "act" and isinstance(desired, int | float):
            self.say(f"The demo applies the scaler's decision by hand: maxConcurrency {current:g} -> {desired:g}.")
            if incident.set_concurrency(agents, int(desired)):
                inc.mark("fix applied", time.monotonic())
                self.timeline.say("agents", f"maxConcurrency is now {desired:g}")

    def recovery(self) -> None:
        """Every alert that fired resolves, and its resolved notification arrives; each counted in its incident."""
        fired: dict[str, Event] = {}
        for e in self.timeline.events():
            if e.source == "prometheus" and e.kind == "firing":
                fired.setdefault(e.alertname, e)
        if not fired or not self.incidents:
            return
        self.timeline.plain("")
        self.say("Recovery: the leak is fixed and the burst is draining; every alert that fired should resolve: "
                 + ", ".join(sorted(fired)) + ".")
        budget_end = time.monotonic() + RECOVERY_BUDGET
        for name, first in sorted(fired.items(), key=lambda item: item[1].at):
            inc = self._incident_at(first.at)
            try:
                self.require(inc, f"{name} resolved", f"{name} resolved",
                             self.alert("resolved", frozenset({name}), first.at),
                             max(5.0, budget_end - time.monotonic()))
                if self.delivery:
                    self.require(inc, "notified", f"the resolved notification of {name}",
                                 self.delivered("resolved", frozenset({name}), first.at),
                                 min(60.0, max(5.0, budget_end - time.monotonic())))
            except StepMissed:
                continue
        pool = next((i for i in self.incidents if i.title == POOL_TITLE), None)
        if pool is not None:
            self._pool_reverse(pool)

    def _incident_at(self, at: float) -> Incident:
        """The incident under way at ``at`` (the last one started before it)."""
        under_way = [i for i in self.incidents if i.started <= at]
        return under_way[-1] if under_way else self.incidents[0]

    def _pool_reverse(self, inc: Incident) -> None:
        """The scaler's reverse of the pool decision, once the alert has stayed resolved: optional."""
        agents = self.stack.agents
        if not self.delivery or agents is None:
            return
        first = self.timeline.find(lambda e: e.kind == "decision" and e.alertname in POOL_ALERTS)
        if first is None:
            return
        reverse = self.timeline.wait("the scaler's reverse of the pool decision",
                                     self.decision(POOL_ALERTS, first.at, ("reverse",)), 45)
        if reverse is None:
            self.say("(no reverse decision from the scaler yet)")
            return
        inc.mark("scaler reversed", reverse.at)
        desired = reverse.data.get("desired")
        if reverse.data.get("outcome") == "act" and isinstance(desired, int | float) \
                and incident.set_concurrency(agents, int(desired)):
            self.timeline.say("agents", f"maxConcurrency restored to {desired:g} by hand "
                                        "(the scaler's dry-run reverse)")


# --- the command ---------------------------------------------------------------------------------------

def show_message(timeline: Timeline) -> Callable[[Message], None]:
    def show(message: Message) -> None:
        timeline.add(Event(message.at, message.channel, "delivered", message.alertname,
                           data={"status": message.status, "room": message.room}))
        first = next((line for line in message.text.splitlines() if line.strip()), "")
        room = f"{message.room}  " if message.room else ""
        timeline.say(message.channel, f"{room}{message.title or '(no title)'}" + (f"\n{first}" if first else ""),
                     message.at)
    return show


def print_header(stack: DemoStack, timeline: Timeline, keep: bool) -> None:
    width = max(len(name) for name, _ in stack.urls())
    timeline.plain("")
    for name, url in stack.urls():
        timeline.plain(f"  {name:<{width}}  {url}")
    if stack.rules is not None:
        changed = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in stack.rules.changed.items())
        timeline.plain(f"  rules: the shipped ones from {stack.rules.source}, with demo durations: {changed or 'none'}")
    if stack.alertmanager is not None:
        timeline.plain(f"  Alertmanager: the shipped routes and receivers (render-alertmanager), "
                       f"group_wait {GROUP_WAIT}, group_interval {GROUP_INTERVAL}; "
                       f"scrape and evaluation every {INTERVAL}")
    for note in stack.notes:
        timeline.plain(f"  note: {note}")
    kept = "kept at exit (--keep-files)" if keep else "removed at exit; --keep-files keeps them"
    timeline.plain(f"  files and logs: {stack.workdir} ({kept})")
    timeline.plain("")


def _quiet(signum: int, frame: object) -> None:
    """During the bounded teardown a further stop signal is noted, not obeyed: nothing may be left half-stopped."""
    sys.stderr.write("agentwatch demo: stopping, please wait (bounded)\n")


def run(args: argparse.Namespace) -> int:
    previous = signals.raise_on_stop_signals()
    started = time.monotonic()
    timeline = Timeline(deadline=started + args.duration if args.duration else None)
    workdir = Path(tempfile.mkdtemp(prefix="aw-demo-"))
    stack = DemoStack(workdir, say=lambda text: timeline.say("demo", text), on_message=show_message(timeline))
    watcher: Watcher | None = None
    code = 0
    try:
        timeline.say("demo", "agentwatch demo: starting the monitoring loop on this machine, all on loopback")
        stack.start(want_engine=not args.no_engine, rules_dir=args.rules_dir)
        timeline.say("demo", f"everything is up ({time.monotonic() - started:.1f}s)")
        print_header(stack, timeline, args.keep_files)
        watcher = Watcher(timeline, stack.alerts if stack.prometheus else None,
                          stack.scaler.decisions if stack.scaler else None).start()
        if args.no_incident:
            timeline.say("demo", "no incident (--no-incident)")
        elif stack.prometheus is None:
            timeline.say("demo", "no incident walkthrough without Prometheus")
        else:
            walk = Walkthrough(stack, timeline)
            walk.run()
            code = 1 if walk.missed else 0
        timeline.plain("")
        until = f"for {args.duration:g}s in all" if args.duration else "until Ctrl-C"
        timeline.say("demo", f"everything stays up {until}: explore the URLs above")
        while True:
            timeline.sleep(3600)
    except DurationReached:
        timeline.say("demo", f"--duration {args.duration:g}s reached")
    except StackError as exc:
        print(f"agentwatch demo: {exc}", file=sys.stderr)
        code = 2
    except signals.Interrupted as exc:
        timeline.say("demo", f"stopping ({signal.Signals(exc.signum).name})")
        code = 128 + exc.signum
    finally:
        for sig in signals.STOP_SIGNALS:
            signal.signal(sig, _quiet)
        if watcher is not None:
            watcher.stop()
        problems = stack.stop()
        if not args.keep_files:
            shutil.rmtree(workdir, ignore_errors=True)
        for problem in problems:
            print(f"agentwatch demo: while stopping, {problem}", file=sys.stderr)
        timeline.say("demo", "stopped: every process, container and file of the demo is gone"
                     if not args.keep_files else f"stopped; files kept in {workdir}")
        signals.restore(previous)
    return code
