"""Options of ``esan-rt stream`` for running unattended: reconnects, metrics, segments (torch-free, argparse only)."""

from __future__ import annotations

import argparse


def add_always_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("running unattended (live sources, long runs)")
    g.add_argument("--reconnect", default="forever", metavar="forever|N|off",
                   help="a camera or URL that disconnects or stalls is reopened after 1 s, 2 s, 4 s, ... (up to "
                        "--reconnect-max-delay): for ever (default), N attempts per outage, or off (the stream "
                        "ends; the exit status is then 1)")
    g.add_argument("--stall-timeout", type=float, default=10.0, metavar="S",
                   help="connected but no frame for S seconds counts as an outage (default: 10)")
    g.add_argument("--reconnect-max-delay", type=float, default=30.0, metavar="S",
                   help="longest wait between two reconnect attempts (default: 30)")
    g.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics, with /healthz and /readyz "
                        "(0: any free port; the address is printed)")
    g.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDR",
                   help="address the metrics endpoint listens on (default: 127.0.0.1, this machine only)")
    g.add_argument("--segment-seconds", type=float, metavar="N",
                   help="roll the overlay video, the maps folder and a latency log into time-stamped segments of "
                        "N seconds, each complete (playable) when it appears")
    g.add_argument("--keep", metavar="COUNT|AGE|SIZE",
                   help="with --segment-seconds: delete the oldest segments beyond a count (24), an age (90m, "
                        "12h, 7d) or a total size (500MB, 20GB)")
    g.add_argument("--config", metavar="cameras.toml",
                   help="the cameras (one table each) and defaults from a TOML file instead of --source/--camera; "
                        "SIGHUP re-reads it: added cameras start, removed ones stop (flushed), changed ones restart")
