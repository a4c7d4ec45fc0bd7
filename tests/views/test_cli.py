"""``agentwatch crashes|health|top`` against a loopback stand-in: tables, JSON, and one line plus
the documented exit code for every way an exporter can fail."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from agentwatch.cli import main
from agentwatch.local.process import free_port
from tests.views import samples
from tests.views.standin import StandIn


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        server.answers["/api/crashes"] = (200, json.dumps(samples.CRASHES).encode())
        server.answers["/api/health"] = (200, json.dumps(samples.HEALTH).encode())
        yield server


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_crashes_print_a_plain_table_with_patterns_and_advice(standin, capsys):
    code, out, err = _run(capsys, "crashes", "--url", standin.url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Crashes, newest first (2 shown)"
    assert lines[1].split() == ["WHEN", "AGE", "CONTAINER", "CAUSE", "EXIT", "WHAT", "HAPPENED"]
    leak = lines[2].split()
    assert leak[2:8] == ["4m10s", "ago", "agents-worker-1", "memory_leak", "137", "(SIGKILL)"], lines[2]
    assert lines[3] == "    pattern: 3rd memory_leak crash of agents-worker-1 in 1h"
    assert lines[4] == "    advice: raise the memory limit from 64 MiB to 80 MiB (highest working set 63 MiB plus 25%)"
    # the hostile container name: its escape sequence printed as text, never sent to the terminal
    assert "evil-\\x1b[31mred\\x1b[0m-1" in lines[6] and "\x1b" not in out
    assert standin.requests == [("/api/crashes", {"limit": "50"})]


def test_crashes_pass_the_filters_on(standin, capsys):
    before = time.time()
    code, _, _ = _run(capsys, "crashes", "--url", standin.url + "/", "--limit", "5", "--cause", "error",
                      "--container", "agents-worker-1", "--since", "2h")
    (path, query), = standin.requests
    assert code == 0 and path == "/api/crashes"
    assert {k: query[k] for k in ("limit", "cause", "container")} == {"limit": "5", "cause": "error",
                                                                      "container": "agents-worker-1"}
    assert before - 7200 - 1 <= float(query["since"]) <= time.time() - 7200 + 1


def test_json_prints_the_answer_as_it_came(standin, capsys):
    code, out, _ = _run(capsys, "health", "--url", standin.url, "--json")
    assert code == 0 and json.loads(out) == samples.HEALTH


def test_health_and_top(standin, capsys):
    code, out, _ = _run(capsys, "health", "--url", standin.url)
    lines = out.splitlines()
    assert code == 0 and lines[0] == "Health, worst first: host score 82/100, memory 84% used of 8.0 GiB"
    assert lines[2].split()[:6] == ["55", "agents-worker-1", "running", "92%", "of", "64.0"], lines[2]
    assert "growing +1.2 MiB/s" in lines[2] and "1 (last: memory_leak)" in lines[2]
    assert "host -10 memory: host memory 84% used (warning at 80%)" in lines

    code, out, _ = _run(capsys, "top", "--url", standin.url)
    rows = [line.split() for line in out.splitlines()]
    assert code == 0 and rows[1][:2] == ["CONTAINER", "STATE"]
    # highest share of the limit first; unlimited and stopped containers last
    assert [r[0] for r in rows[2:6]] == ["agents-worker-1", "evil-\\x1b[31mred\\x1b[0m-1", "agents-steady-1",
                                         "agents-gone-1"]
    assert rows[2][-5:] == ["growing", "+1.2", "MiB/s", "4m", "critical"], rows[2]
    assert ["claude-code", "3", "1.5", "GiB", "1.6", "GiB", "stable", "0", "B/s"] in rows


@pytest.mark.parametrize(("status", "body", "code", "message"), [
    (200, b"<html>not json", 1, "/api/crashes is not JSON (Expecting value at line 1 column 1)"),
    (200, b'{"crashes": "many"}', 1,
     "is not what the API documents: generated_at: required key is missing (and 1 more)"),
    (200, json.dumps({**samples.CRASHES, "crashes": [{"id": 1}]}).encode(), 1,
     "is not what the API documents: crashes.0.at: required key is missing"),
    (400, b'{"error": "limit: expected an integer from 1 to 1000"}', 2,
     "/api/crashes refused the query: limit: expected an integer from 1 to 1000"),
    (503, b'{"error": "insights are disabled (insights.enabled: false)"}', 1,
     "/api/crashes answered HTTP 503: insights are disabled (insights.enabled: false)"),
    (500, b"boom\nsecond line", 1, "/api/crashes answered HTTP 500: boom"),
])
def test_a_bad_answer_is_one_line_and_an_exit_code(standin, capsys, status, body, code, message):
    standin.answers["/api/crashes"] = (status, body)
    got, out, err = _run(capsys, "crashes", "--url", standin.url)
    assert (got, out) == (code, "")
    assert err.startswith(f"agentwatch crashes: {standin.url}") or err.startswith("agentwatch crashes: the answer")
    assert message in err and len(err.splitlines()) == 1, err


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_printed(standin, capsys):
    url = standin.url.replace("http://", "http://watcher:s3cret@")
    got, _, _ = _run(capsys, "crashes", "--url", url)
    assert got == 0 and standin.authorization == ["Basic d2F0Y2hlcjpzM2NyZXQ="]  # watcher:s3cret
    standin.answers["/api/crashes"] = (500, b"down")
    got, _, err = _run(capsys, "crashes", "--url", url)
    assert got == 1 and "s3cret" not in err and "watcher" not in err and standin.url in err, err


def test_an_old_exporter_without_the_api(standin, capsys):
    got, _, err = _run(capsys, "top", "--url", standin.url + "/nowhere")
    assert got == 1 and "was not found: is this an agentwatch exporter with insights?" in err


def test_an_exporter_that_is_down(capsys):
    port = free_port()
    got, out, err = _run(capsys, "crashes", "--url", f"http://watcher:s3cret@127.0.0.1:{port}")
    assert (got, out) == (1, "")
    assert err == (f"agentwatch crashes: cannot reach the exporter at http://127.0.0.1:{port}: connection refused "
                   "(is `agentwatch exporter` running there? --url sets the address)\n")


def test_an_exporter_that_never_answers(capsys):
    with socket.create_server(("127.0.0.1", 0), backlog=4) as silent:  # accepts the connection, says nothing
        got, _, err = _run(capsys, "health", "--url", f"http://127.0.0.1:{silent.getsockname()[1]}",
                           "--timeout", "0.3")
    assert got == 1 and err.strip().endswith("within 0.3s") and "no answer from" in err, err


@pytest.mark.parametrize("argv", [
    ["crashes", "--url", "127.0.0.1:9847"],
    ["crashes", "--url", "http://127.0.0.1:99999"],
    ["crashes", "--url", "ftp://127.0.0.1"],
    ["crashes", "--url", "http://127.0.0.1:9847/?x=1"],
])
def test_a_bad_url_is_a_usage_error(capsys, argv):
    got, _, err = _run(capsys, *argv)
    assert got == 2 and err.startswith("agentwatch crashes: --url: ") and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("argv", [
    ["crashes", "--since", "yesterday"], ["crashes", "--since", "-5"], ["crashes", "--limit", "0"],
    ["crashes", "--limit", "1001"], ["top", "--timeout", "0"], ["health", "--json", "--plain"],
])
def test_bad_flags_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_the_url_comes_from_the_environment(standin, monkeypatch):
    done = subprocess.run([sys.executable, "-m", "agentwatch.cli", "top"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, cwd="/",
                          env={"PATH": "/usr/bin:/bin", "AGENTWATCH_URL": standin.url})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Memory, highest share of the limit first") and "\x1b" not in done.stdout
