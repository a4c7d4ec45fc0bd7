"""The one config loader: bounded files and messages, one secret reader, listen addresses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.config import load
from agentwatch.configfile import MAX_FILE_BYTES, MAX_PROBLEMS, ConfigError, parse_listen, read_secret
from agentwatch.scaler.config import load as load_scaler


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(path)
    return str(info.value)


def test_a_non_utf8_file_is_one_line_naming_the_byte(tmp_path):
    path = tmp_path / "agentwatch.yml"
    path.write_bytes(b"interval_seconds: 5\nlisten: \"\xff\"\n")
    assert error_of(path) == f"{path}: not UTF-8 text (byte 29, line 2)"
    out = subprocess.run([sys.executable, "-m", "agentwatch.cli", "exporter", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr == f"agentwatch exporter: {path}: not UTF-8 text (byte 29, line 2)\n"


def test_a_file_larger_than_the_bound_is_refused_unparsed(tmp_path):
    path = tmp_path / "agentwatch.yml"
    path.write_text("processes:\n  groups:\n" + "    - {name: g, cmdline: x}\n" * (MAX_FILE_BYTES // 20))
    assert error_of(path) == f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; not a config file"


def test_problems_are_capped_and_long_values_cut(tmp_path):
    path = tmp_path / "agentwatch.yml"
    groups = "".join(f"    - {{name: g{i}, cmdline: x, typo{i}: 1}}\n" for i in range(50))
    path.write_text(f"listen: '{'x' * 100_000}'\nprocesses:\n  groups:\n{groups}")
    lines = error_of(path).splitlines()
    assert len(lines) == MAX_PROBLEMS + 1 and lines[-1] == f"... and {51 - MAX_PROBLEMS} more problems"
    assert lines[0].startswith(f"{path}: listen: expected HOST:PORT") and len(lines[0]) < 250
    assert lines[1] == f"{path}: processes.groups[0].typo0: unknown key"


def test_read_secret_env_first_then_the_files_first_line(tmp_path, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_text("  from-file-123  \nsecond line\n")
    monkeypatch.setenv("AW_H3_SECRET", " from-env-456 ")
    assert read_secret("AW_H3_SECRET", str(key_file)) == "from-env-456"
    monkeypatch.setenv("AW_H3_SECRET", "  ")
    assert read_secret("AW_H3_SECRET", str(key_file)) == "from-file-123"
    assert read_secret(None, str(tmp_path / "absent")) is None
    (tmp_path / "empty").write_text("\n")
    assert read_secret("AW_H3_UNSET", str(tmp_path / "empty")) is None
    assert read_secret(None, None) is None


def test_the_exporter_and_the_scaler_read_secrets_the_same_way(tmp_path, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_text("shared-secret-789\n")
    exporter = tmp_path / "agentwatch.yml"
    exporter.write_text(f"probes:\n  - {{name: s, url: 'http://127.0.0.1:1', api_key_file: '{key_file}'}}\n")
    scaler = tmp_path / "policy.yml"
    scaler.write_text(f"targets:\n  s: {{kind: agent_server, url: 'http://127.0.0.1:1', api_key_file: '{key_file}'}}\n")
    assert load(exporter).probes[0].api_key() == load_scaler(scaler).targets["s"].api_key() == "shared-secret-789"


@pytest.mark.parametrize(("value", "expected"), [
    ("localhost:80", ("localhost", 80)), ("[::]:9", ("::", 9)), ("agents.internal:8080", ("agents.internal", 8080)),
])
def test_parse_listen_accepts_names_and_addresses(value, expected):
    assert parse_listen(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("999.1.1.1:1", "host '999.1.1.1' is not an IP address"),
    ("1.2.3:80", "host '1.2.3' is not an IP address"),
    ("[1::2::3]:80", "host '1::2::3' is not an IP address"),
    ("bad host:80", "host 'bad host' is neither a host name nor an IP address"),
    ("h:\uff18\uff10", "expected HOST:PORT"),  # only ASCII digits make a port
])
def test_parse_listen_refuses_hosts_that_can_never_bind(value, expected):
    with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
        parse_listen(value)
