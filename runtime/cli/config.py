"""``esan-rt stream --config cameras.toml``: many cameras from one file, re-read on SIGHUP.

The file holds ``[defaults]`` and one ``[cameras.NAME]`` table per camera::

    [defaults]                 # the model and the run: checkpoint, bundle, backend, device, lookahead, ...
    lookahead = 8
    reconnect = "forever"      # any camera key may also have a default
    save_maps = "/var/lib/esan/{camera}/maps"    # {camera}: the table's name

    [cameras.door]
    source = "rtsp://user:pass@10.0.0.5/stream1"

    [cameras.desk]
    camera = 0
    segment_seconds = 600
    keep = "24"

SIGHUP re-reads it: added cameras start, removed ones are flushed and stop, changed ones restart (a new
stream), the others are untouched. A file that does not load is one log line and changes nothing; a
change of a run-wide key (the model, the report, ...) needs a restart and is ignored with a note.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from esan.runtime.core.errors import UserError
from esan.runtime.io.outputs import OutputOptions, Outputs, check_outputs
from esan.runtime.io.signals import on_hangup

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

RUN_KEYS = {"checkpoint": str, "bundle": str, "backend": str, "device": str, "lookahead": int,
            "backward_chunk": int, "precision": str, "threads": int, "report": str, "show": bool,
            "view_port": int, "view_address": str, "metrics_port": int, "metrics_address": str,
            "max_batch_wait_ms": float}  # fmt: skip
CAMERA_KEYS = {"source": str, "camera": int, "save_video": str, "save_maps": str, "maps_format": str,
               "realtime": bool, "reconnect": (str, int), "stall_timeout": float, "reconnect_max_delay": float,
               "segment_seconds": float, "keep": (str, int), "queue_size": int}  # fmt: skip
CAMERA_DEFAULTS = {"maps_format": "npy", "realtime": False, "reconnect": "forever", "stall_timeout": 10.0,
                   "reconnect_max_delay": 30.0, "queue_size": 4}  # fmt: skip


def _log(msg: str) -> None:
    print(f"esan-rt: {msg}", file=sys.stderr, flush=True)


def _typed(where: str, key: str, value: Any, kind: Any) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        raise UserError(f"{where}: {key} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    return value


def load_config(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(run-wide settings, {camera name: its settings})``; ``UserError`` naming the file and the key."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as exc:
        raise UserError(f"config {p}: cannot read it ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config {p}: not valid TOML ({exc})") from None
    extra = set(data) - {"defaults", "cameras"}
    if extra:
        raise UserError(f"config {p}: unknown table(s) {', '.join(sorted(extra))}; use [defaults] and [cameras.NAME]")
    defaults, cameras = data.get("defaults", {}), data.get("cameras", {})
    if not isinstance(defaults, dict) or not isinstance(cameras, dict) or not cameras:
        raise UserError(f"config {p}: give at least one camera table, e.g. [cameras.door] source = \"rtsp://...\"")
    run: dict[str, Any] = {}
    base = dict(CAMERA_DEFAULTS)
    for key, value in defaults.items():
        if key in RUN_KEYS:
            run[key] = _typed(f"config {p} [defaults]", key, value, RUN_KEYS[key])
        elif key in CAMERA_KEYS and key not in ("source", "camera"):
            base[key] = _typed(f"config {p} [defaults]", key, value, CAMERA_KEYS[key])
        else:
            raise UserError(f"config {p} [defaults]: unknown key {key!r}")
    cams: dict[str, dict[str, Any]] = {}
    for name, table in cameras.items():
        where = f"config {p} [cameras.{name}]"
        if not isinstance(table, dict):
            raise UserError(f"{where}: must be a table")
        cam = dict(base)
        for key, value in table.items():
            if key in RUN_KEYS:
                raise UserError(f"{where}: {key} is run-wide (one model for every camera): put it in [defaults]")
            if key not in CAMERA_KEYS:
                raise UserError(f"{where}: unknown key {key!r}")
            cam[key] = _typed(where, key, value, CAMERA_KEYS[key])
        if ("source" in cam) == ("camera" in cam):
            raise UserError(f"{where}: give exactly one of source = \"PATH|URL\" or camera = N")
        for key in ("save_video", "save_maps"):
            if key in cam:
                cam[key] = cam[key].replace("{camera}", name)
        cams[name] = cam
    return run, cams


def camera_options(cam: dict[str, Any], shared: OutputOptions) -> OutputOptions:
    """One camera's outputs (the window, live page and report are the run's)."""
    p = lambda k: Path(cam[k]) if cam.get(k) else None  # noqa: E731
    keep = cam.get("keep")
    return OutputOptions(show=shared.show, video=p("save_video"), maps=p("save_maps"), maps_format=cam["maps_format"],
                         view_port=shared.view_port, view_address=shared.view_address,
                         segment_seconds=cam.get("segment_seconds"), keep=None if keep is None else str(keep))


def open_camera_source(cam: dict[str, Any], log: Any) -> Any:
    """The camera's source: cameras and URLs reconnect by its policy; files and folders as ``--source``."""
    from esan.runtime.io.reconnect import open_live, parse_policy
    from esan.runtime.io.sources import is_url, open_source

    live = "camera" in cam or is_url(cam["source"])
    if live:
        policy = parse_policy(str(cam["reconnect"]), cam["stall_timeout"], cam["reconnect_max_delay"])
        kind, value = ("camera", cam["camera"]) if "camera" in cam else ("source", cam["source"])
        return open_live(kind, value, policy=policy, queue_size=cam["queue_size"], log=log)
    return open_source(source=cam["source"], queue_size=cam["queue_size"], realtime=cam["realtime"])


class Reloader:
    """SIGHUP: re-read the file in a thread of its own and apply the differences to the running pipeline."""

    def __init__(self, path: str, run: dict[str, Any], cams: dict[str, dict[str, Any]], args: argparse.Namespace
                 ) -> None:  # fmt: skip
        self.path, self.run, self.cams, self.args = path, run, cams, args
        self.sid = {name: i for i, name in enumerate(cams)}  # camera -> its current stream number
        self.event = threading.Event()
        self.pipeline: Any = None
        self.scheduler: Any = None
        self.meta0: dict[str, Any] = {}

    def request(self) -> None:
        """The SIGHUP handler: only wakes the reloader thread."""
        self.event.set()

    def attach(self, scheduler: Any, metas: list[dict[str, Any]]) -> Any:
        self.scheduler, self.meta0 = scheduler, dict(metas[0])
        for meta, name in zip(metas, self.cams, strict=False):
            meta["camera"] = name

        def on_start(pipeline: Any) -> None:
            self.pipeline = pipeline
            threading.Thread(target=self._loop, name="config-reload", daemon=True).start()

        return on_start

    def _loop(self) -> None:
        while True:
            self.event.wait()
            self.event.clear()
            try:
                self.reload()
            except Exception as exc:  # never take the running cameras down
                _log(f"config {self.path}: reload failed ({type(exc).__name__}: {exc}); nothing changed")

    def reload(self) -> None:
        try:
            run, cams = load_config(self.path)
            shared = _shared_options(self.args)
            for cam in cams.values():
                check_outputs(camera_options(cam, shared))
        except UserError as exc:
            _log(f"{exc}; nothing changed (still running the previous configuration)")
            return
        if run != self.run:
            changed = sorted(k for k in set(run) | set(self.run) if run.get(k) != self.run.get(k))
            _log(f"config {self.path}: {', '.join(changed)} changed: run-wide settings need a restart; ignored")
        for name in [n for n in self.cams if n not in cams or cams[n] != self.cams[n]]:
            why = "removed from the config" if name not in cams else "changed in the config: restarting"
            self.pipeline.end_stream(self.sid.pop(name), why)
            _log(f"camera {name}: {why}")
            del self.cams[name]
        for name, cam in cams.items():
            if name not in self.cams:
                self._start(name, cam, shared)

    def _start(self, name: str, cam: dict[str, Any], shared: OutputOptions) -> None:
        from esan.runtime.io.sources import redact_url

        try:
            src = open_camera_source(cam, log=lambda m: _log(f"camera {name}: {m}"))
        except UserError as exc:
            _log(f"camera {name}: {exc}; not started (fix the config and send SIGHUP again)")
            return
        meta = {**self.meta0, "source": src.name, "source_kind": src.kind, "source_fps": round(src.fps, 3),
                "live": src.live, "camera": name}
        sid = len(self.pipeline.lanes) + 1000  # placeholder until add_stream numbers it
        outputs = Outputs(camera_options(cam, shared), meta, fps=src.fps, title=f"esan-rt: {src.name}",
                          stream_id=sid, display=self.pipeline.display)
        sid = self.pipeline.add_stream(src, outputs)
        outputs.stream_id = outputs.meta["stream"] = sid
        self.sid[name], self.cams[name] = sid, cam
        _log(f"camera {name}: started as stream {sid} ({redact_url(src.name)})")


def _shared_options(args: argparse.Namespace) -> OutputOptions:
    return OutputOptions(show=bool(args.show), view_port=args.view_port, view_address=args.view_address)


def run_config(args: argparse.Namespace, stream_run: Callable[[argparse.Namespace], int]) -> int:
    """``esan-rt stream --config FILE``: the cameras of the file through ``stream_run``
    (``esan.runtime.cli.stream.run``, which calls this)."""
    if getattr(args, "inputs", None):
        raise UserError("--config lists the cameras: drop --source/--camera (or drop --config)")
    run, cams = load_config(args.config)
    for key, value in run.items():
        setattr(args, key, value)
    shared = _shared_options(args)
    args.per_stream = [camera_options(cam, shared) for cam in cams.values()]
    for o in args.per_stream:
        check_outputs(o)
    args.inputs = [("camera", c["camera"]) if "camera" in c else ("source", c["source"]) for c in cams.values()]
    args.cameras = dict(cams)
    names = list(cams)

    def open_cameras() -> list[Any]:
        sources: list[Any] = []
        try:
            for name in names:
                sources.append(open_camera_source(cams[name], log=lambda m, n=name: _log(f"camera {n}: {m}")))
        except BaseException:
            for src in sources:
                src.stop()
            raise
        return sources

    args.open_cameras = open_cameras
    args.reloader = Reloader(args.config, run, dict(cams), args)
    with on_hangup(args.reloader.request):
        return stream_run(args)
