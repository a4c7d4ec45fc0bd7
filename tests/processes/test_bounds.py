"""Cardinality stays bounded: per-process series only when enabled and capped; label sets capped."""

from __future__ import annotations

from tests.processes.helpers import agents_matcher, collector, scrape


async def test_per_process_series_only_when_enabled_and_capped_to_the_largest(fleet, run_id):
    procs = {mb: fleet.spawn(f"m{mb}", mb=mb) for mb in (5, 15, 30, 45)}
    groups = [agents_matcher(run_id)]

    off = await scrape(collector(groups=groups))
    assert off.series("agentwatch_process_memory_rss_bytes") == []
    assert "agentwatch_process_memory_rss_bytes" not in off.types

    on = await scrape(collector(groups=groups, per_process={"enabled": True}))
    mine = {lbl["pid"]: v for lbl, v in on.series("agentwatch_process_memory_rss_bytes", group="agents")
            if int(lbl["pid"]) in {p.pid for p in procs.values()}}
    assert len(mine) == 4
    assert mine[str(procs[45].pid)] >= 45 * 2**20

    capped = await scrape(collector(groups=groups, per_process={"enabled": True, "max_series": 2}))
    series = capped.series("agentwatch_process_memory_rss_bytes")
    assert {lbl["pid"] for lbl, _ in series} == {str(procs[45].pid), str(procs[30].pid)}
    assert all(lbl["group"] == "agents" for lbl, _ in series)


async def test_label_sets_beyond_the_cap_are_folded_and_counted(fleet, run_id):
    for model, n in (("alpha", 3), ("beta", 2), ("gamma", 1), ("delta", 1), ("eps", 1)):
        for _ in range(n):
            fleet.spawn(model, mb=2)
    c = collector(groups=[agents_matcher(run_id), {"name": "idle", "process_name": "no-such-process"}],
                  max_label_sets_per_group=2)
    s = await scrape(c)
    series = {lbl["model"]: v for lbl, v in s.series("agentwatch_process_group_processes", group="agents")}
    assert series == {"alpha": 3, "beta": 2, "_other": 3}, "the most populous stay, the rest are summed"
    assert s.value("agentwatch_process_group_series_dropped_total", group="agents") == 3
    assert s.value("agentwatch_process_group_series_dropped_total", group="idle") == 0
    assert s.value("agentwatch_process_group_process_rss_bytes_gcount", group="agents", model="_other") == 3
    # Totals stay right: nothing is lost by folding.
    total = sum(v for _, v in s.series("agentwatch_process_group_memory_rss_bytes", group="agents"))
    assert total >= 8 * 2 * 2**20

    # Sets admitted before keep their place when a newcomer outgrows them (no flapping series).
    for _ in range(3):
        fleet.spawn("gamma", mb=2)
    s = await scrape(c)
    series = {lbl["model"]: v for lbl, v in s.series("agentwatch_process_group_processes", group="agents")}
    assert series == {"alpha": 3, "beta": 2, "_other": 6}
    assert s.value("agentwatch_process_group_series_dropped_total", group="agents") == 6
