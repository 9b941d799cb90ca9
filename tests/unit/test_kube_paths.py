"""Where Kube's requests go: the API server's paths, under the path the
configured server URL has (a Rancher-style proxy URL puts one before them)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client as k8s

from scaler.cluster.kube import Kube, NotFound, Resource

DEPLOYMENTS = Resource("apps", "v1", "deployments")


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        body = b'{"kind": "Status", "code": 404, "reason": "NotFound"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("prefix", ["", "/k8s/clusters/c-42"])
def test_requests_go_under_the_path_of_the_server_url(prefix):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.paths = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        configuration = k8s.Configuration()
        configuration.host = f"http://127.0.0.1:{server.server_address[1]}{prefix}"
        kube = Kube(k8s.ApiClient(configuration))
        for _ in range(2):
            with pytest.raises(NotFound):
                kube.get(DEPLOYMENTS, "llm", "chat")
    finally:
        server.shutdown()
        server.server_close()
    assert server.paths == [f"{prefix}/apis/apps/v1/namespaces/llm/deployments/chat"] * 2
