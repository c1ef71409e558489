"""The live view under hostile viewers: unknown streams, leavers, floods, foreign Host headers, idle waiters."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from support.viewtools import read_mjpeg, wait_until

from esan.runtime.io.live_view import LiveView


def picture(level: int) -> np.ndarray:
    return np.full((60, 80, 3), level, np.uint8)


def get(view: LiveView, path: str, host: str | None = "127.0.0.1") -> tuple[int, bytes]:
    """Status code and body of one raw GET (``host=None``: no Host header, as HTTP/1.0 tools send)."""
    with socket.create_connection(view.address, timeout=10) as s:
        head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "") + "Connection: close\r\n"
        s.sendall(head.encode() + b"\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data.split(b"\r\n\r\n", 1)[1]


def open_viewer(view: LiveView, path: str) -> socket.socket:
    s = socket.create_connection(view.address, timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    assert s.recv(12).startswith(b"HTTP/1.0 200")
    return s


@pytest.fixture
def view():
    v = LiveView(0, max_handlers=3, idle_timeout_s=30.0)
    yield v
    v.close()


def test_unknown_stream_is_404_and_holds_no_thread(view: LiveView) -> None:
    for _ in range(5):
        assert get(view, "/stream/missing.mjpg")[0] == 404
    assert view.stats()["viewers"] == 0
    # a handler counts until its thread has closed the socket, just after the client read the 404
    wait_until(lambda: view._server.handlers == 0, 30, "the 404 handlers to end (a hang guard)")


def test_a_viewer_that_leaves_a_quiet_stream_is_forgotten(view: LiveView) -> None:
    view.publish("a", picture(50), "a")
    s = open_viewer(view, "/stream/a.mjpg")
    wait_until(lambda: view.stats()["sent"] == 1, 10, "the first part")
    s.close()  # no further picture is ever published: only noticing the close ends the handler
    wait_until(lambda: view.stats()["viewers"] == 0 and view._server.handlers == 0, 10, "the handler to end")


def test_a_quiet_stream_ends_the_response_after_the_idle_deadline() -> None:
    view = LiveView(0, idle_timeout_s=0.5)
    try:
        view.publish("a", picture(50), "a")
        s = open_viewer(view, "/stream/a.mjpg")  # keeps its side open and never reads again
        wait_until(lambda: view.stats()["viewers"] == 0, 10, "the idle response to end")
        s.close()
    finally:
        view.close()


def test_handlers_past_the_cap_get_503(view: LiveView) -> None:
    view.publish("a", picture(50), "a")
    held = [open_viewer(view, "/mosaic.mjpg") for _ in range(3)]
    wait_until(lambda: view._server.handlers == 3, 10, "three live viewers")
    code, body = get(view, "/status.json")
    assert code == 503 and b"too many viewers" in body
    for s in held:
        s.close()
    wait_until(lambda: view._server.handlers == 0, 10, "the viewers to leave")
    assert get(view, "/status.json")[0] == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost@evil"])
def test_a_foreign_host_header_is_refused(view: LiveView, host: str) -> None:
    code, body = get(view, "/status.json", host)
    assert code == 403 and b"--view-allow-host" in body


def test_own_names_and_allowed_names_are_served() -> None:
    view = LiveView(0, allowed_hosts=["cam.example"])
    try:
        port = view.address[1]
        for host in (f"127.0.0.1:{port}", "localhost", f"[::1]:{port}", "cam.example:443", "CAM.example.", None):
            assert get(view, "/status.json", host)[0] == 200, host
        assert get(view, "/status.json", "other.example")[0] == 403
    finally:
        view.close()


def test_a_publish_wakes_only_the_viewers_of_its_stream(view: LiveView) -> None:
    view.publish("a", picture(50), "a")
    view.publish("b", picture(60), "b")
    s = open_viewer(view, "/stream/a.mjpg")
    wait_until(lambda: view.stats()["sent"] == 1, 10, "the first part")
    checks = {"a": 0}
    version = view._version

    def counting(key):
        if key == "a":
            checks["a"] += 1
        return version(key)

    view._version = counting
    for i in range(200):  # another stream's pictures: the viewer of "a" has nothing new to do
        view.publish("b", picture(i), "b")
        time.sleep(0.002)
    s.close()
    assert checks["a"] < 40, checks  # only its own 0.5 s timeouts (old: one wake-up per publish)
    assert read_mjpeg(view.url + "stream/b.mjpg", 1)[0].shape[:2] == (60, 80)


def test_a_network_bind_warns_and_the_allowed_names_reach_the_server(capsys) -> None:
    import esan.runtime.cli.args  # noqa: F401  (registers the subcommands)
    from esan.runtime.cli.commands import COMMANDS
    from esan.runtime.io.viewers import open_viewers

    argv = ["stream", "--source", "x", "--view-port", "0", "--view-allow-host", "a.example",
            "--view-allow-host", "b.example"]
    args = COMMANDS.build_parser().parse_args(argv)
    assert args.view_allow_host == ["a.example", "b.example"]
    viewers, _ = open_viewers(False, 0, "0.0.0.0", "t", allowed_hosts=tuple(args.view_allow_host))
    try:
        assert "warning: the live view listens on 0.0.0.0" in capsys.readouterr().err
        assert get(viewers.live, "/status.json", "b.example")[0] == 200
        assert get(viewers.live, "/status.json", "c.example")[0] == 403
        assert get(viewers.live, "/status.json", "192.0.2.7")[0] == 200  # an IP literal cannot be rebound
    finally:
        viewers.close()
    viewers, _ = open_viewers(False, 0, "127.0.0.1", "t")
    viewers.close()
    assert "warning" not in capsys.readouterr().err
