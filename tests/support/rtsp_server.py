"""A real RTSP camera for the reconnect tests: GStreamer's RTSP server serving a generated clip.

Runs under Debian's ``/usr/bin/python3`` (``python3-gi``, ``gir1.2-gst-rtsp-server-1.0``,
``gstreamer1.0-plugins-{base,good,ugly}``), not the test environment's Python, so the tests start it
as a subprocess: ``/usr/bin/python3 tests/support/rtsp_server.py PORT [FPS]``. It serves
``rtsp://127.0.0.1:PORT/cam`` (H.264 of a moving test pattern, live, 160x96) and prints ``ready`` once
listening. Commands on stdin, one per line: ``pause`` (stay connected, send no frames: a stalled
camera), ``resume``. Stopping the camera is stopping the process.
"""

import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=96,framerate={fps}/1 "
            "! valve name=valve drop=false ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast "
            "key-int-max={fps} ! rtph264pay name=pay0 pt=96 config-interval=1 )")


def main() -> None:
    port, fps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE.format(fps=fps))
    factory.set_shared(True)
    valves = []
    factory.connect("media-configure", lambda f, media: valves.append(media.get_element().get_by_name("valve")))
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    loop = GLib.MainLoop()

    def commands() -> None:
        for line in sys.stdin:
            drop = {"pause": True, "resume": False}.get(line.strip())
            if drop is not None:
                GLib.idle_add(lambda d=drop: [v.set_property("drop", d) for v in valves] and False)
        GLib.idle_add(loop.quit)

    threading.Thread(target=commands, daemon=True).start()
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
