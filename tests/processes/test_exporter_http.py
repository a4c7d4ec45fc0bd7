"""The real exporter, as a subprocess, serves the process metrics over HTTP."""

from __future__ import annotations

from agentwatch.local.pack import ExporterProcess
from tests.processes.helpers import MiB, agents_matcher


def test_exporter_serves_process_groups_and_per_process_series(fleet, run_id):
    workers = [fleet.spawn("sonnet", mb=20) for _ in range(2)] + [fleet.spawn("haiku", mb=10)]
    config = {"docker": {"enabled": False},
              "processes": {"groups": [agents_matcher(run_id)], "per_process": {"enabled": True, "max_series": 50}}}
    with ExporterProcess(config) as exporter:
        s = exporter.wait_for_cycles(2)
        assert s.value("agentwatch_collector_success", collector="processes") == 1, exporter.log()
        assert s.value("agentwatch_process_group_processes", group="agents", model="sonnet") == 2
        assert s.value("agentwatch_process_group_processes", group="agents", model="haiku") == 1
        assert s.value("agentwatch_process_group_memory_rss_bytes", group="agents", model="sonnet") >= 40 * MiB
        assert s.types["agentwatch_process_group_cpu_seconds"] == "counter"  # the parser drops _total
        pids = {lbl["pid"] for lbl, _ in s.series("agentwatch_process_memory_rss_bytes", group="agents")}
        assert pids == {str(w.pid) for w in workers}
        assert s.value("agentwatch_host_memory_total_bytes") > 0
        assert s.value("agentwatch_process_scan_skipped_total", reason="vanished") is not None
        # A worker is killed: the next snapshots drop it.
        workers[-1].kill()
        workers[-1].wait(timeout=10)
        s = exporter.wait_for_cycles(2)
        assert s.value("agentwatch_process_group_processes", group="agents", model="haiku") is None
        assert s.value("agentwatch_process_group_processes", group="agents", model="sonnet") == 2


def test_exporter_does_not_count_itself_with_default_groups():
    with ExporterProcess({"docker": {"enabled": False}}) as exporter:
        s = exporter.wait_for_cycles(1)
        groups = {lbl["group"] for lbl, _ in s.series("agentwatch_process_group_processes")}
        assert {"claude-code", "agent-cli", "python-agent", "node-agent"} <= groups
        pid = str(exporter.proc.pid)
        with_pid = ExporterProcess({"docker": {"enabled": False}, "processes": {"per_process": {"enabled": True}}})
        with with_pid as other:
            s2 = other.wait_for_cycles(1)
            seen = {lbl["pid"] for lbl, _ in s2.series("agentwatch_process_memory_rss_bytes")}
            assert str(other.proc.pid) not in seen and pid not in seen, "agentwatch is not an agent"
