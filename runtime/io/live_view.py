"""``--view-port``: a live page of the overlays in any browser, for headless and remote machines.

Standard library only (``http.server``), MJPEG (``multipart/x-mixed-replace``), which every browser shows
in a plain ``<img>``. Routes:

* ``/`` the page: the mosaic of every stream (one tile each, with its status line) and a status list;
* ``/mosaic.mjpg``, ``/stream/<id>.mjpg`` live MJPEG of the mosaic / of one stream;
* ``/snapshot.jpg``, ``/snapshot/<id>.jpg`` the latest picture; ``/status.json`` the streams' status.

The stream never waits for a viewer: :meth:`LiveView.publish` only swaps the stream's latest-frame slot
(a reference, O(1)). JPEG encoding happens in the viewers' threads, once per new picture however many
viewers there are, and not at all when nobody watches. A slow viewer gets the newest picture each time
it is ready for one (the ones in between are dropped, never queued); one that stops reading is cut
off after ``send_timeout_s``. The server lives as long as the stream: :meth:`LiveView.close`.

Hostile viewers: an unknown stream is a 404 at once; a live response ends when its viewer leaves or no new
picture came for ``idle_timeout_s``; at most ``max_handlers`` requests are served at a time (503 past that);
a ``Host`` header naming anything but this server is refused (DNS rebinding; ``netguard.host_allowed``,
more names with ``allowed_hosts``); a publish wakes only the viewers of that stream and of the mosaic.
"""

from __future__ import annotations

import errno
import json
import re
import select
import socket
import threading
import time
from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from esan.runtime.core.errors import UserError
from esan.runtime.core.netguard import host_allowed
from esan.runtime.io.live_page import page_html
from esan.runtime.io.tiles import tile

BOUNDARY = "esanframe"
SEND_BUFFER = 128 * 1024  # per viewer: a slow one sees fresh pictures, not seconds of buffered ones
MOSAIC = object()  # the key of the all-streams picture
MAX_HANDLERS = 64  # requests served at once (each live viewer holds one); more get a 503
IDLE_TIMEOUT_S = 120.0  # a live response ends after this long without a new picture
_BUSY_BODY = b"too many viewers at once; try again later\n"
BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


@dataclass
class _Slot:
    image: np.ndarray | None = None
    status: str = ""
    seq: int = 0
    updated: float = 0.0
    ended: bool = False


class LiveView:
    """An HTTP server on ``address:port`` (port 0: any free one; see :attr:`url`), started at once."""

    def __init__(self, port: int, address: str = "127.0.0.1", *, title: str = "esan-rt", quality: int = 80,
                 max_fps: float = 30.0, max_wh: tuple[int, int] = (1920, 1080), send_timeout_s: float = 5.0,
                 allowed_hosts: Iterable[str] = (), max_handlers: int = MAX_HANDLERS,
                 idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.title = title
        self.bind_address = address
        self.allowed_hosts = tuple(allowed_hosts)
        self.idle_timeout_s = idle_timeout_s
        self.quality = int(quality)
        self.min_gap_s = 1.0 / max_fps
        self.max_wh = max_wh
        self.closed = False
        self.published = 0
        self.sent = 0
        self.viewers = 0
        self.viewers_total = 0
        self._changes = 0  # publishes and ends: the mosaic's version
        self._slots: dict[Hashable, _Slot] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # close, and the state below
        self._waits: dict[Any, threading.Condition] = {}  # per key (same lock): a publish wakes only its viewers
        self._stop = threading.Event()
        self._cache: dict[Any, tuple[int, bytes]] = {}
        self._enc_locks: dict[Any, threading.Lock] = {}
        self._conns: set[socket.socket] = set()
        self._server = _bind(address, port, send_timeout_s)
        self._server.view = self
        self._server.max_handlers = max(1, int(max_handlers))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="live-view", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    # -- the stream's side ------------------------------------------------------------------------
    def publish(self, stream_id: Hashable, image_bgr: np.ndarray, status: str = "") -> None:
        """Make ``image_bgr`` the latest picture of ``stream_id`` (kept by reference: do not modify it)."""
        with self._cond:
            slot = self._slots.setdefault(stream_id, _Slot())
            slot.image, slot.status, slot.ended = image_bgr, status, False
            slot.seq += 1
            slot.updated = time.time()
            self.published += 1
            self._changes += 1
            self._wake(stream_id)

    def end_stream(self, stream_id: Hashable) -> None:
        """Mark a stream as ended (its last picture stays on the page, labelled so)."""
        with self._cond:
            if stream_id in self._slots:
                self._slots[stream_id].ended = True
                self._changes += 1
                self._wake(stream_id)

    def _wake(self, key: Hashable) -> None:
        """Wake the viewers of ``key`` and of the mosaic (the lock is held)."""
        for k in (key, MOSAIC):
            if (cond := self._waits.get(k)) is not None:
                cond.notify_all()

    def close(self) -> None:
        """Stop serving: viewers' connections end, the port is released (idempotent)."""
        with self._cond:
            if self.closed:
                return
            self.closed = True
            self._cond.notify_all()
            for cond in self._waits.values():
                cond.notify_all()
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        with self._cond:
            conns = list(self._conns)
        for conn in conns:  # wakes a viewer thread blocked in a send
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=2.0)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"published": self.published, "sent": self.sent, "viewers": self.viewers,
                    "viewers_total": self.viewers_total, "streams": len(self._slots)}

    # -- the viewers' side ------------------------------------------------------------------------
    def key_for(self, name: str) -> Hashable | None:
        """The stream called ``name`` in URLs (``None``: no such stream, now)."""
        with self._cond:
            return next((k for k in self._slots if str(k) == name), None)

    def _version(self, key: Any) -> int:
        if key is MOSAIC:
            return self._changes
        slot = self._slots.get(key)
        return 2 * slot.seq + int(slot.ended) if slot is not None and slot.image is not None else 0

    def wait_new(self, key: Any, last: int, timeout: float) -> tuple[int, bytes] | None:
        """The newest JPEG of ``key`` once its version differs from ``last`` (``None``: timeout or closed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            cond = self._waits.setdefault(key, threading.Condition(self._lock))
            while not self.closed and self._version(key) in (0, last):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                cond.wait(remaining)
            if self.closed:
                return None
        return self.jpeg(key)

    def jpeg(self, key: Any) -> tuple[int, bytes] | None:
        """``(version, JPEG bytes)`` of the latest picture of ``key`` (encoded once per version)."""
        with self._cond:
            lock = self._enc_locks.setdefault(key, threading.Lock())
        with lock:
            with self._cond:
                version = self._version(key)
                slots = self._slots if key is MOSAIC else {key: self._slots[key]} if key in self._slots else {}
                images = {k: s.image for k, s in slots.items() if s.image is not None}
                labels = {k: s.status + ("  (ended)" if s.ended else "") for k, s in slots.items()}
            if not images:
                return None
            cached = self._cache.get(key)
            if cached is not None and cached[0] == version:
                return cached
            picture = tile(images, labels, max_wh=self.max_wh)
            ok, buf = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                return None
            self._cache[key] = (version, buf.tobytes())
            return self._cache[key]

    def status(self) -> dict[str, Any]:
        now = time.time()
        with self._cond:
            streams = [{"id": str(k), "status": s.status, "frames": s.seq, "ended": s.ended,
                        "age_s": round(now - s.updated, 3) if s.updated else None} for k, s in self._slots.items()]
            return {"title": self.title, "state": "closed" if self.closed else "running",
                    "viewers": self.viewers, "streams": streams}

    @contextmanager
    def _viewer(self, conn: socket.socket) -> Iterator[None]:
        with self._cond:
            self.viewers += 1
            self.viewers_total += 1
            self._conns.add(conn)
        try:
            yield
        finally:
            with self._cond:
                self.viewers -= 1
                self._conns.discard(conn)

    def _count_sent(self) -> None:
        with self._cond:
            self.sent += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    view: LiveView
    max_handlers = MAX_HANDLERS
    handlers = 0
    _count = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count:
            busy = self.handlers >= self.max_handlers
            self.handlers += 0 if busy else 1
        if not busy:
            super().process_request(request, client_address)
            return
        try:  # refused in the accept thread: read what came with the connection, answer, close
            if select.select([request], [], [], 0.05)[0]:
                request.recv(65536, socket.MSG_DONTWAIT)
            request.settimeout(1.0)
            request.sendall(BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count:
                self.handlers -= 1


class _Server6(_Server):
    address_family = socket.AF_INET6


def _bind(address: str, port: int, send_timeout_s: float) -> _Server:
    if not 0 <= int(port) <= 65535:
        raise UserError(f"--view-port must be 0..65535 (0: any free port), got {port}")
    handler = type("LiveViewHandler", (_Handler,), {"timeout": send_timeout_s})
    cls = _Server6 if ":" in address else _Server
    try:
        return cls((address, int(port)), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"--view-port {port}: the port is in use; choose another (0 picks a free one)") from None
        if exc.errno == errno.EACCES:
            raise UserError(f"--view-port {port}: permission denied; use a port above 1023") from None
        raise UserError(f"--view-address {address}: cannot serve there ({exc.strerror or exc}); "
                        "use 127.0.0.1 (this machine) or 0.0.0.0 (every interface)") from None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "esan-rt-live"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (quiet: the stream owns stderr)
        pass

    def do_GET(self) -> None:  # noqa: N802
        view = self.server.view
        path = urlsplit(self.path).path
        try:
            host = self.headers.get("Host")
            if not host_allowed(host, view.bind_address, view.allowed_hosts):
                self._send(403, "text/plain", f"host {host[:100]!r} is not served here; the operator can allow "
                           "it with --view-allow-host NAME\n".encode())
            elif path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", page_html(view.title).encode())
            elif path == "/status.json":
                self._send(200, "application/json", json.dumps(view.status()).encode())
            elif path == "/snapshot.jpg":
                self._snapshot(MOSAIC)
            elif path == "/mosaic.mjpg":
                with view._viewer(self.connection):
                    self._live(MOSAIC)
            elif m := re.fullmatch(r"/snapshot/([^/]+)\.jpg", path):
                self._snapshot(view.key_for(unquote(m[1])))
            elif (m := re.fullmatch(r"/stream/([^/]+)\.mjpg", path)) and view.key_for(unquote(m[1])) is not None:
                key = view.key_for(unquote(m[1]))  # an unknown stream falls through to the 404 below
                with view._viewer(self.connection):
                    self._live(key)
            else:
                self._send(404, "text/plain", b"not found: try /\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass  # the viewer left, stalled past the send timeout, or the server is closing

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _snapshot(self, key: Any) -> None:
        got = None if key is None else self.server.view.jpeg(key)
        if got is None:
            self._send(404 if key is None else 503, "text/plain", b"no such stream, or no picture yet\n")
        else:
            self._send(200, "image/jpeg", got[1])

    def _live(self, key: Any) -> None:
        """MJPEG: the newest picture of ``key`` whenever there is a new one and this viewer is ready."""
        view = self.server.view
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        # each part is followed by the next boundary at once, so browsers show it without waiting
        self.wfile.write(f"--{BOUNDARY}\r\n".encode())
        last, tail = -1, f"\r\n--{BOUNDARY}\r\n".encode()
        idle_until = time.monotonic() + view.idle_timeout_s
        while not view.closed:
            got = view.wait_new(key, last, timeout=0.5)
            if got is None:
                if self._viewer_left() or time.monotonic() > idle_until:
                    break
                continue
            idle_until = time.monotonic() + view.idle_timeout_s
            last, data = got
            head = f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            self.wfile.write(head + data + tail)
            view._count_sent()
            if view._stop.wait(view.min_gap_s):
                break

    def _viewer_left(self) -> bool:
        """The viewer closed its side (readable with nothing to read): stop serving it."""
        try:
            if not select.select([self.connection], [], [], 0)[0]:
                return False
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
