"""Soak test (not in CI): two RTSP cameras for a long run, one taken away every few minutes.

    python benchmarks/soak_reconnect.py --minutes 30 --period 120 --outage 10 --out /tmp/soak

Runs ``esan-rt stream`` on two real RTSP cameras (GStreamer's RTSP server, ``tests/support/rtsp_server.py``,
run by Debian's ``/usr/bin/python3``; see tests/support/rtsp_camera.py for the packages) with maps, a report,
metrics and rolled segments; every ``--period`` seconds camera 0 goes away for ``--outage`` seconds.
At the end (SIGTERM) it prints: outages seen vs caused, maps lost only in the gaps (map numbers
contiguous around each gap), camera 1 untouched, and the process's RSS, threads and open files
measured after the warm-up and at the end (they should stay flat).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "rtsp_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def camera(port: int, fps: int, log: Path) -> subprocess.Popen:
    out = open(log, "a")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(["/usr/bin/python3", str(SERVER), str(port), str(fps)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=out, text=True)
    out.close()
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"RTSP server did not start on {port}: {log.read_text()[-500:]}")
    return proc


def usage(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    field = {ln.split(":")[0]: ln.split(":")[1].split() for ln in status if ":" in ln}
    return {"rss_kb": int(field["VmRSS"][0]), "threads": int(field["Threads"][0]),
            "open_files": len(os.listdir(f"/proc/{pid}/fd"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--period", type=float, default=120.0, help="seconds between outages of camera 0")
    ap.add_argument("--outage", type=float, default=10.0, help="seconds camera 0 stays away")
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--out", default="/tmp/esan-soak")
    ap.add_argument("--bundle", help="bundle directory (default: the CLI's default model)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ports = [free_port(), free_port()]
    cams = [camera(p, args.fps, out / f"cam{i}.log") for i, p in enumerate(ports)]
    cmd = [sys.executable, "-m", "esan.runtime.cli", "stream", "--threads", "1", "--lookahead", "2",
           *[a for p in ports for a in ("--source", f"rtsp://127.0.0.1:{p}/cam")],
           "--save-maps", str(out / "maps"), "--report", str(out / "report.json"), "--metrics-port", "0",
           "--stall-timeout", "5", "--reconnect-max-delay", "4"]
    cmd += ["--bundle", args.bundle] if args.bundle else []
    err = open(out / "stream.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    t0 = time.monotonic()
    time.sleep(args.warmup)
    start = usage(proc.pid)
    caused, next_outage = 0, t0 + args.warmup + args.period / 2
    end = t0 + args.minutes * 60
    try:
        while time.monotonic() < end and proc.poll() is None:
            if time.monotonic() >= next_outage:
                cams[0].kill()
                cams[0].wait()
                time.sleep(args.outage)
                cams[0] = camera(ports[0], args.fps, out / "cam0.log")
                caused += 1
                next_outage += args.period
            time.sleep(1.0)
        final = usage(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        summary = proc.communicate(timeout=120)[0]
        for c in cams:
            c.kill()
    report = json.loads((out / "report.json").read_text())
    s0, s1 = report["streams"]
    got = sorted(int(p.stem) for p in (out / "maps" / "0").glob("*.npy"))
    holes = [(a, b) for a, b in zip(got, got[1:], strict=False) if b != a + 1]
    lost = sum(g["frames_lost"] for g in s0["gaps"])
    print(summary)
    print(json.dumps({
        "minutes": round((time.monotonic() - t0) / 60, 2), "exit_status": proc.returncode,
        "outages_caused": caused, "gaps_reported": len(s0["gaps"]), "reconnects": s0["reconnects"],
        "camera0_maps": len(got), "camera0_holes_in_map_numbers": len(holes),
        "camera0_frames_lost_in_gaps": lost, "holes_match_gaps": sum(b - a - 1 for a, b in holes) == lost,
        "camera1_gaps": len(s1["gaps"]), "camera1_maps": s1["frames"], "camera1_dropped": s1["dropped_frames"],
        "process_at_start": start, "process_at_end": final}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
