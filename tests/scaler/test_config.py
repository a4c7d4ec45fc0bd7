"""The policy file is validated on load; errors name the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentwatch.configfile import ConfigError
from agentwatch.scaler.config import load

ROOT = Path(__file__).resolve().parents[2]
BASE = {"targets": {"srv": {"kind": "agent_server", "url": "http://127.0.0.1:1"},
                    "agents": {"kind": "compose_service", "project": "p", "service": "a", "max_replicas": 3}},
        "rules": [{"name": "r", "alertname": "A", "action": "drain", "target": "srv"}]}


def write(tmp_path, data) -> Path:
    path = tmp_path / "policy.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_example_policy_is_valid_and_safe():
    config = load(ROOT / "compose" / "scaler-policy.yml")
    assert config.dry_run is True
    assert config.rules and config.targets
    kinds = {t.kind for t in config.targets.values()}
    # No swarm_service: a compose host cannot observe one (it stays in the file as a commented block).
    assert kinds == {"compose_service", "container", "agent_server", "notify"}
    assert {r.action for r in config.rules} >= {"scale_up", "set_concurrency", "drain", "resize_memory", "restart",
                                                "notify"}


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["rules"][0].update(target="nope"), "rules[0].target: 'nope' is not in targets"),
    (lambda d: d["rules"][0].update(action="scale_up"), "rules[0]: a agent_server target cannot take scale_up"),
    (lambda d: d["rules"][0].update(action="explode"), "rules[0].action: Input should be"),
    (lambda d: d["rules"][0].update(match_re={"x": "("}), "rules[0].match_re: not a valid regular expression"),
    (lambda d: d["rules"][0].update(target="{{ labels.x | shell }}"), "rules[0].target: only {{ labels.NAME }}"),
    (lambda d: d["rules"][0].update(typo=1), "rules[0].typo: unknown key"),
    (lambda d: d["rules"].append(dict(d["rules"][0])), "rule names must be unique"),
    (lambda d: d["rules"][0].update(action="restart", on_resolved="reverse"), "restart cannot be reversed"),
    (lambda d: d["targets"]["agents"].update(min_replicas=5), "min_replicas must not exceed max_replicas"),
    (lambda d: d["targets"].update(chat={"kind": "notify", "url": "https://hooks"}), "targets.chat.notify.url"),
    (lambda d: d["rules"].append({"name": "m", "action": "resize_memory", "target": "agents", "factor": 2}),
     "resize_memory needs min_memory_bytes and max_memory_bytes"),
    (lambda d: d.update(limits={"max_total_memory_bytes": "lots"}), "limits.max_total_memory_bytes: expected a size"),
    (lambda d: d.update(listen="9848"), "listen: expected HOST:PORT"),
])
def test_errors_name_file_and_key(tmp_path, change, expected):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: ")
    assert expected in str(err.value)


def test_sizes_accept_units(tmp_path):
    data = {**BASE, "limits": {"max_total_memory_bytes": "44GiB"}}
    assert load(write(tmp_path, data)).limits.max_total_memory_bytes == 44 * 1024**3


def test_check_config_command(tmp_path):
    good = subprocess.run([sys.executable, "-m", "agentwatch.cli", "check-config", "--kind", "scaler",
                           str(write(tmp_path, BASE))], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0 and "OK (scaler config)" in good.stdout
    bad = {**BASE, "rules": [{**BASE["rules"][0], "priority": "high"}]}
    out = subprocess.run([sys.executable, "-m", "agentwatch.cli", "check-config", "--kind", "scaler",
                          str(write(tmp_path, bad))], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "rules[0].priority" in out.stderr


def test_scaler_without_a_token_exits_with_a_config_error(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "agentwatch.cli", "scaler", "--config", str(write(tmp_path, BASE))],
                         capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert out.returncode == 2 and "AGENTWATCH_SCALER_TOKEN" in out.stderr
