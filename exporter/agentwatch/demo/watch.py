"""Watch Prometheus's alerts and the scaler's decisions, and put every change on the timeline.

One thread polls both every second: an alert that appears pending, turns firing or goes away
(resolved), and each new scaler decision, is printed as it is seen and recorded as an event the
walkthrough waits on. A poll that fails (a server busy or stopping) is skipped, never raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from agentwatch.demo.timeline import Event, Timeline

MiB = 1024 * 1024
#: Labels that name what an alert is about, in the order they are shown.
SUBJECT_LABELS = ("container", "server", "pool", "model", "check")
#: Actions whose decision moves a quantity worth showing (current -> desired).
QUANTITY_ACTIONS = frozenset({"resize_memory", "set_concurrency", "scale_up", "scale_down"})


def subject(labels: dict[str, str]) -> str:
    return " ".join(f"{k}={labels[k]}" for k in SUBJECT_LABELS if labels.get(k))


def _quantity(action: str, value: Any) -> str:
    if not isinstance(value, int | float):
        return "?"
    if action == "resize_memory":
        return f"{value / MiB:g} MiB"
    return f"{value:g}"


def describe_decision(d: dict[str, Any]) -> str:
    """One line: what triggered it, what the scaler would do, and what became of it."""
    action, target = d.get("action", "?"), d.get("target", "?")
    head = f"{d.get('trigger', '?')} {d.get('alertname', '?')} -> {action} {target}"
    if d.get("outcome") == "skipped":
        return f"{head}: skipped ({d.get('reason', '?')}{': ' + d['detail'] if d.get('detail') else ''})"
    if d.get("outcome") == "scheduled":
        return f"{head}: reverse scheduled after its stabilisation window"
    move = ""
    if action in QUANTITY_ACTIONS and "desired" in d:
        move = f": {_quantity(action, d.get('current'))} -> {_quantity(action, d.get('desired'))}"
    result = d.get("result", "")
    shown = "dry run: recorded, not applied" if result == "dry_run" else result
    return f"{head}{move} ({shown})" if shown else f"{head}{move}"


class Watcher:
    """Poll ``alerts()`` and ``decisions()`` every ``interval`` seconds on a daemon thread."""

    def __init__(self, timeline: Timeline, alerts: Callable[[], list[dict[str, Any]]] | None,
                 decisions: Callable[[], list[dict[str, Any]]] | None, interval: float = 1.0) -> None:
        self.timeline = timeline
        self._alerts = alerts
        self._decisions = decisions
        self.interval = interval
        self._states: dict[tuple[tuple[str, str], ...], tuple[str, dict[str, Any]]] = {}
        #: Pending alerts already shown: one that flickers (pending, gone, pending) is shown once.
        self._shown_pending: set[tuple[tuple[str, str], ...]] = set()
        self._seen_decisions: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-watcher", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        if self._alerts is not None:
            try:
                self._alert_changes(self._alerts())
            except Exception:  # a busy or stopping Prometheus: try again next second
                pass
        if self._decisions is not None:
            try:
                self._new_decisions(self._decisions())
            except Exception:  # the same for the scaler
                pass

    def _alert_changes(self, alerts: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        current: dict[tuple[tuple[str, str], ...], tuple[str, dict[str, Any]]] = {}
        for alert in alerts:
            labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
            current[tuple(sorted(labels.items()))] = (str(alert.get("state", "")), alert)
        for key, (state, alert) in current.items():
            before = self._states.get(key, ("", {}))[0]
            if state == before or (state == "pending" and key in self._shown_pending):
                continue
            if state == "pending":
                self._shown_pending.add(key)
            if state in ("pending", "firing"):
                self._report(now, state, dict(key), alert)
        for key, (state, alert) in self._states.items():
            if key not in current and state == "firing":
                self._shown_pending.discard(key)
                self._report(now, "resolved", dict(key), alert)
        self._states = current

    def _report(self, now: float, state: str, labels: dict[str, str], alert: dict[str, Any]) -> None:
        name = labels.get("alertname", "?")
        summary = str((alert.get("annotations") or {}).get("summary", ""))
        about = subject(labels)
        text = f"{name} {state}" + (f" ({about})" if about else "")
        if summary and state != "resolved":
            text += f"\n{summary}"
        self.timeline.add(Event(now, "prometheus", state, name, labels))
        self.timeline.say("prometheus", text, now)

    def _new_decisions(self, decisions: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        for d in reversed(decisions):  # the scaler lists the newest first
            ident = str(d.get("id", ""))
            if not ident or ident in self._seen_decisions:
                continue
            self._seen_decisions.add(ident)
            self.timeline.add(Event(now, "scaler", "decision", str(d.get("alertname", "")), data=d))
            self.timeline.say("scaler", describe_decision(d), now)
