"""Config files are validated on load; every problem names the file, the key and what was expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.config import DEFAULT_LISTEN, ExporterConfig, load
from agentwatch.configfile import ConfigError, parse_listen


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agentwatch.yml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(path)
    return str(info.value)


def test_no_file_gives_documented_defaults():
    config = load(None)
    assert config.listen == DEFAULT_LISTEN
    assert config.interval_seconds == 5
    assert config.docker.enabled and config.docker.stats_source == "auto"
    assert config.processes.groups, "default process groups for common agent runtimes"


def test_empty_file_is_the_defaults(tmp_path):
    assert load(write(tmp_path, "")) == ExporterConfig()


def test_full_valid_file(tmp_path):
    config = load(write(tmp_path, """
listen: 127.0.0.1:9999
interval_seconds: 2
log_format: text
docker: {host: "unix:///tmp/x.sock", label_allowlist: [agent.tier], stats_source: api}
processes:
  groups:
    - {name: agents, cmdline: '--model (?P<model>\\w+)'}
"""))
    assert config.listen == "127.0.0.1:9999"
    assert config.docker.label_allowlist == ["agent.tier"]
    assert config.processes.groups[0].cmdline == r"--model (?P<model>\w+)"


def test_unknown_key_names_file_and_dotted_key(tmp_path):
    path = write(tmp_path, "docker:\n  hots: unix:///x\n")
    assert error_of(path) == f"{path}: docker.hots: unknown key"


def test_wrong_type_says_what_was_expected(tmp_path):
    path = write(tmp_path, "interval_seconds: often\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}: interval_seconds: ")
    assert "number" in msg and "'often'" in msg


def test_bad_regex_names_list_index(tmp_path):
    path = write(tmp_path, "processes:\n  groups:\n    - {name: a, cmdline: '(unclosed'}\n")
    msg = error_of(path)
    assert f"{path}: processes.groups[0].cmdline: not a valid regular expression" in msg


def test_bad_listen_and_out_of_range(tmp_path):
    path = write(tmp_path, "listen: nowhere\ninterval_seconds: -1\n")
    msg = error_of(path)
    assert f"{path}: listen: expected HOST:PORT" in msg
    assert f"{path}: interval_seconds: " in msg and "greater than 0" in msg


def test_invalid_yaml_gives_line(tmp_path):
    path = write(tmp_path, "docker:\n  host: [unclosed\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}: not valid YAML at line")


def test_top_level_must_be_mapping(tmp_path):
    assert "expected a mapping" in error_of(write(tmp_path, "- a\n- b\n"))


def test_missing_file(tmp_path):
    assert "cannot read" in error_of(tmp_path / "absent.yml")


@pytest.mark.parametrize("value,expected", [("127.0.0.1:9847", ("127.0.0.1", 9847)),
                                            ("[::1]:80", ("::1", 80)), ("0.0.0.0:1", ("0.0.0.0", 1))])
def test_parse_listen(value, expected):
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["9847", "host:", ":80", "h:0", "h:70000", "h:x"])
def test_parse_listen_rejects(value):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(value)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentwatch.cli", *args], capture_output=True, text=True,
                          timeout=60)


def test_check_config_cli_fails_with_the_message(tmp_path):
    path = write(tmp_path, "docker:\n  hots: x\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert f"{path}: docker.hots: unknown key" in result.stderr


def test_check_config_cli_ok(tmp_path):
    path = write(tmp_path, "interval_seconds: 3\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_help_explains_every_exporter_flag():
    out = run_cli("exporter", "--help").stdout
    for flag in ("--config", "--listen", "--interval", "--log-format", "--log-level"):
        assert flag in out


def test_probe_server_names_must_be_unique(tmp_path):
    path = write(tmp_path, """
probes:
  - {name: a, url: "http://127.0.0.1:1"}
  - {name: a, url: "http://127.0.0.1:2"}
""")
    assert f"{path}: probes: probe server names must be unique, repeated: a" in error_of(path)
