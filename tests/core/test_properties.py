"""Property tests (Hypothesis) over every parser of outside input: each accepts and works, or says one clear line.

Manifests (random and mutated: paths, dtypes, shapes, missing keys), frames given to the scheduler and to the
router, HTTP paths and headers of the live view, URLs for redaction, frame-folder names. The example counts
are fixed (``settings`` below) and derandomized, so a CI run is short and repeatable; run with
``--hypothesis-show-statistics`` to see how many cases each property tried.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from conftest import BUNDLE_LOOKAHEAD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esan.runtime.core.bundle import GRAPH_NAMES, load_bundle, sha256_file
from esan.runtime.core.errors import UserError
from esan.runtime.core.framefiles import list_frames, natural_key
from esan.runtime.core.scheduler import check_frame
from esan.runtime.io.sources import is_secret_key, redact_url
from esan.runtime.serving import protocol as P
from esan.runtime.serving.router import Request, StreamRouter
from tests.core.test_bundle import make_bundle

# a fixed budget per property and a per-example deadline (generous: the test machine is shared)
FAST = settings(max_examples=150, deadline=2000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(FAST, max_examples=40, deadline=10000)

# -- manifests ------------------------------------------------------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
                    | st.text(max_size=12), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8)
SCALARS = st.integers(-1, 3) | st.text(max_size=4) | st.lists(st.integers(0, 2), max_size=2) | st.none()
HOSTILE_FILES = ["../secret.txt", "/etc/passwd", "sub/../../secret.txt", "link.onnx", "dirlink/secret.txt",
                 "", ".", "..", "encoder.onnx/", "./encoder.onnx", "a\x00b", "~/x", "decoder.onnx"]
DIMS = st.one_of(st.integers(-3, 2**31), st.sampled_from(["batch", "3*batch", "0*batch", "-1*batch", "*batch",
                                                          "batch*3", "h", "", " 2 * batch"]), JSON)


TOP_KEYS = ["graphs", "engines", "config", "input_size", "output_size", "radius", "lookahead", "precision", "dcn",
            "opset", "normalization", "fp32_parts", "checks", "source_checkpoint", "batch", "format_version"]


def _paths(obj, prefix=()):
    """Every key path in a JSON object (for deleting or replacing one)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _hostile_bundle(tmp: Path, engines: bool) -> tuple[Path, dict]:
    root = make_bundle(tmp / "b", engines=engines)
    (tmp / "secret.txt").write_text("outside the bundle")
    (root / "link.onnx").symlink_to(tmp / "secret.txt")
    (root / "dirlink").symlink_to(tmp)
    return root, json.loads((root / "manifest.json").read_text())


@st.composite
def mutations(draw):
    """A list of edits: (delete path) / (replace path value) / (point a file entry) / (shape) / (dtype)."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "replace", "top", "top", "file", "shape", "dtype", "batch"]))
        graph = draw(st.sampled_from(GRAPH_NAMES))
        if kind == "file":
            edits.append((kind, graph, draw(st.sampled_from(HOSTILE_FILES) | st.text(max_size=20)),
                          draw(st.booleans())))
        elif kind == "shape":
            edits.append((kind, graph, draw(st.lists(DIMS, max_size=5))))
        elif kind == "dtype":
            edits.append((kind, graph, draw(st.sampled_from(["uint8", "float64", "int8", "", "object"]) | JSON)))
        elif kind == "batch":
            edits.append((kind, draw(st.sampled_from([1, 2, "dynamic", None, "1"])), draw(st.integers(1, 3))))
        elif kind == "top":  # a top-level field replaced (graphs as a list, engines as a string, ...)
            edits.append((kind, draw(st.sampled_from(TOP_KEYS)), draw(SCALARS | JSON)))
        else:
            edits.append((kind, draw(st.integers(0, 10**6)), draw(JSON)))
    return edits


def _apply(man: dict, root: Path, edits) -> dict:
    for edit in edits:
        kind = edit[0]
        if kind == "top":
            man[edit[1]] = edit[2]
        elif kind in ("delete", "replace"):
            paths = list(_paths(man))
            path = paths[edit[1] % len(paths)]
            parent = man
            for k in path[:-1]:
                parent = parent[k]
            if kind == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = edit[2]
        elif isinstance(man.get("graphs"), dict) and isinstance(man["graphs"].get(edit[1]), dict):
            g = man["graphs"][edit[1]]
            if kind == "file":
                g["file"] = edit[2]
                target = root / edit[2] if edit[2] and "\x00" not in edit[2] else None
                if edit[3] and target is not None and target.is_file():
                    g["sha256"] = sha256_file(target)  # the attacker writes matching hashes
            elif kind == "shape" and isinstance(g.get("inputs"), list) and g["inputs"]:
                g["inputs"][0]["shape"] = edit[2]
            elif kind == "dtype" and isinstance(g.get("outputs"), list) and g["outputs"]:
                g["outputs"][0]["dtype"] = edit[2]
        elif kind == "batch":
            man["batch"], man["format_version"] = edit[1], edit[2]
    return man


@FAST
@given(edits=mutations(), engines=st.booleans())
def test_any_manifest_loads_inside_its_folder_or_says_one_line(edits, engines):
    with tempfile.TemporaryDirectory(prefix="sec-prop-") as d:
        tmp = Path(d).resolve()
        root, man = _hostile_bundle(tmp, engines)
        man = _apply(man, root, edits)
        (root / "manifest.json").write_text(json.dumps(man))
        try:
            bundle = load_bundle(root)
        except UserError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("bundle "), str(exc)
            return
        files = [g.file for g in bundle.graphs.values()]
        files += list(bundle.engines.files.values()) if bundle.engines else []
        for f in files:
            assert f.resolve().is_relative_to(root.resolve()), f  # never a file outside the bundle
        for g in bundle.graphs.values():
            for t in (*g.inputs, *g.outputs):
                assert t.rows >= 0 and all(isinstance(d, int) for d in t.at_batch(2))


@FAST
@given(raw=st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_manifest_file_content_is_refused_in_one_line(raw):
    with tempfile.TemporaryDirectory(prefix="sec-prop-") as d:
        root = make_bundle(Path(d) / "b")
        (root / "manifest.json").write_bytes(raw)
        with pytest.raises(UserError) as err:
            load_bundle(root)
        assert "\n" not in str(err.value)


# -- frames -------------------------------------------------------------------------------------------------
DTYPES = st.sampled_from([np.uint8, np.int8, np.uint16, np.float32, np.float64, np.bool_, np.int64, object])


@st.composite
def frames(draw):
    """Arrays of any dtype and rank, empty ones, and huge ones (broadcast: no memory behind them)."""
    if draw(st.booleans()) and draw(st.booleans()):
        h, w = draw(st.sampled_from([(100_000, 100_000), (1, 10**9), (2**31, 2), (0, 10**9)]))
        return np.broadcast_to(np.zeros(1, np.uint8), (h, w, 3))
    shape = tuple(draw(st.lists(st.integers(0, 70), max_size=4)))
    dtype = draw(DTYPES)
    return np.full(shape, 1, dtype)


@FAST
@given(frame=frames())
def test_check_frame_accepts_only_usable_frames(frame):
    usable = frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8 and frame.size > 0
    try:
        check_frame(frame)
    except ValueError as exc:
        assert not usable and "\n" not in str(exc)
    else:
        assert usable


@pytest.fixture(scope="module")
def router(ort_backend):
    from esan.runtime.core.scheduler import MultiStreamScheduler

    sched = MultiStreamScheduler(ort_backend, BUNDLE_LOOKAHEAD, max_streams=4)
    return StreamRouter(sched, max_frame_pixels=200 * 200, idle_timeout_s=600.0)


@SLOW
@given(frame=frames(), end=st.booleans(), sid=st.integers(1, 2**63 - 1))
def test_router_serves_or_rejects_any_frame_for_that_request_only(router, frame, end, sid):
    start = router.handle([Request(sid, True, end, frame)])[0]
    error = router.frame_error(frame, end)  # the server's own rules, then the scheduler's one frame check
    if error is None and frame is not None and frame.size:
        try:
            check_frame(frame)
        except ValueError:  # the shape it names is the frame as the router received it
            error = f"{P.BAD_FRAME} frame must be an RGB uint8 array"
    if error is not None:
        assert start.error.startswith(error) and sid not in router.scheduler.streams
    else:
        assert start.error is None
        if not end:
            assert router.handle([Request(sid, False, True, np.zeros((0, 0, 3), np.uint8))])[0].error is None
    assert router.active == 0 and router.scheduler.streams == []  # nothing left behind


@SLOW
@given(frame=frames())
def test_the_scheduler_takes_a_checked_frame_through_a_round(ort_backend, frame):
    from esan.runtime.core.scheduler import MultiStreamScheduler

    sched = MultiStreamScheduler(ort_backend, BUNDLE_LOOKAHEAD)
    sid = sched.open_stream()
    if frame.size > 200 * 200 * 3:
        frame = np.zeros((50, 70, 3), np.uint8)  # huge frames are the router's to refuse (max_frame_pixels)
    try:
        sched.push(sid, frame)
    except ValueError:
        assert sched.streams == [sid] and not sched.stream(sid).queue
        return
    sched.finish(sid)
    out = []
    while sched.has_work():
        out += sched.run()
    assert [r.index for r in out] == [0] and np.isfinite(out[0].saliency).all()


# -- the live view's HTTP -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def view():
    from esan.runtime.io.live_view import LiveView

    v = LiveView(0, max_handlers=8, idle_timeout_s=1.0)
    v.publish("cam", np.zeros((20, 30, 3), np.uint8), "x")
    v.end_stream("cam")
    yield v
    v.close()


HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@FAST
@given(path=st.text(st.characters(min_codepoint=33, max_codepoint=0x10FFFF, exclude_categories=("Cs",)), max_size=60),
       host=st.none() | HEADER_TEXT, headers=st.lists(st.tuples(st.from_regex(r"[A-Za-z-]{1,12}", fullmatch=True),
                                                                 HEADER_TEXT), max_size=4))
def test_any_path_and_header_gets_a_status_line(view, path, host, headers):
    target = "/" + quote(path, safe="".join(map(chr, range(33, 127))))
    lines = [f"GET {target} HTTP/1.0"] + ([f"Host: {host}"] if host is not None else [])
    lines += [f"{k}: {v}" for k, v in headers if k.lower() != "host"]
    with socket.create_connection(view.address, timeout=30) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while len(data) < 1 << 16 and (chunk := s.recv(65536)):
            data += chunk
            if b"--esanframe\r\nContent-Type: image/jpeg" in data:
                break  # a live stream: its first part is enough
    status = int(data.split(b" ", 2)[1])
    assert status in (200, 400, 403, 404, 414, 431, 503), data[:200]
    if status == 200 and host is not None:
        from esan.runtime.core.netguard import host_allowed

        assert host_allowed(host, "127.0.0.1")


# -- URL redaction ------------------------------------------------------------------------------------------
SAFE = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%", min_size=1, max_size=10)
SECRET = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="&#"), min_size=1, max_size=12)
SECRET_KEYS = st.sampled_from(["password", "passwd", "pwd", "user", "username", "token", "access_token", "api_key",
                               "apikey", "X-Amz-Signature", "X-Amz-Credential", "secret", "client_secret", "sig",
                               "auth", "session_id", "id_token"])
PLAIN_KEYS = st.sampled_from(["fps", "channel", "subtype", "w", "h", "res", "quality", "profile", "stream", "q"])


@FAST
@given(scheme=st.sampled_from(["rtsp", "rtsps", "http", "https", "rtmp", "srt"]),
       userinfo=st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#"),
                                    min_size=1, max_size=16),
       host=SAFE, path=st.lists(SAFE | st.just("a@b"), max_size=3),
       query=st.lists(st.tuples(st.booleans(), SECRET_KEYS.map(str.upper) | SECRET_KEYS, PLAIN_KEYS, SECRET, SAFE),
                      max_size=4),
       prefix=st.sampled_from(["", "cannot open ", "source "]))
def test_redaction_hides_every_secret_and_changes_nothing_else(scheme, userinfo, host, path, query, prefix):
    base = f"{scheme}://" + ("{U}@" if userinfo is not None else "") + host + "".join("/" + p for p in path)
    items = [(sk, sv) if secret else (pk, pv) for secret, sk, pk, sv, pv in query]
    q = "?" + "&".join(f"{k}={{V{i}}}" for i, (k, _) in enumerate(items)) if items else ""
    template = prefix + base + q + " failed"
    values = {f"V{i}": v for i, (_, v) in enumerate(items)}
    url = template.format(U=userinfo or "", **values)
    hidden = {f"V{i}": ("***" if is_secret_key(k) else v) for i, (k, v) in enumerate(items)}
    assert redact_url(url) == template.format(U="***", **hidden)


# -- frame-folder names -------------------------------------------------------------------------------------
NAME = st.text(st.characters(exclude_characters="/\x00", exclude_categories=("Cs",)), min_size=1, max_size=30)


@FAST
@given(names=st.lists(NAME | st.from_regex(r"[a-z]{0,3}[0-9²³¹①٣０-９]{1,4}", fullmatch=True), max_size=8,
                      unique=True))
def test_any_frame_names_sort_the_same_whatever_order_they_come_in(names):
    keyed = sorted(names, key=natural_key)
    assert sorted(reversed(names), key=natural_key) == keyed  # a total order: ties broken by name
    with tempfile.TemporaryDirectory(prefix="sec-prop-") as d:
        made = []
        for n in names:
            file = f"{n}.png"
            if len(os.fsencode(file)) > 255 or file in (".png", "..png"):
                continue
            try:
                (Path(d) / file).write_bytes(b"")
            except OSError:
                continue
            made.append(file)
        assert [p.name for p in list_frames(d)] == sorted(made, key=natural_key)
