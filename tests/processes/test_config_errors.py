"""Bad process configs are rejected with messages naming the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.config import ExporterConfig, default_process_groups, load
from agentwatch.configfile import ConfigError

CASES = {
    "bad_regex": ("processes:\n  groups:\n    - {name: a, cmdline: 'x(?P<model>'}\n",
                  "processes.groups[0].cmdline: not a valid regular expression"),
    "bad_parent_regex": ("processes:\n  groups:\n    - {name: a, process_name: x, parent: '[sh'}\n",
                         "processes.groups[0].parent: not a valid regular expression"),
    "unknown_key": ("processes:\n  groups:\n    - {name: a, cmdline: x, cmd_line: y}\n",
                    "processes.groups[0].cmd_line: unknown key"),
    "unknown_top_key": ("processes:\n  per_proces: {enabled: true}\n", "processes.per_proces: unknown key"),
    "wrong_type": ("processes:\n  per_process: {enabled: true, max_series: lots}\n",
                   "processes.per_process.max_series: Input should be a valid integer"),
    "out_of_range": ("processes:\n  max_label_sets_per_group: 0\n",
                     "processes.max_label_sets_per_group: Input should be greater than or equal to 1"),
    "duplicate_name": ("processes:\n  groups:\n    - {name: a, cmdline: x}\n    - {name: a, cmdline: y}\n",
                       "processes.groups: process group names must be unique, repeated: a"),
    "no_condition": ("processes:\n  groups:\n    - {name: a, parent: sh}\n",
                     "processes.groups[0]: a process group needs process_name or cmdline"),
    "reserved_label": ("processes:\n  groups:\n    - {name: a, cmdline: '(?P<pid>\\d+)'}\n",
                       "processes.groups[0].cmdline: named group 'pid' cannot be a label name"),
    "bad_group_name": ("processes:\n  groups:\n    - {name: 'a b', cmdline: x}\n",
                       "processes.groups[0].name: String should match pattern"),
    "groups_not_a_list": ("processes:\n  groups: {name: a}\n", "processes.groups: Input should be a valid list"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_process_config_names_file_and_key(tmp_path: Path, case: str):
    text, expected = CASES[case]
    path = tmp_path / f"{case}.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert f"{path}: {expected}" in str(info.value)


@pytest.mark.parametrize("case", ["bad_regex", "duplicate_name", "no_condition"])
def test_check_config_exits_non_zero_with_the_message(tmp_path: Path, case: str):
    text, expected = CASES[case]
    path = tmp_path / "agentwatch.yml"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "agentwatch.cli", "check-config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert f"{path}: {expected}" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


def test_valid_processes_section_with_named_groups(tmp_path: Path):
    path = tmp_path / "ok.yml"
    path.write_text("""
processes:
  uss: true
  max_label_sets_per_group: 10
  per_process: {enabled: true, max_series: 20}
  groups:
    - {name: agents, cmdline: '--model (?P<model>\\w+)', in_container: true}
    - {name: workers, process_name: celery, parent: 'python[0-9.]*'}
""")
    config = load(path)
    assert config.processes.groups[0].cmdline == r"--model (?P<model>\w+)"
    assert config.processes.per_process.max_series == 20
    out = subprocess.run([sys.executable, "-m", "agentwatch.cli", "check-config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("cmdline,group,model", [
    ("claude --model opus", "claude-code", "opus"),
    ("node /usr/local/lib/node_modules/@anthropic-ai/claude-code/cli.js -p hi", "claude-code", None),
    ("node /usr/local/bin/codex --model=o3", "agent-cli", "o3"),
    ("/usr/bin/python3 -m aider --model gpt-4o", "agent-cli", "gpt-4o"),
    ("python3 /srv/agent_worker.py --model sonnet --mb 40", "python-agent", "sonnet"),
    ("python -u -m my_agent.main", "python-agent", None),
    ("node dist/agent.js --model haiku", "node-agent", "haiku"),
    # Never agents: agentwatch itself, pytest, shells and tools that mention one.
    ("/usr/bin/python3 -m agentwatch.cli exporter --config /etc/agentwatch.yml", None, None),
    ("/usr/bin/python3 /usr/local/bin/agentwatch scaler", None, None),
    ("/usr/bin/python3 -m pytest -q tests/processes", None, None),
    ("/usr/bin/python3 /usr/local/bin/pytest tests/agent_tests", None, None),
    ("grep claude", None, None),
    ("sh -c python3 agent.py", None, None),
    ("vim agent.py", None, None),
])
def test_default_groups_cover_agent_runtimes_but_not_agentwatch_or_pytest(cmdline, group, model):
    import re

    for g in default_process_groups():
        found = re.search(g.cmdline or "", cmdline)
        if found:
            assert (g.name, found.groupdict().get("model")) == (group, model)
            break
    else:
        assert group is None, f"{cmdline!r} should be in {group}"
    assert ExporterConfig().processes.groups == default_process_groups()
