"""b4 got no thread: only a 404 for the message is an unknown Message-ID
(exit 2); every other way lore fails is "lore unreachable at URL: <why>"
(exit 5). The real b4 against real sockets: the loopback lore (404), a name
that cannot resolve, a closed port, a server that resets the connection,
TLS to a plain-HTTP server, and servers that answer 500, 503 and 403.

Before: the name that did not resolve was "unknown Message-ID" (b4's "Name
or service not known" matched "not known"), a 5xx or 403 was "b4 could not
get a series" (exit 2), and no line said why lore was unreachable.
"""

from __future__ import annotations

import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator.core.errors import BadInput, Exit, OrchError
from orchestrator.source import intake


@pytest.fixture
def isolated(b4_env, monkeypatch):
    for k, v in b4_env.items():
        monkeypatch.setenv(k, v)


def fetch(tmp_path, url, msgid="nobody@example.org"):
    return intake.fetch(msgid, mbox=None, outdir=tmp_path / "out", log=tmp_path / "b4.log",
                        lore_url=url, timeout=60)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class _Status(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(self.server.status)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"error\n")

    do_HEAD = do_GET


@pytest.fixture
def answering():
    """Servers that answer every request with one status: {status: url}."""
    servers = {}

    def start(status: int) -> str:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
        srv.status = status
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers[status] = srv
        return f"http://127.0.0.1:{srv.server_address[1]}"
    yield start
    for srv in servers.values():
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def resetting():
    """A server that resets every connection once it has read the request."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)

    def serve():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            c.recv(4096)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{ls.getsockname()[1]}"
    ls.close()


def test_a_404_for_the_message_is_an_unknown_message_id(tmp_path, lore_server, isolated):
    with pytest.raises(BadInput, match="unknown Message-ID nobody@example.org at http://"):
        fetch(tmp_path, lore_server.url)


def _unreachable(tmp_path, url, *reasons):
    with pytest.raises(OrchError) as e:
        fetch(tmp_path, url)
    assert e.value.exit == Exit.INFRA, e.value
    said = str(e.value)
    assert said.startswith(f"lore unreachable at {url.rstrip('/')}: "), said
    assert any(f": {r} (see " in said for r in reasons), said
    assert "unknown Message-ID" not in said and "\n" not in said


def test_a_name_that_does_not_resolve_is_lore_unreachable(tmp_path, isolated):
    # "Name or service not known" once read as "not known": an unknown id.
    _unreachable(tmp_path, "http://lore.invalid",
                 "Name or service not known", "Temporary failure in name resolution")


def test_a_refused_connection_is_lore_unreachable(tmp_path, isolated):
    _unreachable(tmp_path, f"http://127.0.0.1:{_closed_port()}/", "Connection refused")


def test_a_reset_connection_is_lore_unreachable(tmp_path, isolated, resetting):
    _unreachable(tmp_path, resetting, "Connection reset by peer")


def test_tls_to_a_plain_server_is_lore_unreachable(tmp_path, isolated, lore_server):
    _unreachable(tmp_path, lore_server.url.replace("http://", "https://"),
                 "[SSL: WRONG_VERSION_NUMBER] wrong version number")


@pytest.mark.parametrize("status", [500, 503, 403])
def test_a_server_error_is_lore_unreachable(tmp_path, isolated, answering, status):
    _unreachable(tmp_path, answering(status), f"HTTP {status}")
