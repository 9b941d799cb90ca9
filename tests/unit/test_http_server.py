"""The daemon's HTTP server (/metrics, /healthz, /readyz, the push wake):
a client that goes silent is cut off, its thread freed, and the others are
served meanwhile."""

from __future__ import annotations

import socket
import time
import urllib.request

from scaler.run import observability
from scaler.run.observability import Health, Metrics, serve


def test_a_silent_client_is_cut_off_and_the_others_are_served(monkeypatch):
    monkeypatch.setattr(observability, "READ_SECONDS", 0.5)
    server = serve(Metrics(), Health(policies_loaded=True), address="127.0.0.1", port=0,
                   posts={"/wake": lambda headers, body: (200, {"result": "woken"}, {})})
    port = server.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stalled:
            # A body announced and never sent: the handler waits on it, at most its timeout.
            stalled.sendall(b"POST /wake HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                assert answer.read() == b"ok\n"
            started = time.monotonic()
            assert stalled.recv(1024) == b""  # closed by the server, nothing answered
            assert time.monotonic() - started < 5
    finally:
        server.shutdown()
        server.server_close()
