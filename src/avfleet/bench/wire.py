"""The bench agent's HTTP plumbing, built to survive hostile clients.

`http.server.ThreadingHTTPServer` as it comes gives every connection a thread
for as long as the client likes: 151 stalled connections held 151 threads, and
once file descriptors ran out `/healthz` stopped answering. `BoundedServer`:

- at most `max_connections` connections are served at once; one more is told
  503 (Retry-After) at once by the accepting thread and closed;
- every connection has a socket timeout per read and a deadline for the whole
  request: a client that sends a byte every few seconds still loses its slot
  when the deadline passes.

`read_json` reads a request body strictly: Content-Length must be a decimal
integer within the cap (411/400/413 otherwise), the body UTF-8 JSON nested at
most `MAX_DEPTH` deep. Each failure is a `HttpError` with its status, so the
client always gets an answer instead of a dropped connection.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading

MAX_DEPTH = 8
_LENGTH = re.compile(r"^[0-9]{1,10}$")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def read_json(handler: http.server.BaseHTTPRequestHandler, cap: int) -> object:
    """The request body as JSON, read strictly (see the module doc)."""
    raw = handler.headers.get("Content-Length")
    if raw is None:
        raise HttpError(411, "Content-Length is required")
    if not _LENGTH.match(raw.strip()):
        raise HttpError(400, "Content-Length must be a non-negative decimal integer")
    length = int(raw)
    if length > cap:
        raise HttpError(413, f"request over {cap} bytes")
    body = handler.rfile.read(length)
    if len(body) != length:
        raise HttpError(400, f"the body ended after {len(body)} of {length} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HttpError(400, f"the request body is not UTF-8 (byte {e.start})") from None
    depth = nesting(text)
    if depth > MAX_DEPTH:
        raise HttpError(400, f"the request body nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text or "null")
    except ValueError as e:
        raise HttpError(400, f"the request body is not JSON: {e}") from None


def nesting(text: str) -> int:
    """The deepest nesting of [ and { in JSON text (outside strings), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


_BUSY = json.dumps({"error": "too many connections; retry"}).encode()
_BUSY_REPLY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
    + str(len(_BUSY)).encode()
    + b"\r\n\r\n"
    + _BUSY
)


class BoundedServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server with a bounded number of connections, each with a deadline."""

    daemon_threads = True
    # socketserver's default backlog is 5: under a burst of connections (a
    # flood, or a busy host where the accepting thread runs late) the kernel
    # drops SYNs past it and the client retries a second later. Take the
    # system's maximum, as Go's net/http does, so a burst waits in the queue
    # and a full slot answers 503 at once.
    request_queue_size = socket.SOMAXCONN

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[http.server.BaseHTTPRequestHandler],
        *,
        max_connections: int,
        io_timeout_s: float,
        request_deadline_s: float,
    ) -> None:
        self.slots = threading.BoundedSemaphore(max_connections)
        self.io_timeout_s = io_timeout_s
        self.request_deadline_s = request_deadline_s
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                request.setblocking(False)
                request.send(_BUSY_REPLY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:
        request.settimeout(self.io_timeout_s)
        # The whole request's deadline: a trickling client is cut off when it passes.
        timer = threading.Timer(self.request_deadline_s, _cut, (request,))
        timer.daemon = True
        timer.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            timer.cancel()
            self.slots.release()


def _cut(request: socket.socket) -> None:
    try:
        request.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
