"""Slack-shaped and Discord-shaped webhook receivers on loopback that record and show what they get.

Alertmanager posts to them exactly as it would to Slack's incoming webhook (``POST /slack``, a
``attachments`` payload) and to Discord's (``POST /discord``, an ``embeds`` payload), so the demo
proves the shipped receivers, routes and templates, not a stand-in config. No message leaves the
machine. Bodies are bounded and anything unparsable is recorded as such, never raised.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1 << 20
#: The shipped title template: "[FIRING:2] AlertName (severity) ..." or "[RESOLVED] AlertName ...".
TITLE = re.compile(r"^\[(?P<status>FIRING|RESOLVED)(?::\d+)?\]\s+(?P<alertname>\S+)")


@dataclass(frozen=True)
class Message:
    """One notification as a chat service would show it."""

    at: float
    channel: str  # "slack" or "discord"
    room: str
    status: str  # "firing", "resolved" or "unknown"
    alertname: str
    title: str
    text: str


def parse(channel: str, body: bytes, at: float) -> Message:
    """The title, text and room of a Slack or Discord webhook body; unknown shapes are kept as text."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    title, text, room = "", "", ""
    if isinstance(data, dict) and channel == "slack":
        room = str(data.get("channel") or "")
        attachments = data.get("attachments")
        first = attachments[0] if isinstance(attachments, list) and attachments else {}
        if isinstance(first, dict):
            title, text = str(first.get("title") or ""), str(first.get("text") or "")
        text = text or str(data.get("text") or "")
    elif isinstance(data, dict) and channel == "discord":
        embeds = data.get("embeds")
        first = embeds[0] if isinstance(embeds, list) and embeds else {}
        if isinstance(first, dict):
            title, text = str(first.get("title") or ""), str(first.get("description") or "")
        text = text or str(data.get("content") or "")
    else:
        text = body[:200].decode(errors="replace")
    match = TITLE.match(title)
    status = match.group("status").lower() if match else "unknown"
    return Message(at, channel, room, status, match.group("alertname") if match else "", title, text)


class ChatReceivers:
    """Both receivers on one loopback port; ``on_message`` is called for each message (from a server thread)."""

    def __init__(self, on_message: Callable[[Message], None] = lambda _: None) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._on_message = on_message
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                channel = self.path.strip("/")
                raw_length = self.headers.get("Content-Length") or "0"
                length = int(raw_length) if raw_length.isdigit() else -1
                if channel not in ("slack", "discord") or not 0 <= length <= MAX_BODY:
                    self.send_error(404 if channel not in ("slack", "discord") else 413)
                    return
                receivers.record(parse(channel, self.rfile.read(length), time.monotonic()))
                ok = channel == "slack"
                self.send_response(200 if ok else 204)
                self.send_header("Content-Length", "2" if ok else "0")
                self.end_headers()
                if ok:
                    self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-receivers", daemon=True)

    @property
    def slack_url(self) -> str:
        return f"{self.url}/slack"

    @property
    def discord_url(self) -> str:
        return f"{self.url}/discord"

    def record(self, message: Message) -> None:
        with self._lock:
            self.messages.append(message)
        try:
            self._on_message(message)
        except Exception:  # showing a message must never break receiving the next one
            pass

    def received(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def start(self) -> ChatReceivers:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
