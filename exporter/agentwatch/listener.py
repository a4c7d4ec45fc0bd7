"""The listening socket, bound before a server starts: a bad or busy address is one clear line.

``web.run_app`` binds only after the app has started (and "listening on" was logged), and reports
a busy port as a traceback. Binding first, then handing the socket to ``run_app(sock=...)``, turns
every address problem into a ``ListenError`` the command prints as one line (exit 2).
"""

from __future__ import annotations

import os
import socket

from agentwatch.configfile import parse_listen


class ListenError(Exception):
    """The address cannot be listened on (not resolvable, not local, busy, not permitted)."""


def bind(listen: str) -> socket.socket:
    """A listening TCP socket on HOST:PORT; ListenError names the address and the reason."""
    try:
        host, port = parse_listen(listen)
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
        return socket.create_server(address, family=family, backlog=128)
    except ValueError as exc:
        raise ListenError(f"cannot listen on {listen[:80]!r}: {exc}") from None
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {listen}: {exc.strerror}") from None
    except OSError as exc:  # create_server appends the address to strerror; the errno says it all
        raise ListenError(f"cannot listen on {listen}: {os.strerror(exc.errno) if exc.errno else exc}") from None
