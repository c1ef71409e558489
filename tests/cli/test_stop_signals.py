"""Stopping ``esan-rt stream`` the way a service manager or a terminal does, with real signals to a real child.

Each child is started with its SIGINT/SIGTERM dispositions set explicitly (``proctools.preexec``), so
nothing depends on what the test run inherited; one is started with SIGINT *ignored* on purpose (a
script's background job) and must still stop cleanly on SIGINT.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest
from conftest import BUNDLE_LOOKAHEAD
from support.viewtools import Cli, gray_clip, video_frames, wait_until


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gray_clip(tmp_path_factory.mktemp("clip") / "grey.mp4", 600, (60, 96))


def _start(tmp_path: Path, clip: Path, bundle: Path, *extra: str, ignore_sigint: bool = False
           ) -> tuple[Cli, dict[str, Path]]:  # fmt: skip
    out = {"video": tmp_path / "out.mp4", "report": tmp_path / "r.json", "maps": tmp_path / "maps"}
    cli = Cli("stream", "--source", str(clip), "--bundle", str(bundle), "--lookahead", str(BUNDLE_LOOKAHEAD),
              "--realtime", "--threads", "1", "--save-video", str(out["video"]), "--report", str(out["report"]),
              "--save-maps", str(out["maps"]), *extra, ignore_sigint=ignore_sigint)
    try:
        wait_until(lambda: cli.proc.poll() is not None or len(list(out["maps"].glob("*.npy"))) >= 5, 300,
                   "the first maps")
    except AssertionError:
        cli.proc.kill()
        raise
    assert cli.proc.poll() is None, "".join(cli.err)[-2000:]
    return cli, out


def _check_finalised(out: dict[str, Path]) -> dict:
    report = json.loads(out["report"].read_text())
    written = report["outputs"]
    assert 5 <= written["video_frames"] <= report["frames"] < 600
    assert video_frames(out["video"]) == written["video_frames"]  # the mp4 was closed: it plays to its last frame
    assert len(list(out["maps"].glob("*.npy"))) == written["maps_written"] == written["video_frames"]
    return report


def test_sigterm_flushes_every_map_closes_the_video_and_exits_0(tmp_path: Path, tiny_bundle: Path,
                                                                 long_clip: Path) -> None:
    cli, out = _start(tmp_path, long_clip, tiny_bundle, "--metrics-port", "0")
    url = next(ln.split("metrics on ", 1)[1].split()[0] for ln in cli.err if "metrics on http" in ln)
    with urllib.request.urlopen(url, timeout=10) as r:  # the CLI's endpoint, scraped while it streams
        maps = [ln for ln in r.read().decode().splitlines() if ln.startswith('esan_maps_total{stream="0"}')]
    assert maps and float(maps[0].split()[-1]) >= 5
    with urllib.request.urlopen(url.replace("/metrics", "/readyz"), timeout=10) as r:
        assert r.status == 200
    cli.proc.send_signal(signal.SIGTERM)
    rc, stdout = cli.finish()
    assert rc == 0, "".join(cli.err)[-2000:]
    report = _check_finalised(out)
    assert report["stop_reason"] == "stopped (SIGTERM)" and not report["interrupted"]
    assert report["frames"] == report["frames_pushed"] == report["outputs"]["maps_written"]  # all flushed
    assert "stopped (SIGTERM)" in stdout


def test_sigint_stops_cleanly_even_when_started_with_sigint_ignored(tmp_path: Path, tiny_bundle: Path,
                                                                   long_clip: Path) -> None:
    cli, out = _start(tmp_path, long_clip, tiny_bundle, ignore_sigint=True)
    cli.proc.send_signal(signal.SIGINT)
    rc, _ = cli.finish()
    assert rc == 130, "".join(cli.err)[-2000:]
    report = _check_finalised(out)
    assert report["interrupted"] and report["frames"] == report["frames_pushed"] == report["outputs"]["maps_written"]


def test_a_second_signal_skips_the_flush_but_still_closes_the_files(tmp_path: Path, tiny_bundle: Path,
                                                                   long_clip: Path) -> None:
    cli, out = _start(tmp_path, long_clip, tiny_bundle)
    cli.proc.send_signal(signal.SIGINT)  # two different signals are both delivered (same ones may merge)
    cli.proc.send_signal(signal.SIGTERM)
    rc, _ = cli.finish()
    assert rc == 130, "".join(cli.err)[-2000:]
    report = _check_finalised(out)
    assert report["interrupted"]
    assert report["outputs"]["maps_written"] < report["frames_pushed"]  # the delayed tail was dropped
