"""The insights collector's families and config: labels in the catalog's order, validated settings."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentwatch import exposition
from agentwatch.collectors import build_collectors
from agentwatch.collectors.insights import InsightsCollector
from agentwatch.config import ExporterConfig, load
from agentwatch.configfile import ConfigError
from agentwatch.local.scrape import Scrape
from agentwatch.readings import ContainerReading, EngineEvent, Readings

MiB = 1 << 20


def _reading(at: float, ws: float) -> ContainerReading:
    return ContainerReading(id="f" * 64, labels=("w1", "agent:local", "fleet", "worker", "gold"), state="running",
                            running=True, working_set=ws, limit=64 * MiB, started_at=at - 100, finished_at=0.0,
                            exit_code=0, oom_killed=False, restart_count=0, restart_policy="no", max_retries=0,
                            health="none")


def test_families_carry_the_allowlisted_labels_after_the_state_labels():
    config = ExporterConfig.model_validate({"docker": {"label_allowlist": ["agent.tier"]},
                                            "insights": {"min_samples": 2}})
    board = Readings()
    collector = InsightsCollector(config, board)

    async def cycles() -> list:
        await collector.start()
        now = time.time()
        for i in range(4):
            board.put_containers([_reading(now, (10 + 5 * i) * MiB)], ["label_agent_tier"], now - 30 + i * 5)
            families = await collector.collect()
        board.put_event(EngineEvent("die", "f" * 64, "w1", "agent:local", "fleet", "worker", 1, now - 1,
                                    (("agent.tier", "gold"),)))
        families = await collector.collect()
        await collector.stop()
        return families

    families = asyncio.run(cycles())
    scrape = Scrape.parse(exposition.encode(exposition.Families(families), openmetrics=False).decode())
    tier = {"container": "w1", "label_agent_tier": "gold", "compose_service": "worker"}
    assert scrape.value("agentwatch_container_memory_trend", trend="growing", **tier) == 1
    # 25 MiB of 64 MiB but 1 MiB/s more each second: the limit is 39 s away, within imminent_seconds
    assert scrape.value("agentwatch_container_memory_threshold_state", state="oom_imminent", **tier) == 1
    assert scrape.value("agentwatch_container_crashes_total", cause="error", **tier) == 1
    assert scrape.value("agentwatch_container_crashes_total", cause="oom", **tier) == 0
    assert scrape.value("agentwatch_container_memory_slope_bytes_per_second", **tier) == pytest.approx(MiB)
    assert scrape.value("agentwatch_container_memory_projected_seconds_to_limit", **tier) == pytest.approx(
        (64 - 25) * MiB / MiB, rel=0.01)
    assert scrape.value("agentwatch_container_health_score", **tier) is not None
    assert scrape.value("agentwatch_insights_store_errors_total", reason="corrupt") == 0


def test_insights_join_the_collectors_when_enabled():
    names = [c.name for c in build_collectors(ExporterConfig.model_validate({"docker": {"events": True}}))]
    assert names[-1] == "insights"
    off = ExporterConfig.model_validate({"insights": {"enabled": False}})
    assert "insights" not in [c.name for c in build_collectors(off)]
    nothing = ExporterConfig.model_validate({"docker": {"enabled": False}, "processes": {"enabled": False}})
    assert build_collectors(nothing) == []


@pytest.mark.parametrize(("insights", "message"), [
    ("{warning_ratio: 0.95}", "expected warning_ratio < critical_ratio < oom_imminent_ratio"),
    ("{min_samples: 50, max_samples: 20}", "min_samples (50) is above max_samples (20)"),
    ("{window_seconds: 0}", "insights.window_seconds"),
    ("{agent_size: huge}", "insights.agent_size"),
    ("{db_max_bytes: 10}", "insights.db_max_bytes"),
    ("{no_such_key: 1}", "insights.no_such_key"),
])
def test_bad_insights_config_is_one_clear_line(tmp_path, insights, message):
    path = tmp_path / "agentwatch.yml"
    path.write_text(f"insights: {insights}\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    text = str(err.value)
    assert message in text and "\n" not in text.strip(), text
