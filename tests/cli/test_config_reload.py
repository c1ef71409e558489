"""``esan-rt stream --config``: cameras from a TOML file; SIGHUP adds, removes and restarts cameras while
another runs untouched; a bad file on reload changes nothing. Real signals to a real child process."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import BUNDLE_LOOKAHEAD
from support.viewtools import Cli, gray_clip, wait_until

from esan.runtime.cli.config import load_config
from esan.runtime.core.errors import UserError


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # as an editor or a deploy tool would: the reader never sees half a file


def _maps(folder: Path) -> list[int]:
    return sorted(int(p.stem) for p in folder.glob("*.npy")) if folder.is_dir() else []


def test_config_is_checked_with_the_file_and_key_named(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cases = {
        "[cameras.a]\nsource = 'x.mp4'\nlookahead = 4\n": "lookahead is run-wide",
        "[cameras.a]\nsource = 'x.mp4'\ncamera = 0\n": "exactly one of source",
        "[cameras.a]\nsource = 'x.mp4'\nfps = 3\n": "unknown key 'fps'",
        "[defaults]\nlookahead = 'eight'\n[cameras.a]\nsource = 'x'\n": "lookahead must be int",
        "[cameras.a\n": "not valid TOML",
        "[defaults]\nlookahead = 2\n": "at least one camera",
    }
    for text, message in cases.items():
        cfg.write_text(text)
        with pytest.raises(UserError, match=message):
            load_config(cfg)
    cfg.write_text("[defaults]\nlookahead = 2\nsave_maps = '/m/{camera}'\nstall_timeout = 3\n"
                   "[cameras.door]\nsource = 'rtsp://u:p@h/s'\n[cameras.desk]\ncamera = 1\nstall_timeout = 5\n")
    run, cams = load_config(cfg)
    assert run == {"lookahead": 2} and list(cams) == ["door", "desk"]
    assert cams["door"]["save_maps"] == "/m/door" and cams["door"]["stall_timeout"] == 3.0
    assert cams["desk"]["camera"] == 1 and cams["desk"]["stall_timeout"] == 5.0


def test_sighup_adds_removes_and_ignores_a_bad_file_while_a_camera_runs(tmp_path: Path, tiny_bundle: Path) -> None:
    clip = gray_clip(tmp_path / "grey.mp4", 1500, (60, 96))
    head = (f"[defaults]\nbundle = '{tiny_bundle}'\nlookahead = {BUNDLE_LOOKAHEAD}\nthreads = 1\n"
            f"report = '{tmp_path / 'r.json'}'\nrealtime = true\nsave_maps = '{tmp_path}/{{camera}}'\n")
    a = f"[cameras.a]\nsource = '{clip}'\n"
    b = f"[cameras.b]\nsource = '{clip}'\n"
    cfg = tmp_path / "cameras.toml"
    _write(cfg, head + a)
    cli = Cli("stream", "--config", str(cfg))
    try:
        wait_until(lambda: len(_maps(tmp_path / "a")) >= 5, 300, "camera a's maps")
        _write(cfg, head + a + b)
        cli.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len(_maps(tmp_path / "b")) >= 5, 120, "camera b's maps after SIGHUP")
        _write(cfg, head + a + "[cameras.b\n")  # broken: nothing may change
        cli.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "nothing changed" in "".join(cli.err), 60, "the bad file's line")
        seen = len(_maps(tmp_path / "b"))
        wait_until(lambda: len(_maps(tmp_path / "b")) >= seen + 5, 60, "camera b going on")
        _write(cfg, head + a)
        cli.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "camera b: removed from the config" in "".join(cli.err), 60, "camera b's removal")
        seen = len(_maps(tmp_path / "a"))
        wait_until(lambda: len(_maps(tmp_path / "a")) >= seen + 10, 60, "camera a going on")
    finally:
        cli.proc.send_signal(signal.SIGTERM)
        rc, _ = cli.finish()
    err = "".join(cli.err)
    assert rc == 0, err[-2000:]
    bad = [ln for ln in err.splitlines() if "nothing changed" in ln]
    assert len(bad) == 1 and "not valid TOML" in bad[0]
    s0, s1 = json.loads((tmp_path / "r.json").read_text())["streams"]
    assert s0["stop_reason"] == "stopped (SIGTERM)" and s0["frames"] == s0["frames_pushed"]  # untouched, flushed
    assert _maps(tmp_path / "a") == list(range(s0["frames"]))
    assert s1["stop_reason"] == "removed from the config" and s1["frames"] == s1["frames_pushed"] > 10
    assert _maps(tmp_path / "b") == list(range(s1["frames"]))  # flushed to its last frame when removed
