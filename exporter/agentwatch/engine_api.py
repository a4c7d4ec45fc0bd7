"""A small read-only Docker Engine API client for the exporter, on the standard library alone.

The exporter asks the engine five things: list containers, inspect one, one-shot stats of one,
past events in a window, and the live event stream (plus ``/_ping``). The docker SDK answers them
through requests and urllib3, which issue 14's profiles put at about 2.3 ms of interpreter time
per inspect (against 0.3 ms here), a third of a container collection's time, and about 6 MB of
the exporter's resident memory for the imports alone. The scaler, which acts on the engine, keeps
the SDK (``engine.make_client``).

Addresses are the SDK's: ``unix:///path`` (or a bare path), ``tcp://host:port``, ``http://``,
``https://``; with no host, ``DOCKER_HOST`` and, for TCP, ``DOCKER_TLS_VERIFY`` and
``DOCKER_CERT_PATH`` as the docker CLI reads them. Paths carry no API version, so the engine
answers in its own current version (every field read here has been stable since API 1.24).

Failures keep their meaning for ``engine.is_unreachable`` and ``engine.is_silent``: nothing
listening raises ``ConnectionError`` or ``FileNotFoundError``, no answer in time ``TimeoutError``;
an engine that answers with an error raises ``EngineError`` (``NotFound`` for a 404), and a body
that is not what the API promises raises ``ValueError``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

#: The default engine socket, as the SDK and the CLI use it.
DEFAULT_SOCKET = "/var/run/docker.sock"
#: Largest body read from one answer: a listing of 10,000 containers is about 10 MB.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Idle connections kept per client; more callers at once open (and then close) their own.
DEFAULT_POOL = 4


class EngineError(Exception):
    """The engine answered with an error status."""

    def __init__(self, status: int, path: str, message: str) -> None:
        super().__init__(f"{path}: {status} {message}")
        self.status = status


class NotFound(EngineError):
    """404: no such container (removed since it was listed)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _env_tls() -> ssl.SSLContext | None:
    """TLS as the docker CLI sets it up from DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, if asked."""
    if not os.environ.get("DOCKER_TLS_VERIFY"):
        return None
    certs = os.environ.get("DOCKER_CERT_PATH") or os.path.join(os.path.expanduser("~"), ".docker")
    context = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    context.load_cert_chain(os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem"))
    return context


class EngineClient:
    """Thread-safe: each call takes an idle connection from a small pool or opens one."""

    def __init__(self, host: str | None, timeout: float, pool_size: int = DEFAULT_POOL) -> None:
        tls = None
        if not host:
            host = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
            tls = _env_tls()
        self.host = host
        self.timeout = timeout
        self.pool_size = pool_size
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        if host.startswith("/"):
            host = "unix://" + host
        parts = urlsplit(host)
        if parts.scheme == "unix":
            self._unix: str | None = parts.path or DEFAULT_SOCKET
            self._address: tuple[str, int] = ("localhost", 0)
        elif parts.scheme in ("tcp", "http", "https") and parts.hostname:
            self._unix = None
            default_port = 2376 if tls is not None or parts.scheme == "https" else 2375
            self._address = (parts.hostname, parts.port or default_port)
            if parts.scheme == "https" and tls is None:
                tls = ssl.create_default_context()
        else:
            raise ValueError(f"Docker host {host!r}: expected unix:///path, tcp://host:port or https://host:port")
        self._tls = tls

    # --- connections -------------------------------------------------------------------------

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        t = self.timeout if timeout is None else timeout
        if self._unix is not None:
            return _UnixConnection(self._unix, t)
        host, port = self._address
        if self._tls is not None:
            return http.client.HTTPSConnection(host, port, timeout=t, context=self._tls)
        return http.client.HTTPConnection(host, port, timeout=t)

    def _take(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._connect(None)

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # --- requests ----------------------------------------------------------------------------

    @staticmethod
    def _url(path: str, params: Mapping[str, Any] | None) -> str:
        return f"{path}?{urlencode(params)}" if params else path

    def _request(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        """GET ``path``; the whole body, or an error. A kept connection the engine closed meanwhile
        is retried once on a new one (that is not the engine being down)."""
        url = self._url(path, params)
        for attempt in (0, 1):
            conn = self._take()
            try:
                conn.request("GET", url, headers={"Host": "docker"})
                response = conn.getresponse()
                body = response.read(MAX_BODY_BYTES + 1)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if attempt == 0:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if len(body) > MAX_BODY_BYTES:
                conn.close()
                raise ValueError(f"{path}: answer larger than {MAX_BODY_BYTES // 2**20} MiB")
            if response.will_close:
                conn.close()
            else:
                self._give_back(conn)
            if response.status >= 400:
                raise _error(response.status, path, body)
            return body
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        body = self._request(path, params)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None

    def ping(self) -> bool:
        return self._request("/_ping").strip() == b"OK"

    def containers(self, all: bool = False) -> Any:
        return self.get_json("/containers/json", {"all": "1"} if all else None)

    def inspect_container(self, container: str) -> Any:
        return self.get_json(f"/containers/{quote(container, safe='')}/json")

    def stats(self, container: str) -> Any:
        """One sample, without the engine's second read a second later (API 1.41+ honours one-shot)."""
        return self.get_json(f"/containers/{quote(container, safe='')}/stats",
                             {"stream": "false", "one-shot": "true"})

    def events(self, filters: Mapping[str, Any], since: str | None = None, until: str | None = None,
               timeout: float | None = None) -> EventStream:
        """The event stream (``until`` None: live, read without a timeout once connected; else the
        past window, which the engine sends and then closes). Close it to stop a reader."""
        params = {"filters": json.dumps(filters)}
        if since is not None:
            params["since"] = since
        if until is not None:
            params["until"] = until
        conn = self._connect(timeout)
        try:
            conn.request("GET", self._url("/events", params), headers={"Host": "docker"})
            response = conn.getresponse()
            if response.status >= 400:
                raise _error(response.status, "/events", response.read(64 * 1024))
            if until is None and conn.sock is not None:
                conn.sock.settimeout(None)  # a quiet engine sends nothing for hours
        except BaseException:
            conn.close()
            raise
        return EventStream(conn, response)


class EventStream:
    """Decoded events, one per line, until the engine closes the stream or ``close()`` is called
    (from any thread: it shuts the socket down, which ends a blocked read)."""

    #: Longest line accepted from the stream (an event is a few hundred bytes).
    MAX_LINE = 1024 * 1024

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._response = response
        self._closed = False
        self._reading = False

    def __iter__(self) -> Iterator[Any]:
        self._reading = True
        try:
            while not self._closed:
                try:
                    line = self._response.readline(self.MAX_LINE)
                except (OSError, ValueError, http.client.HTTPException):
                    if self._closed:  # close() shut the socket under this read
                        return
                    raise
                if not line:
                    return
                if len(line) >= self.MAX_LINE and not line.endswith(b"\n"):
                    raise ValueError(f"/events: a line longer than {self.MAX_LINE} bytes")
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError:
                        raise ValueError(f"/events: not JSON: {line[:80]!r}") from None
        finally:
            self._reading = False
            self._conn.close()  # the reader closes what it read from: no race with its own reads

    def close(self) -> None:
        self._closed = True
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # ends a read blocked in another thread
            except OSError:  # already closed by the engine
                pass
        if not self._reading:
            self._conn.close()


def _error(status: int, path: str, body: bytes) -> EngineError:
    try:
        message = str(json.loads(body).get("message") or "")
    except (ValueError, AttributeError):
        message = body[:200].decode("utf-8", "replace").strip()
    return (NotFound if status == 404 else EngineError)(status, path, message or http.client.responses.get(status, ""))
