"""What a user sees at start: huge inputs get one short line in bounded memory, and a probe whose
API key cannot be found is named once in a warning instead of only failing with 401s later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.configfile import MAX_FILE_BYTES
from agentwatch.local.pack import ExporterProcess
from agentwatch.local.process import wait_for

MB = 1_000_000
#: The longest single argument Linux passes to a program (MAX_ARG_STRLEN), just under.
LONGEST_ARG = 131_000
#: Python with agentwatch imported takes about 50 MB; an unbounded 50 MB config took over 3.9 GB.
RSS_BOUND_KB = 200_000

# Runs a command in-process and reports its own peak RSS, so the bound is the command's alone.
_MEASURED = ("import resource, sys\n"
             "from agentwatch.cli import main\n"
             "rc = main(sys.argv[1:])\n"
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
             "sys.exit(rc)\n")


def measured(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, int]:
    """(exit status, stderr, peak RSS in KiB) of ``agentwatch ARGS``."""
    out = subprocess.run([sys.executable, "-c", _MEASURED, *args], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    return out.returncode, out.stderr, int(out.stdout.strip().splitlines()[-1])


def write_big(path: Path, head: str, line: str, size: int = 50 * MB) -> Path:
    with open(path, "w") as fh:
        fh.write(head)
        chunk = line * 10_000
        while fh.tell() < size:
            fh.write(chunk)
    return path


@pytest.mark.parametrize("command", [["check-config"], ["check-config", "--kind", "scaler"], ["exporter", "--config"],
                                     ["scaler", "--config"]])
def test_a_50_mb_config_with_a_million_groups_is_one_line_in_bounded_memory(tmp_path, command):
    path = write_big(tmp_path / "huge.yml", "processes:\n  groups:\n", "    - {name: g, cmdline: 'agent-x'}\n")
    rc, stderr, rss = measured(*command, str(path), env={"AGENTWATCH_SCALER_TOKEN": "startup-test-token-1234"})
    assert rc == 2
    assert stderr == f"agentwatch {command[0]}: {path}: larger than {MAX_FILE_BYTES // 1024} KiB; not a config file\n"
    assert rss < RSS_BOUND_KB, f"peak RSS {rss} KiB"


def test_a_50_mb_listen_value_is_one_short_line(tmp_path):
    path = write_big(tmp_path / "listen.yml", "listen: '", "x" * 1000)
    with open(path, "a") as fh:
        fh.write("'\n")
    rc, stderr, rss = measured("check-config", str(path))
    assert rc == 2 and len(stderr.splitlines()) == 1 and len(stderr) < 200, stderr[:500]
    assert rss < RSS_BOUND_KB
    near_bound = tmp_path / "near.yml"  # just under the size bound: parsed, and the value cut in the message
    near_bound.write_text("listen: '" + "x" * (MAX_FILE_BYTES - 20) + "'\n")
    rc, stderr, _ = measured("check-config", str(near_bound))
    assert rc == 2 and len(stderr.splitlines()) == 1 and len(stderr) < 400, stderr[:500]
    assert "listen: expected HOST:PORT" in stderr and "..." in stderr


@pytest.mark.parametrize("command", [["exporter"], ["scaler", "--config", "POLICY"], ["demo-agents", "--no-auth"]])
def test_the_longest_listen_flag_is_one_short_line(tmp_path, command):
    policy = tmp_path / "policy.yml"
    policy.write_text("targets: {}\nrules: []\n")
    args = [str(policy) if a == "POLICY" else a for a in command]
    rc, stderr, _ = measured(*args, "--listen", "x" * LONGEST_ARG + ":80",
                             env={"AGENTWATCH_SCALER_TOKEN": "startup-test-token-1234"})
    assert rc == 2 and len(stderr.splitlines()) == 1 and len(stderr) < 400, stderr[:500]
    assert stderr.startswith(f"agentwatch {command[0]}: --listen: host 'xxx")


def test_more_process_groups_than_the_bound_are_refused(tmp_path):
    groups = 300
    path = tmp_path / "agentwatch.yml"
    path.write_text("processes:\n  groups:\n" + "".join(f"    - {{name: g{i}, cmdline: x}}\n" for i in range(groups)))
    rc, stderr, _ = measured("check-config", str(path))
    assert rc == 2
    assert stderr == (f"agentwatch check-config: {path}: processes.groups: List should have at most 256 items "
                      f"after validation, not {groups}\n")


# --- a probe's API key that cannot be found -----------------------------------------------------


def _warnings(exp: ExporterProcess) -> list[str]:
    records = [json.loads(line) for line in exp.log().splitlines() if line.startswith("{")]
    return [r["msg"] for r in records if r.get("level") == "warning" and "API key" in r.get("msg", "")]


def test_an_unset_key_variable_or_unreadable_key_file_is_one_warning_at_start(tmp_path):
    key_file = tmp_path / "present.key"
    key_file.write_text("s3cret-probe-key-9f8e\n")
    probes = [
        {"name": "env-unset", "url": "http://127.0.0.1:1", "api_key_env": "AW_STARTUP_UNSET_KEY"},
        {"name": "file-missing", "url": "http://127.0.0.1:1", "api_key_file": str(tmp_path / "absent.key")},
        {"name": "both-missing", "url": "http://127.0.0.1:1", "api_key_env": "AW_STARTUP_UNSET_KEY",
         "api_key_file": str(tmp_path / "absent.key")},
        {"name": "env-set", "url": "http://127.0.0.1:1", "api_key_env": "AW_STARTUP_SET_KEY"},
        {"name": "file-present", "url": "http://127.0.0.1:1", "api_key_file": str(key_file)},
        {"name": "no-key", "url": "http://127.0.0.1:1"},
    ]
    config = {"interval_seconds": 0.5, "docker": {"enabled": False}, "processes": {"enabled": False},
              "probes": probes}
    env = {"AW_STARTUP_SET_KEY": "s3cret-env-key-1a2b"}
    os.environ.pop("AW_STARTUP_UNSET_KEY", None)
    with ExporterProcess(config, env=env) as exp:
        exp.wait_for_cycles(2)
        warnings = wait_for(lambda: len(w := _warnings(exp)) >= 3 and w, 10, what="the API key warnings")
        log = exp.log()
    assert sorted(warnings) == sorted([
        "probe server env-unset: no API key ($AW_STARTUP_UNSET_KEY is not set or empty); probing without "
        "X-API-Key, so expect 401 answers",
        f"probe server file-missing: no API key ({tmp_path / 'absent.key'} cannot be read (No such file or "
        "directory)); probing without X-API-Key, so expect 401 answers",
        f"probe server both-missing: no API key ($AW_STARTUP_UNSET_KEY is not set or empty; {tmp_path / 'absent.key'}"
        " cannot be read (No such file or directory)); probing without X-API-Key, so expect 401 answers",
    ]), "one warning per keyless server, none for a server whose key was found or that needs none"
    assert "s3cret-probe-key-9f8e" not in log and "s3cret-env-key-1a2b" not in log
