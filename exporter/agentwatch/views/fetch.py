"""Reading the exporter's insight APIs for the CLI: every failure is one line and an exit code.

Exit codes (also in the commands' help): 1 when the exporter cannot give an answer to show
(down, timed out, insights disabled, an HTTP error, an answer that is not the documented JSON);
2 when the request itself is wrong (a bad ``--url``, or a query the API refuses with 400).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from agentwatch.views.fmt import clean

#: Exit code when the exporter gives nothing to show; and when the request is wrong.
EXIT_UNAVAILABLE = 1
EXIT_USAGE = 2
#: An answer larger than this is refused (1000 crashes are about 2 MiB).
MAX_ANSWER_BYTES = 16 << 20


class FetchError(Exception):
    """One line for the user and the exit code that goes with it."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def base_url(raw: str) -> str:
    """A usable exporter base URL (``http[s]://host[:port][/prefix]``, no query), without a trailing slash."""
    parts = urllib.parse.urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"--url: expected http://HOST:PORT (got {clean(raw, 80)!r})", EXIT_USAGE)
    try:
        parts.port  # noqa: B018 (validates the port)
    except ValueError:
        raise FetchError(f"--url: bad port in {shown(raw)!r}", EXIT_USAGE) from None
    if parts.query or parts.fragment:
        raise FetchError(f"--url: expected no query or fragment (got {shown(raw)!r})", EXIT_USAGE)
    return raw.strip().rstrip("/")


def shown(url: str) -> str:
    """The URL as it may be printed: any user:password@ is dropped."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return clean(urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), 120)


def _error_of(body: bytes) -> str:
    """The API's ``{"error": ...}`` line, else the first line of the body."""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return clean(data["error"], 160)
    except ValueError:
        pass
    text = body.decode("utf-8", "replace").strip().splitlines()
    return clean(text[0], 160) if text else "no details"


def get_json(base: str, path: str, query: Mapping[str, str], timeout: float) -> Any:
    """GET ``base + path`` with ``query`` and return the parsed JSON, or raise :class:`FetchError`."""
    where = shown(base + path)
    parts = urllib.parse.urlsplit(base)
    headers = {"Accept": "application/json"}
    if parts.username is not None:  # user:password@ becomes basic auth (a reverse proxy in front)
        secret = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(secret.encode()).decode()
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[1], parts.path, "", ""))
    url = base + path + ("?" + urllib.parse.urlencode(query) if query else "")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the exporter is never behind a proxy
    request = urllib.request.Request(url, headers=headers)
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, where) from None
    except urllib.error.URLError as exc:
        raise FetchError(_unreachable(exc.reason, base, timeout), EXIT_UNAVAILABLE) from None
    except TimeoutError:
        raise FetchError(f"no answer from {shown(base)} within {timeout:g}s", EXIT_UNAVAILABLE) from None
    except (http.client.HTTPException, OSError) as exc:
        detail = clean(str(exc), 120) or type(exc).__name__
        raise FetchError(f"the exporter at {shown(base)} broke off the answer: {detail}", EXIT_UNAVAILABLE) from None
    if len(body) > MAX_ANSWER_BYTES:
        raise FetchError(f"the answer from {where} is larger than {MAX_ANSWER_BYTES >> 20} MiB", EXIT_UNAVAILABLE)
    try:
        return json.loads(body)
    except ValueError as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) \
            else "not UTF-8"
        raise FetchError(f"the answer from {where} is not JSON ({detail})", EXIT_UNAVAILABLE) from None


def _http_error(exc: urllib.error.HTTPError, where: str) -> FetchError:
    try:
        detail = _error_of(exc.read(64 * 1024))
    except OSError:
        detail = "no details"
    if exc.code == 400:
        return FetchError(f"{where} refused the query: {detail}", EXIT_USAGE)
    if exc.code == 404:
        return FetchError(f"{where} was not found: is this an agentwatch exporter with insights?", EXIT_UNAVAILABLE)
    return FetchError(f"{where} answered HTTP {exc.code}: {detail}", EXIT_UNAVAILABLE)


def _unreachable(reason: object, base: str, timeout: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return (f"cannot reach the exporter at {shown(base)}: connection refused "
                "(is `agentwatch exporter` running there? --url sets the address)")
    if isinstance(reason, TimeoutError):
        return f"no answer from {shown(base)} within {timeout:g}s"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the exporter's host in {shown(base)}"
    return f"cannot reach the exporter at {shown(base)}: {clean(str(reason), 120)}"
