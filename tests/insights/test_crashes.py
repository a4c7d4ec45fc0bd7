"""Classification, patterns and recommendations on synthetic evidence."""

from __future__ import annotations

import random

import pytest

from agentwatch.insights.crashes import (
    CAUSES,
    Context,
    CrashSettings,
    Death,
    classify,
    insight_of,
    recommended_limit,
    signal_of,
)
from agentwatch.insights.memory import MonitorSettings, RunSummary, Series

MiB = 1 << 20
GB = 1_000_000_000
T0 = 1_700_000_000.0
SETTINGS = CrashSettings(leak_min_seconds=300)
MON = MonitorSettings(window_seconds=600, min_samples=5, min_slope=8192)
LABELS = ("worker-1", "agent:local", "agents", "worker")


def run_of(values: list[float], limit: float, step: float = 5.0) -> RunSummary:
    s = Series(MON)
    for i, v in enumerate(values):
        s.observe(T0 + i * step, v, limit, T0 - 1)
    return s.summary()


def death(code: int, oom: bool, at: float = T0 + 3600) -> Death:
    return Death("0123456789abcdef", LABELS, at, code, oom)


@pytest.mark.parametrize(("code", "oom", "cause"), [
    (0, False, "clean"), (1, False, "error"), (2, False, "error"), (255, False, "error"),
    (137, False, "signal"), (143, False, "signal"), (130, False, "signal"), (139, False, "signal"),
    (137, True, "oom"), (1, True, "oom"),
])
def test_cause_from_the_exit_code_and_oom_evidence_without_samples(code, oom, cause):
    assert classify(code, oom, None, SETTINGS) == cause


def test_signal_numbers():
    assert signal_of(137) == 9 and signal_of(143) == 15 and signal_of(129) == 1 and signal_of(192) == 64
    assert signal_of(128) is None and signal_of(193) is None and signal_of(1) is None and signal_of(None) is None


def test_an_oom_after_sustained_growth_is_a_leak_even_when_the_last_sample_is_far_below_the_limit():
    """5-second samples of a 100 KiB/s leak: the last one at 70% of the limit, the kill 70 s later."""
    rng = random.Random(3)
    limit = 64 * MiB
    values = [8 * MiB + 100 * 1024 * i * 5 + rng.gauss(0, 128 * 1024) for i in range(80)]  # 400 s
    run = run_of(values, limit)
    assert run.trend == "growing" and run.growing_seconds >= 300
    assert run.max_ratio is not None and run.max_ratio < 0.8
    kill = run.last_at + (limit - values[-1]) / (100 * 1024)
    assert classify(137, True, run, SETTINGS, kill) == "memory_leak"


def test_growth_too_short_to_be_sustained_is_not_a_leak():
    run = run_of([8 * MiB + 50 * 1024 * i * 5 for i in range(20)], 64 * MiB)  # 95 s of growth
    assert run.trend == "growing"
    assert classify(137, True, run, SETTINGS, run.last_at + 5) == "memory_spike", "never above 80%"


def test_a_slope_that_cannot_reach_the_limit_by_the_kill_is_not_a_leak():
    """Slow growth for long, then one big allocation: the line never explains the kill."""
    run = run_of([8 * MiB + 10 * 1024 * i * 5 for i in range(100)], 1024 * MiB)
    assert run.trend == "growing" and run.growing_seconds >= 300
    assert classify(137, True, run, SETTINGS, run.last_at + 5) == "memory_spike"


def test_an_oom_with_no_sample_near_the_limit_is_a_spike():
    """A real OOM can fill 32 MiB between two 5-second samples: steady at 30%, then killed."""
    rng = random.Random(5)
    run = run_of([20 * MiB + rng.gauss(0, 64 * 1024) for i in range(100)], 64 * MiB)
    assert run.trend == "stable"
    assert classify(137, True, run, SETTINGS, run.last_at + 4) == "memory_spike"


def test_a_sharp_rise_in_the_last_samples_is_a_spike():
    run = run_of([70 * MiB] * 30 + [81 * MiB, 95 * MiB], 100 * MiB)
    assert run.last_rise >= 0.2 * 100 * MiB and run.max_ratio == 0.95
    assert classify(137, True, run, SETTINGS, run.last_at + 1) == "memory_spike"


def test_an_oom_at_a_high_plateau_stays_oom():
    run = run_of([60 * MiB + (i % 3) * 64 * 1024 for i in range(50)], 64 * MiB)
    assert run.trend == "stable"
    assert classify(137, True, run, SETTINGS, run.last_at + 5) == "oom"


def test_every_insight_names_a_recommendation():
    run = run_of([8 * MiB + 100 * 1024 * i * 5 for i in range(80)], 64 * MiB)
    for code, oom in ((0, False), (1, False), (143, False), (137, False), (137, True)):
        for evidence in (run, None):
            insight = insight_of(death(code, oom), evidence, 60 * MiB, Context(), SETTINGS, None)
            assert insight.cause in CAUSES
            assert insight.recommendations and all(r["text"] for r in insight.recommendations), insight
            assert insight.summary


def test_leak_advice_names_the_limit_the_leak_and_a_drain():
    run = run_of([8 * MiB + 100 * 1024 * i * 5 for i in range(80)], 64 * MiB)
    kill = run.last_at + (64 * MiB - run.last_value) / (100 * 1024)
    insight = insight_of(death(137, True, at=kill), run, 47 * MiB, Context(), SETTINGS, None)
    assert insight.cause == "memory_leak"
    recs = {r["action"]: r for r in insight.recommendations}
    assert set(recs) >= {"find_leak", "raise_memory_limit", "drain_before_restart"}
    assert recs["raise_memory_limit"]["value"] == 80 * MiB, "the 64 MiB limit (hit) plus 25%, rounded up"
    assert "64 MiB" in recs["raise_memory_limit"]["text"] and "80 MiB" in recs["raise_memory_limit"]["text"]
    assert insight.evidence["limit_bytes"] == 64 * MiB and insight.evidence["trend"] == "growing"


def test_recommended_limit_uses_the_watermark_when_it_is_higher():
    assert recommended_limit(64 * MiB, 100 * MiB, 0.25) == 128 * MiB
    assert recommended_limit(64 * MiB, None, 0.5) == 96 * MiB


def test_node_gets_a_heap_limit_below_the_container_limit():
    run = run_of([50 * MiB] * 30 + [52 * MiB, 262 * MiB], 1024 * MiB)
    ctx = Context(command="node /app/server.js --port 3000")
    insight = insight_of(death(137, True), run, None, ctx, SETTINGS, None)
    node = next(r for r in insight.recommendations if r["action"] == "set_node_max_old_space_size")
    assert node["value"] == 768 and "--max-old-space-size=768" in node["text"]
    plain = insight_of(death(137, True), run, None, Context(command="python agent.py"), SETTINGS, None)
    assert "set_node_max_old_space_size" not in {r["action"] for r in plain.recommendations}


def test_a_crash_after_a_rise_in_agents_says_to_lower_max_concurrency():
    run = run_of([6 * GB] * 20, 8 * GB)
    ctx = Context(agents_before=2, agents_at=5)
    insight = insight_of(death(137, True), run, 7.9 * GB, ctx, SETTINGS, None)
    assert "agents_rise" in {p["kind"] for p in insight.patterns}
    lower = next(r for r in insight.recommendations if r["action"] == "lower_max_concurrency")
    assert lower["value"] == 1, "8 GB fits one mid-size agent at 4.5 GB"
    assert "2 GB" in lower["text"] and "4-5 GB" in lower["text"] and "6 GB" in lower["text"]
    small = insight_of(death(137, True), run, 7.9 * GB, ctx, CrashSettings(agent_size="small"), None)
    assert next(r for r in small.recommendations if r["action"] == "lower_max_concurrency")["value"] == 4
    steady = insight_of(death(137, True), run, 7.9 * GB, Context(agents_before=4, agents_at=4), SETTINGS, None)
    assert "agents_rise" not in {p["kind"] for p in steady.patterns}


def test_repeats_and_the_spent_budget_are_patterns():
    ctx = Context(restart_policy="on-failure", max_retries=3, restart_count=3, same_cause_before=3)
    insight = insight_of(death(1, False), None, None, ctx, SETTINGS, running_after=False)
    kinds = {p["kind"]: p for p in insight.patterns}
    assert kinds["repeated"]["count"] == 4 and kinds["budget_exhausted"]["count"] == 3
    assert {"read_logs", "fix_then_start"} <= {r["action"] for r in insight.recommendations}
    again = insight_of(death(1, False), None, None, ctx, SETTINGS, running_after=True)
    assert "budget_exhausted" not in {p["kind"] for p in again.patterns}, "it was restarted: budget left"
    first = insight_of(death(1, False), None, None, Context(same_cause_before=1), SETTINGS, None)
    assert first.patterns == []


def test_a_fast_leak_sampled_sparsely_is_still_a_leak():
    """1 MiB/s in a 40 MiB container, 5-second samples: each step is an eighth of the limit."""
    run = run_of([2 * MiB + MiB * i * 5 for i in range(7)], 40 * MiB)  # 2 .. 32 MiB over 30 s
    assert run.last_rise >= 0.2 * 40 * MiB, "big steps, as a spike would have"
    assert classify(137, True, run, CrashSettings(leak_min_seconds=20), run.last_at + 5) == "memory_leak"


def test_a_spike_caught_mid_allocation_after_a_start_up_ramp_is_a_spike():
    """The real spike container: the start-up ramp, a flat stretch, then one sample mid-allocation."""
    values = [0.1 * MiB, 0.3 * MiB, 0.4 * MiB] + [0.4 * MiB] * 5 + [27 * MiB]
    run = run_of(values, 32 * MiB, step=0.5)
    settings = CrashSettings(leak_min_seconds=4)
    assert run.trend == "growing" and run.growing_seconds >= 4, "the jump drags the fit up"
    assert classify(137, True, run, settings, run.last_at + 0.1) == "memory_spike"
