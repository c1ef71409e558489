"""The browser view's server over plain HTTP: routes, MJPEG framing, latest-frame slots, slow viewers.

Pictures here are synthetic (each carries its publish number as its grey level), so what a viewer got
can be checked exactly; ``test_live_view_stream.py`` runs the real pipeline and Chromium.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from support.viewtools import free_port, get_json, read_mjpeg, wait_until

from esan.runtime.core.errors import UserError
from esan.runtime.io.live_view import LiveView

H, W = 120, 200


def picture(level: int, hw: tuple[int, int] = (H, W)) -> np.ndarray:
    return np.full((*hw, 3), level % 256, np.uint8)


def level_of(image: np.ndarray) -> int:
    """The grey level below the status bar (JPEG rounding aside)."""
    return int(round(float(np.median(image[image.shape[0] // 2 :]))))


@pytest.fixture
def view():
    v = LiveView(0, title="test <stream>")
    yield v
    v.close()


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_routes_page_status_and_snapshots(view: LiveView) -> None:
    url = view.url
    assert url.startswith("http://127.0.0.1:")
    code, ctype, body = fetch(url)
    assert code == 200 and ctype.startswith("text/html")
    assert b"/mosaic.mjpg" in body and b"test &lt;stream&gt;" in body  # title escaped
    assert get_json(url + "status.json") == {"title": "test <stream>", "state": "running", "viewers": 0,
                                             "streams": []}
    assert fetch(url + "snapshot.jpg")[0] == 503  # nothing published yet
    view.publish("cam-a", picture(40), "#cam-a  status")
    view.publish(7, picture(200, (90, 160)), "#7  status")
    status = get_json(url + "status.json")
    assert [(s["id"], s["frames"], s["status"]) for s in status["streams"]] == [("cam-a", 1, "#cam-a  status"),
                                                                                 ("7", 1, "#7  status")]
    code, ctype, body = fetch(url + "snapshot/7.jpg")
    one = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert code == 200 and ctype == "image/jpeg" and one.shape == (90, 160, 3) and abs(level_of(one) - 200) <= 2
    mosaic = cv2.imdecode(np.frombuffer(fetch(url + "snapshot.jpg")[2], np.uint8), cv2.IMREAD_COLOR)
    assert mosaic.shape[1] > 2 * W  # two tiles side by side
    assert fetch(url + "snapshot/nope.jpg")[0] == 404 and fetch(url + "elsewhere")[0] == 404
    assert fetch(url + "snapshot/7.mjpg")[0] == 404 and fetch(url + "stream/7.jpg")[0] == 404
    view.publish("a b", picture(90), "spaces")
    assert fetch(url + "snapshot/a%20b.jpg")[0] == 200


def test_a_stream_url_of_an_unknown_stream_is_a_404_at_once(view: LiveView) -> None:
    assert fetch(view.url + "stream/3.mjpg")[0] == 404  # no waiting for a stream that may never come
    view.publish(3, picture(170), "this one")
    assert abs(level_of(read_mjpeg(view.url + "stream/3.mjpg", 1)[0]) - 170) <= 2


def test_mjpeg_parts_are_jpegs_of_the_latest_picture(view: LiveView) -> None:
    stop = threading.Event()

    def publisher() -> None:
        i = 0
        while not stop.is_set():
            view.publish(0, picture(i), f"#0 frame {i}")
            view.publish(1, picture(255 - i), f"#1 frame {i}")
            i = (i + 1) % 120
            time.sleep(0.02)

    t = threading.Thread(target=publisher, daemon=True)
    t.start()
    try:
        one = read_mjpeg(view.url + "stream/1.mjpg", 8)
        mosaic = read_mjpeg(view.url + "mosaic.mjpg", 4)
    finally:
        stop.set()
        t.join()
    assert len(one) == 8 and all(f.shape == (H, W, 3) for f in one)
    levels = [level_of(f) for f in one]
    assert len(set(levels)) >= 4  # it moves on: each part is the newest picture, not a repeat
    assert len(mosaic) == 4 and all(f.shape[1] > 2 * W for f in mosaic)


def test_a_viewer_that_never_reads_holds_up_neither_the_stream_nor_other_viewers() -> None:
    view = LiveView(0, send_timeout_s=120)  # keep the stalled viewer connected for the whole test
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(4)]  # ~200 KB JPEGs
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(view.address)
    stalled.sendall(b"GET /mosaic.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # ... and never reads
    wait_until(lambda: view.stats()["viewers"] == 1, 10, "the stalled viewer to connect")
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(read_mjpeg(view.url + "mosaic.mjpg", 10**6, decode=False)))
    reader.start()
    wait_until(lambda: view.stats()["viewers"] == 2, 10, "the reading viewer to connect")
    n, longest = 150, 0.0
    for i in range(n):
        t0 = time.perf_counter()
        view.publish(0, noise[i % 4], f"frame {i}")
        longest = max(longest, time.perf_counter() - t0)
        time.sleep(0.01)  # a stream of ~100 maps per second
    stats = view.stats()
    view.close()  # ends both connections
    reader.join(timeout=30)
    stalled.close()
    assert stats["published"] == n and stats["viewers"] == 2  # the stalled viewer was still connected
    stalled_got = stats["sent"] - len(got)
    print(f"\n{n} published, reading viewer got {len(got)}, stalled viewer {stalled_got}; "
          f"longest publish() {longest * 1e3:.2f} ms")
    assert len(got) >= 5 and stalled_got <= 8  # frames for the stalled viewer were dropped, not queued


def test_late_viewer_gets_the_newest_picture_and_a_leaving_one_is_forgotten(view: LiveView) -> None:
    for i in range(60):
        view.publish(0, picture(i), f"frame {i}")
    first = read_mjpeg(view.url + "stream/0.mjpg", 1)[0]
    assert abs(level_of(first) - 59) <= 2  # no backlog: the latest picture first
    quitter = socket.create_connection(view.address)
    quitter.sendall(b"GET /mosaic.mjpg HTTP/1.0\r\n\r\n")
    quitter.recv(100)
    quitter.close()  # leaves mid-stream
    for i in range(60, 90):
        view.publish(0, picture(i), f"frame {i}")
        time.sleep(0.01)
    wait_until(lambda: view.stats()["viewers"] == 0, 10, "the server to notice the viewer left")
    assert abs(level_of(read_mjpeg(view.url + "stream/0.mjpg", 1)[0]) - 89) <= 2


def test_a_stalled_viewer_is_cut_off_after_the_send_timeout() -> None:
    view = LiveView(0, send_timeout_s=0.5)
    try:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(view.address)
        noise = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        view.publish(0, noise, "x")  # first: an unknown stream is a 404
        stalled.sendall(b"GET /stream/0.mjpg HTTP/1.0\r\n\r\n")
        wait_until(lambda: view.stats()["viewers"] == 1, 10, "the viewer to connect")
        for i in range(400):
            view.publish(0, noise if i % 2 else noise[::-1], str(i))
            time.sleep(0.01)
            if view.stats()["viewers"] == 0:
                break
        assert view.stats()["viewers"] == 0  # dropped: its thread no longer waits on a dead socket
        stalled.close()
    finally:
        view.close()


def test_close_ends_viewers_and_frees_the_port() -> None:
    view = LiveView(0)
    view.publish(0, picture(9), "x")
    host, port = view.address
    got: list = []
    t = threading.Thread(target=lambda: got.extend(read_mjpeg(view.url + "mosaic.mjpg", 10**6)))
    t.start()
    wait_until(lambda: view.stats()["sent"] >= 1, 10, "a first part")
    view.close()
    t.join(timeout=10)
    assert not t.is_alive() and view.stats()["viewers"] == 0 and len(got) == 1
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2)
    LiveView(port).close()  # the port can be used again at once
    view.close()  # idempotent


def test_unusable_port_or_address_is_one_clear_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"--view-port {port}: the port is in use"):
            LiveView(port)
    with pytest.raises(UserError, match="--view-port must be 0..65535"):
        LiveView(70000)
    with pytest.raises(UserError, match="--view-address 192.0.2.1: cannot serve there"):
        LiveView(free_port(), "192.0.2.1")  # TEST-NET-1: not an address of this machine
