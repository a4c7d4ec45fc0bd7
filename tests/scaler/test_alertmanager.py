"""The real Alertmanager 0.25 posts to the real scaler: priorities, cooldowns, dedupe of repeats, resolve."""

from __future__ import annotations

import datetime as dt

from agentwatch.local.process import wait_for
from agentwatch.local.scrape import Scrape
from tests.scaler.helpers import Alertmanager, ScalerProcess, StandIn, ThreadedApp, http


def now_iso(offset: float = 0) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)).isoformat().replace("+00:00", "Z")


def test_alertmanager_to_scaler_end_to_end(tmp_path):
    srv = StandIn(max_concurrency=8)
    with ThreadedApp(srv.app) as standin:
        policy = {
            "dry_run": False, "state_file": str(tmp_path / "state.json"), "audit_log": str(tmp_path / "audit.jsonl"),
            "tick_seconds": 0.2,
            "targets": {"srv": {"kind": "agent_server", "url": standin.url, "api_key_env": "AW_KEY",
                                "min_concurrency": 1}},
            "rules": [
                {"name": "lower", "alertname": "HostMemoryHigh", "action": "set_concurrency", "step": 2,
                 "target": "srv", "priority": 10, "cooldown_seconds": 0, "on_resolved": "reverse",
                 "stabilization_seconds": 2},
                {"name": "drain", "alertname": "HostMemoryExhausted", "action": "drain", "target": "srv",
                 "priority": 90, "cooldown_seconds": 600},
            ],
        }
        with ScalerProcess(policy, tmp_path, env={"AW_KEY": srv.api_key}) as scaler, \
                Alertmanager(scaler.url + "/webhook", group_by=("cluster",)) as am:

            def metrics() -> Scrape:
                return Scrape.parse(http("GET", scaler.url + "/metrics", token=None)[1])

            def accepted() -> float:
                return metrics().value("agentwatch_scaler_webhooks_total", result="accepted") or 0

            # Two alerts in one group arrive in one webhook: the higher priority (drain) wins the target.
            am.fire({"labels": {"alertname": "HostMemoryHigh", "cluster": "a"}},
                    {"labels": {"alertname": "HostMemoryExhausted", "cluster": "a"}})
            wait_for(lambda: srv.calls, 20, what="the drain call")
            decisions = {d["rule"]: d for d in scaler.actions()}
            assert decisions["drain"]["outcome"] == "act"
            wait_for(lambda: any(d.get("result") == "success" for d in scaler.actions() if d["rule"] == "drain"),
                     10, what="drain result")
            assert (decisions["lower"]["outcome"], decisions["lower"]["reason"]) == ("skipped", "lower_priority")

            # Alertmanager repeats the group (repeat_interval 2s): every repeat is a duplicate.
            first = accepted()
            wait_for(lambda: accepted() >= first + 2, 20, what="two Alertmanager repeats")
            assert srv.calls == [("drain", None)], "repeats never double an action"
            assert (metrics().value("agentwatch_scaler_skipped_total", reason="duplicate") or 0) >= 2

            # A new instance of the drain alert (another group) while the drain is cooling down.
            am.fire({"labels": {"alertname": "HostMemoryExhausted", "cluster": "b"}})
            wait_for(lambda: any(d.get("reason") == "cooldown" for d in scaler.actions()), 20, what="cooldown skip")
            assert srv.calls == [("drain", None)]
            cooldown = metrics().value("agentwatch_scaler_cooldown_remaining_seconds", target="srv", action="drain")
            assert cooldown is not None and 500 < cooldown <= 600

            # Alone in its group, lowering concurrency acts; once resolved and stable, it is restored.
            am.fire({"labels": {"alertname": "HostMemoryHigh", "cluster": "c"}})
            wait_for(lambda: ("concurrency", 6) in srv.calls, 20, what="concurrency lowered")
            # Every alert of that rule must resolve: one still firing (cluster a) keeps the reverse off.
            am.fire({"labels": {"alertname": "HostMemoryHigh", "cluster": "c"}, "endsAt": now_iso(-1)},
                    {"labels": {"alertname": "HostMemoryHigh", "cluster": "a"}, "endsAt": now_iso(-1)})
            wait_for(lambda: any(d["outcome"] == "scheduled" for d in scaler.actions()), 20, what="reverse scheduled")
            wait_for(lambda: ("concurrency", 8) in srv.calls, 20, what="concurrency restored")
            assert srv.calls == [("drain", None), ("concurrency", 6), ("concurrency", 8)]
            assert srv.max_concurrency == 8
        assert "Traceback" not in scaler.log()
