"""``esan-rt serve`` on a real Triton server (loopback) and ``RemoteStream`` / ``esan-rt stream --server``.

One server (max 4 streams, 2 s idle timeout, frames up to 40 000 pixels) serves most tests; the sharding
and the dying-server tests start their own. Every map is checked against the local single-stream
``StreamProcessor`` on the same bundle (fp32, max abs <= 1e-4).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import BUNDLE_LOOKAHEAD, make_clip
from support.serving_helpers import Server, free_ports, require_triton, start_server

TOL = 1e-4
IDLE_S = 2.0
MAX_STREAMS = 4
MAX_PIXELS = 40_000


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory) -> Server:
    require_triton()
    srv = start_server(tiny_bundle, tmp_path_factory.mktemp("serve") / "repo", "--max-streams", str(MAX_STREAMS),
                       "--idle-timeout", str(IDLE_S), "--max-frame-pixels", str(MAX_PIXELS))
    yield srv
    rc = srv.stop()
    assert rc == 0, f"unclean stop ({rc}):\n{srv.log.read_text()[-2000:]}"


@pytest.fixture
def idle_server(server: Server) -> Server:
    """The shared server with no stream open (an earlier test's abandoned stream has timed out)."""
    assert server.wait_metric("esan_active_streams", 0, timeout_s=IDLE_S + 5) == 0
    return server


def local_maps(backend, frames: list[np.ndarray]) -> dict[int, np.ndarray]:
    from esan.runtime.core.processor import StreamProcessor

    proc = StreamProcessor(backend, BUNDLE_LOOKAHEAD)
    results = [r for f in frames for r in proc.push(f)] + proc.finish()
    return {r.index: r.saliency for r in results}


def remote_maps(address: str, frames: list[np.ndarray]) -> dict[int, np.ndarray]:
    from esan.runtime.serving.client import RemoteStream

    stream = RemoteStream(address)
    try:
        results = [r for f in frames for r in stream.push(f, payload=f.shape)] + stream.finish()
    finally:
        stream.close()
    assert all(r.source_hw == r.payload[:2] for r in results)
    return {r.index: r.saliency for r in results}


def assert_same(got: dict[int, np.ndarray], ref: dict[int, np.ndarray]) -> None:
    assert sorted(got) == sorted(ref) == list(range(len(ref)))
    err = max(float(np.abs(got[i] - ref[i]).max()) for i in ref)
    assert err <= TOL, err


CLIPS = [((50, 120), 3, 1), ((90, 60), 7, 2), ((64, 96), 11, 3), ((37, 151), 14, 4)]  # (size, length, seed)


def run_concurrently(jobs: list) -> list:
    out: list = [None] * len(jobs)

    def work(i: int) -> None:
        try:
            out[i] = jobs[i]()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            out[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for r in out:
        if isinstance(r, BaseException):
            raise r
    return out


def test_four_concurrent_streams_equal_local_maps(idle_server, ort_backend) -> None:
    clips = [make_clip(n, hw, seed) for hw, n, seed in CLIPS]
    before = idle_server.metric("esan_frames_total")
    got = run_concurrently([lambda c=c: remote_maps(idle_server.grpc, c) for c in clips])
    for clip, maps in zip(clips, got, strict=True):
        assert_same(maps, local_maps(ort_backend, clip))
    assert idle_server.metric("esan_frames_total") - before == sum(n for _, n, _ in CLIPS)
    assert idle_server.wait_metric("esan_active_streams", 0) == 0  # END freed all four


def test_end_frees_state_and_idle_timeout_frees_an_abandoned_stream(idle_server) -> None:
    from esan.runtime.serving.client import RemoteStream

    frames = make_clip(3, (40, 70), seed=5)
    stream = RemoteStream(idle_server.grpc)
    for f in frames:
        stream.push(f)
    assert idle_server.metric("esan_active_streams") == 1
    assert len(stream.finish()) == 3
    assert idle_server.wait_metric("esan_active_streams", 0) == 0
    stream.close()

    freed = idle_server.metric("esan_idle_freed_streams_total")
    abandoned = RemoteStream(idle_server.grpc)
    abandoned.push(frames[0])
    abandoned.close()  # no END
    assert idle_server.metric("esan_active_streams") == 1
    t0 = time.monotonic()
    assert idle_server.wait_metric("esan_active_streams", 0, timeout_s=IDLE_S + 5) == 0
    assert time.monotonic() - t0 >= IDLE_S * 0.5
    assert idle_server.metric("esan_idle_freed_streams_total") == freed + 1


def test_killed_client_does_not_disturb_the_others(idle_server, ort_backend) -> None:
    code = ("import sys, numpy as np\nfrom esan.runtime.serving.client import RemoteStream\n"
            "s = RemoteStream(sys.argv[1])\nrng = np.random.default_rng(0)\n"
            "for i in range(10**6):\n    s.push(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))\n"
            "    print(i, flush=True)\n")
    victim = subprocess.Popen([sys.executable, "-c", code, idle_server.grpc], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):
            assert victim.stdout.readline(), "the client did not stream"
        clip = make_clip(9, (72, 100), seed=9)
        maps = remote_maps(idle_server.grpc, clip[:4])
        victim.kill()
        victim.wait(10)
        maps_after = remote_maps(idle_server.grpc, clip)
    finally:
        victim.kill()
        victim.wait(10)
    assert_same(maps, local_maps(ort_backend, clip[:4]))
    assert_same(maps_after, local_maps(ort_backend, clip))
    assert idle_server.wait_metric("esan_active_streams", 0, timeout_s=IDLE_S + 5) == 0


def test_max_streams_refuses_one_too_many(idle_server) -> None:
    from esan.runtime.serving.client import RemoteStream, StreamRefused

    frame = make_clip(1, (30, 40))[0]
    streams = [RemoteStream(idle_server.grpc) for _ in range(MAX_STREAMS + 1)]
    try:
        for s in streams[:MAX_STREAMS]:
            s.push(frame)
        refused = idle_server.metric("esan_refused_streams_total")
        with pytest.raises(StreamRefused, match=rf"limit of streams.*max_streams={MAX_STREAMS}"):
            streams[-1].push(frame)
        assert idle_server.metric("esan_refused_streams_total") == refused + 1
        streams[0].finish()  # one ends: a new stream fits again
        again = RemoteStream(idle_server.grpc)
        assert again.push(frame) == []
        assert len(again.finish()) == 1
        again.close()
    finally:
        for s in streams[1:MAX_STREAMS]:
            s.finish()
        for s in streams:
            s.close()


def test_malformed_and_oversized_frames_error_alone(idle_server, ort_backend) -> None:
    import tritonclient.grpc as g
    from tritonclient.utils import InferenceServerException

    from esan.runtime.serving.client import FrameRejected, RemoteStream

    clip = make_clip(6, (48, 64), seed=11)
    stream = RemoteStream(idle_server.grpc)
    maps = {}
    for i, f in enumerate(clip):
        if i == 2:
            with pytest.raises(FrameRejected, match="over this server's limit of 40000"):
                stream.push(np.zeros((250, 250, 3), np.uint8))
        maps.update({r.index: r.saliency for r in stream.push(f)})
    maps.update({r.index: r.saliency for r in stream.finish()})
    stream.close()
    assert_same(maps, local_maps(ort_backend, clip))  # the stream went on as if the bad frame was never sent

    client = g.InferenceServerClient(idle_server.grpc)
    bad = np.zeros((1, 20, 20, 4), np.uint8)  # 4 channels: refused by the model's config
    inp = g.InferInput("FRAME", list(bad.shape), "UINT8")
    inp.set_data_from_numpy(bad)
    with pytest.raises(InferenceServerException, match="FRAME"):
        client.infer("esan", [inp], sequence_id=12345, sequence_start=True, sequence_end=True)
    client.close()
    assert idle_server.wait_metric("esan_active_streams", 0) == 0


def test_no_server_fails_fast_naming_the_address(tmp_path) -> None:
    pytest.importorskip("tritonclient.grpc", reason="pip install 'esan-rt[serve]'")
    folder = tmp_path / "clip"
    folder.mkdir()
    import cv2

    cv2.imwrite(str(folder / "0.png"), make_clip(1)[0])
    address = f"127.0.0.1:{free_ports(1)[0]}"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "esan.runtime.cli", "stream", "--server", address, "--source",
                           str(folder)], capture_output=True, text=True, timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and address in lines[0] and "no Triton server" in lines[0], proc.stderr


def test_streams_sharded_across_two_servers(server, tiny_bundle, tmp_path, ort_backend) -> None:
    from esan.runtime.serving.client import server_for

    second = start_server(tiny_bundle, tmp_path / "repo2", "--max-streams", "2")
    try:
        servers = [server.grpc, second.grpc]
        clips = [make_clip(n, hw, seed) for hw, n, seed in CLIPS]
        before = [s.metric("esan_frames_total") for s in (server, second)]
        got = run_concurrently([lambda i=i, c=c: remote_maps(server_for(servers, i), c) for i, c in enumerate(clips)])
        for clip, maps in zip(clips, got, strict=True):
            assert_same(maps, local_maps(ort_backend, clip))
        lengths = [n for _, n, _ in CLIPS]
        assert second.metric("esan_frames_total") - before[1] == lengths[1] + lengths[3]
        assert server.metric("esan_frames_total") - before[0] == lengths[0] + lengths[2]
        stream_cli_sharded(servers, clips, tmp_path, ort_backend, (server, second))
        second.proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop too, exit code 130
        assert second.proc.wait(15) == 130
        assert "Ctrl-C: stopping" in second.log.read_text()
    finally:
        second.stop()


def stream_cli_sharded(servers: list[str], clips: list, tmp_path, ort_backend, running: tuple) -> None:
    """``esan-rt stream --source x3 --server x2``: stream i on server i mod 2, maps equal the local ones."""
    import cv2

    from esan.runtime.cli import main

    args = []
    for i, clip in enumerate(clips[:3]):
        folder = tmp_path / f"frames{i}"
        folder.mkdir()
        for k, frame in enumerate(clip):
            cv2.imwrite(str(folder / f"{k:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        args += ["--source", str(folder)]
    before = [s.metric("esan_frames_total") for s in running]
    maps = tmp_path / "maps"
    argv = ["stream", *args, "--server", servers[0], "--server", servers[1], "--save-maps", str(maps)]
    assert main(argv) == 0
    for i, clip in enumerate(clips[:3]):
        got = {k: np.load(maps / str(i) / f"{k:06d}.npy") for k in range(len(clip))}
        assert_same(got, local_maps(ort_backend, clip))
    lengths = [len(c) for c in clips[:3]]
    assert [s.metric("esan_frames_total") - b for s, b in zip(running, before, strict=True)] == \
        [lengths[0] + lengths[2], lengths[1]]  # fmt: skip


def test_server_dying_mid_stream_flushes_says_so_and_fails(tiny_bundle, tmp_path) -> None:
    require_triton()
    import cv2

    folder = tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(make_clip(200, (48, 64), seed=3)):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    srv = start_server(tiny_bundle, tmp_path / "repo")
    maps, report = tmp_path / "maps", tmp_path / "report.json"
    client = subprocess.Popen([sys.executable, "-m", "esan.runtime.cli", "stream", "--server", srv.grpc, "--source",
                               str(folder), "--realtime", "--save-maps", str(maps), "--report", str(report)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while not (maps.is_dir() and len(list(maps.glob("*.npy"))) >= 3) and time.monotonic() < deadline:
            assert client.poll() is None, client.communicate()
            time.sleep(0.1)
        os.kill(srv.triton_pid(), signal.SIGKILL)
        out, err = client.communicate(timeout=90)
        assert srv.proc.wait(15) == 1  # esan-rt serve notices its server died and says so
        assert "tritonserver exited on its own" in srv.log.read_text()
    finally:
        client.kill()
        srv.stop()
    assert client.returncode == 2, (out, err)
    assert f"server {srv.grpc} went away mid-stream" in err, err
    written = len(list(maps.glob("*.npy")))
    assert 3 <= written < 200 and report.is_file()


def test_bench_through_the_server_beside_in_process(idle_server, tiny_bundle, tmp_path) -> None:
    import json

    from esan.runtime.cli import main

    folder = tmp_path / "clip"
    folder.mkdir()
    import cv2

    for i, f in enumerate(make_clip(6, (45, 80), seed=6)):
        cv2.imwrite(str(folder / f"{i}.png"), f)
    rc = main(["bench", "--server", idle_server.grpc, "--streams", "2,1", "--frames", "6", "--bundle",
               str(tiny_bundle), "--source", str(folder), "--threads", "1", "--out", str(tmp_path / "out")])
    assert rc == 0
    report = json.loads((tmp_path / "out" / "serving.json").read_text())
    assert [r["streams"] for r in report["rows"]] == [1, 2]
    for row in report["rows"]:
        for side in ("server", "in_process"):
            assert row[side]["fps"] > 0 and row[side]["latency_ms"]["p50"] > 0
        assert row["server"]["overhead_ms"]["p50"] is not None
    assert report["model"]["bundle_sha256"] and report["frames_per_stream"] == 6
