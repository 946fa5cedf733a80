"""HTTPS transport: the standard library's ThreadingHTTPServer with TLS, in a daemon thread.

The TLS handshake happens in the per-connection thread, so one slow client cannot stall the
accept loop. Error responses close the connection, like pve-http-server does.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pvesim.api import Api
from pvesim.tls import server_context

CONNECTION_TIMEOUT = 30.0


def _reason(text: str) -> str:
    """A status-line-safe reason phrase (one line, latin-1)."""
    line = text.replace("\r", " ").split("\n", 1)[0]
    return line.encode("latin-1", errors="replace").decode("latin-1")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pve-api-daemon/3.0"
    sys_version = ""
    server: _TLSServer

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {key: value for key, value in self.headers.items()}
        response = self.server.api.handle(method, self.path, headers, body)
        self.send_response(response.status, _reason(response.reason))
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "max-age=0")
        self.send_header("Pragma", "no-cache")
        if response.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are recorded in Simulator.request_log instead of stderr."""


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], api: Api, context: ssl.SSLContext) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.api = api
        self.context = context
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(CONNECTION_TIMEOUT)
        with contextlib.suppress(OSError):
            # Headers and body go out as separate writes; without this, Nagle + delayed ACK
            # add ~40 ms to every response.
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with self.connections_lock:
            self.connections.add(conn)
        try:
            _Handler(conn, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self.connections_lock:
                self.connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client disconnects are normal here; do not print tracebacks."""

    def close_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class SimServer:
    """A running HTTPS endpoint for one Simulator; stop() closes it and its temp files."""

    def __init__(self, api: Api, host: str = "127.0.0.1", port: int = 0) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="pvesim-tls-"))
        try:
            context = server_context(self._tmp)
            self._httpd = _TLSServer((host, port), api, context)
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"pvesim-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._stopped = False

    @property
    def host_port(self) -> str:
        """`host:port` as proxmoxer's `host` argument wants it (IPv6 bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host_port}"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
