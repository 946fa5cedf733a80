"""A minimal HTTP CONNECT proxy: what `HTTPS_PROXY` points at in an operator's environment.
It records each tunnel's target, so a test can see that a request really went through it."""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Tunnel(socketserver.StreamRequestHandler):
    server: _ProxyServer

    def handle(self) -> None:
        request_line = self.rfile.readline().decode("latin-1").split()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # the CONNECT request's headers
        if len(request_line) != 3 or request_line[0] != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        host, port = request_line[1].rsplit(":", 1)
        self.server.tunnels.append(request_line[1])
        with socket.create_connection((host, int(port)), timeout=10) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _pipe(self.connection, upstream)


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    ends = [client, upstream]
    while True:
        readable, _, _ = select.select(ends, [], [], 10)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            (upstream if sock is client else client).sendall(data)


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.tunnels: list[str] = []


@contextmanager
def connect_proxy() -> Iterator[tuple[str, list[str]]]:
    """(proxy URL, the targets tunnelled so far)."""
    server = _ProxyServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.tunnels
    finally:
        server.shutdown()
        server.server_close()
