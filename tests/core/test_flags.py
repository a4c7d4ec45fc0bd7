"""Command-line flags are validated exactly like the file keys they override, and every command's
startup problem (a bad flag, an address that cannot be bound) is one line and exit status 2."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.config import ExporterConfig
from agentwatch.configfile import ConfigError, with_overrides

EXPORTER_FLAGS = {"--interval": "interval_seconds", "--listen": "listen", "--docker-timeout": "docker.timeout_seconds"}


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentwatch.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a command that refused to start."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


# --- the helper -----------------------------------------------------------------------------


def test_flags_not_given_leave_the_config_as_it_is():
    config = ExporterConfig()
    assert with_overrides(config, argparse.Namespace(interval=None, listen=None, docker_timeout=None),
                          EXPORTER_FLAGS) is config


def test_given_flags_replace_their_keys_nested_ones_too():
    args = argparse.Namespace(interval=2.5, listen="127.0.0.1:9999", docker_timeout=7.0)
    config = with_overrides(ExporterConfig(), args, EXPORTER_FLAGS)
    assert (config.interval_seconds, config.listen, config.docker.timeout_seconds) == (2.5, "127.0.0.1:9999", 7.0)
    assert config.processes == ExporterConfig().processes, "the rest is untouched"


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("interval", -1.0, "--interval: Input should be greater than 0 (got -1.0)"),
    ("interval", 0.0, "--interval: Input should be greater than 0 (got 0.0)"),
    ("interval", 7200.0, "--interval: Input should be less than or equal to 3600 (got 7200.0)"),
    ("listen", "nowhere", "--listen: expected HOST:PORT such as 127.0.0.1:9847 (got 'nowhere')"),
    ("docker_timeout", 0.0, "--docker-timeout: Input should be greater than 0 (got 0.0)"),
])
def test_a_bad_flag_is_refused_naming_the_flag(flag, value, expected):
    args = argparse.Namespace(**{"interval": None, "listen": None, "docker_timeout": None, flag: value})
    with pytest.raises(ConfigError) as info:
        with_overrides(ExporterConfig(), args, EXPORTER_FLAGS)
    assert str(info.value) == expected


# --- the commands ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1"])
def test_exporter_interval_flag_is_refused_like_the_file(tmp_path, value):
    flag = one_line(run_cli("exporter", "--interval", value))
    assert flag == f"agentwatch exporter: --interval: Input should be greater than 0 (got {float(value)})"
    path = tmp_path / "agentwatch.yml"
    path.write_text(f"interval_seconds: {value}\n")
    from_file = one_line(run_cli("exporter", "--config", str(path)))
    assert from_file == f"agentwatch exporter: {path}: interval_seconds: Input should be greater than 0 (got {value})"


def test_exporter_listen_that_can_never_bind_is_one_line():
    line = one_line(run_cli("exporter", "--listen", "999.1.1.1:1"))
    assert line == "agentwatch exporter: --listen: host '999.1.1.1' is not an IP address (got '999.1.1.1:1')"


def test_check_config_refuses_a_listen_address_that_can_never_bind(tmp_path):
    path = tmp_path / "agentwatch.yml"
    path.write_text("listen: '999.1.1.1:1'\n")
    assert one_line(run_cli("check-config", str(path))) == (
        f"agentwatch check-config: {path}: listen: host '999.1.1.1' is not an IP address (got '999.1.1.1:1')")


def test_exporter_on_a_busy_port_says_so_before_logging_that_it_listens(busy_port):
    result = run_cli("exporter", "--listen", f"127.0.0.1:{busy_port}")
    assert one_line(result) == f"agentwatch exporter: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    assert "listening" not in result.stdout + result.stderr


def test_scaler_bad_flags_and_busy_port(tmp_path, busy_port):
    policy = tmp_path / "policy.yml"
    policy.write_text("targets: {}\nrules: []\n")
    env = {"AGENTWATCH_SCALER_TOKEN": "h3-flag-test-token"}
    assert one_line(run_cli("scaler", "--config", str(policy), "--listen", "[::1:80", cwd=tmp_path, env=env)) == (
        "agentwatch scaler: --listen: host '[::1' is not an IP address (got '[::1:80')")
    assert one_line(run_cli("scaler", "--config", str(policy), "--listen", f"127.0.0.1:{busy_port}",
                            cwd=tmp_path, env=env)) == (
        f"agentwatch scaler: cannot listen on 127.0.0.1:{busy_port}: Address already in use")


@pytest.mark.parametrize(("flags", "expected"), [
    (["--pool-size", "0"], "--pool-size: Input should be greater than or equal to 1 (got 0)"),
    (["--max-concurrency", "-1"], "--max-concurrency: Input should be greater than or equal to 0 (got -1)"),
    (["--memory-scale", "-0.5"], "--memory-scale: Input should be greater than or equal to 0 (got -0.5)"),
    (["--lag-threshold", "0"], "--lag-threshold: Input should be greater than 0 (got 0.0)"),
    (["--load-seconds", "9-3"], "--load-seconds: expected 0 <= MIN <= MAX seconds (got (9.0, 3.0))"),
    (["--server-name", "a b"], "--server-name: String should match pattern '^[A-Za-z0-9_.:-]{1,64}$' (got 'a b')"),
    (["--listen", "localhost:99999"], "--listen: expected HOST:PORT such as 127.0.0.1:9847 (got 'localhost:99999')"),
])
def test_demo_agents_bad_flags(flags, expected):
    assert one_line(run_cli("demo-agents", "--no-auth", *flags)) == f"agentwatch demo-agents: {expected}"


def test_demo_agents_busy_port_and_missing_key(busy_port):
    assert one_line(run_cli("demo-agents", "--no-auth", "--listen", f"127.0.0.1:{busy_port}")) == (
        f"agentwatch demo-agents: cannot listen on 127.0.0.1:{busy_port}: Address already in use")
    assert one_line(run_cli("demo-agents", "--api-key-env", "AW_H3_UNSET_KEY")) == (
        "agentwatch demo-agents: no API key: set $AW_H3_UNSET_KEY or --api-key-file (or pass --no-auth)")
