"""``esan-train prepare DATASET --src DOWNLOAD --out ROOT``: an official download -> the project's layout.

Writes ``ROOT/<DHF1K|Hollywood-2|UCF>/<split>/<video>/images/<stem>.*``, ``maps/<stem>.*`` and
``fixation/maps/<stem>.*`` (docs/design.md section 5), reading the layouts of
:mod:`esan.train.prepare_layouts`. Each video is written into ``ROOT/.esan-prepare-tmp/`` and renamed
into place only once complete, with a marker file (``.esan-prepared.json``) inside: an interrupted
run continues where it stopped and a half-written video never looks complete. Frames and annotations
that do not pair up are left out and reported (summary and ``ROOT/<dataset>/prepare_report.json``),
and so are videos whose annotation is missing. ``--link`` symlinks files that are already frames.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from esan.runtime.core.framefiles import natural_key
from esan.runtime.core.fsutil import atomic_write_text, fsync_dir, fsync_tree
from esan.train.errors import UserError
from esan.train.prepare_layouts import SourceTree, SourceVideo, scan_source

MARKER = ".esan-prepared.json"
TMP_DIR = ".esan-prepare-tmp"
REPORT = "prepare_report.json"
FRAME_EXTS = ("png", "jpg")


@dataclass
class VideoRecord:
    """What happened to one video (stored in its marker and in the report)."""

    video: str  # <dataset>/<split>/<name>
    source: str
    frames: int = 0  # frames written
    written: bool = False
    missing_annotation: bool = False
    frames_without_annotation: list[str] = field(default_factory=list)  # "<stem>: no map, no fixation"
    annotations_without_frame: list[str] = field(default_factory=list)  # "<stem>: no frame"
    resumed: bool = False  # prepared by an earlier run

    @classmethod
    def from_marker(cls, path: Path) -> VideoRecord:
        data = json.loads(path.read_text())
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "resumed": True})


def pair(frames: set[str], maps: set[str], fixations: set[str]) -> tuple[list[str], list[str], list[str]]:
    """(complete stems, frames lacking an annotation, annotations lacking a frame), natural order;
    the last two read ``"<stem>: no <what>"``."""
    complete = frames & maps & fixations
    lacking_frame, lacking_note = [], []
    for stem in sorted((frames | maps | fixations) - complete, key=natural_key):
        missing = [w for w, have in (("frame", frames), ("map", maps), ("fixation", fixations)) if stem not in have]
        (lacking_note if stem in frames else lacking_frame).append(f"{stem}: no {', no '.join(missing)}")
    return sorted(complete, key=natural_key), lacking_note, lacking_frame


def _place(src: Path, dst: Path, link: bool) -> None:
    """Copy ``src`` to ``dst``, or symlink it (absolute target) with ``link``."""
    if link:
        os.symlink(src.resolve(), dst)
    else:
        shutil.copyfile(src, dst)


def _mat_map_to_png(src: Path, dst: Path) -> None:
    """A continuous map stored as ``.mat`` (variable ``I`` or the only 2-D array) -> 8-bit PNG."""
    from scipy.io import loadmat

    try:
        data = {k: np.asarray(v) for k, v in loadmat(str(src)).items() if not k.startswith("_")}
    except Exception as exc:
        raise UserError(f"cannot read saliency map {src}: {exc}") from exc
    arrays = [v for v in data.values() if v.ndim == 2 and v.dtype.kind in "fiub"]
    arr = data["I"] if "I" in data else (arrays[0] if len(arrays) == 1 else None)
    if arr is None:
        raise UserError(f"{src}: expected a variable 'I' or one 2-D map, found {sorted(data)}")
    arr = arr.astype(np.float64)
    top = arr.max()
    img = np.round(255 * arr / top) if top > 0 else np.zeros_like(arr)
    if not cv2.imwrite(str(dst), img.astype(np.uint8)):
        raise UserError(f"cannot write {dst}")


def _write_annotation(v: SourceVideo, stem: str, tmp: Path, link: bool) -> None:
    src = v.maps[stem]
    if src.suffix.lower() == ".mat":
        _mat_map_to_png(src, tmp / "maps" / f"{stem}.png")
    else:
        _place(src, tmp / "maps" / f"{stem}{src.suffix.lower()}", link)
    for fix in v.fixations[stem]:
        _place(fix, tmp / "fixation" / "maps" / f"{stem}{fix.suffix.lower()}", link)


def _extract(v: SourceVideo, tmp: Path, wanted: set[str] | None, frame_ext: str) -> set[str]:
    """Decode the AVI; frame ``k`` (1-based) gets the annotation stem numbered ``k`` (else ``%04d``) and
    is written when ``wanted`` is None or holds its stem. Returns the stems of every decoded frame."""
    by_number = {int(s): s for s in set(v.maps) | set(v.fixations)}
    cap = cv2.VideoCapture(str(v.origin))
    stems: set[str] = set()
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            k = len(stems) + 1
            stem = by_number.get(k, f"{k:04d}")
            stems.add(stem)
            if wanted is None or stem in wanted:
                dst = tmp / "images" / f"{stem}.{frame_ext}"
                if not cv2.imwrite(str(dst), bgr):
                    raise UserError(f"cannot write {dst}")
    finally:
        cap.release()
    if not stems:
        raise UserError(f"{v.origin}: OpenCV cannot decode any frame (a damaged file, or an OpenCV "
                        "without this codec: pip install opencv-python-headless)")
    return stems


def write_video(v: SourceVideo, tmp: Path, link: bool, frame_ext: str = "png") -> VideoRecord:
    """Write one video into ``tmp`` (a fresh folder); the caller renames it into place."""
    rec = VideoRecord(v.rel, str(v.origin))
    if v.annotated and (v.annotation_dir is None or not set(v.maps) & set(v.fixations)):
        rec.missing_annotation = True
        return rec
    (tmp / "images").mkdir(parents=True)
    notes = (set(v.maps), set(v.fixations)) if v.annotated else None
    if v.from_video_file:
        wanted = (notes[0] & notes[1]) if notes else None
        frames = _extract(v, tmp, wanted, frame_ext)
    else:
        frames = set(v.frames)
    if notes is None:
        keep = sorted(frames, key=natural_key)
    else:
        keep, rec.frames_without_annotation, rec.annotations_without_frame = pair(frames, *notes)
        (tmp / "maps").mkdir()
        (tmp / "fixation" / "maps").mkdir(parents=True)
    if not keep:
        rec.missing_annotation = True  # nothing pairs up: like a missing annotation
        return rec
    for stem in keep:
        if not v.from_video_file:
            src = v.frames[stem]
            _place(src, tmp / "images" / f"{stem}{src.suffix.lower()}", link)
        if notes is not None:
            _write_annotation(v, stem, tmp, link)
    rec.frames, rec.written = len(keep), True
    return rec


def _final_dir(out: Path, v: SourceVideo) -> Path:
    return out / v.dataset / v.split / v.name


def _run_one(v: SourceVideo, out: Path, link: bool, frame_ext: str) -> VideoRecord:
    tmp = out / TMP_DIR / v.dataset / v.split / v.name
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted run
    tmp.mkdir(parents=True)
    try:
        rec = write_video(v, tmp, link, frame_ext)
        if rec.written:
            payload = {k: val for k, val in asdict(rec).items() if k != "resumed"}
            atomic_write_text(tmp / MARKER, json.dumps({"tool": "esan-train prepare", **payload}, indent=1) + "\n")
            final = _final_dir(out, v)
            final.parent.mkdir(parents=True, exist_ok=True)
            fsync_tree(tmp)  # the files reach the disk before the name that says the video is complete
            os.rename(tmp, final)
            fsync_dir(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return rec


def _check_targets(out: Path, tree: SourceTree) -> tuple[list[VideoRecord], list[SourceVideo]]:
    """(records of videos already prepared, videos to do); a foreign folder in the way is an error."""
    done, todo = [], []
    for v in tree.videos:
        final = _final_dir(out, v)
        if (final / MARKER).is_file():
            done.append(VideoRecord.from_marker(final / MARKER))
        elif final.exists():
            raise UserError(f"{final} exists but was not written by esan-train prepare (no {MARKER}); "
                            "move it away or choose another --out")
        else:
            todo.append(v)
    return done, todo


def prepare(dataset: str, src: str | os.PathLike, out: str | os.PathLike, link: bool = False, jobs: int = 1,
            frame_ext: str = "png", progress: bool = True,
            on_video: Callable[[VideoRecord], None] | None = None) -> dict:
    """Prepare ``dataset`` from ``src`` into ``out``; returns the report (also written as JSON)."""
    if frame_ext not in FRAME_EXTS:
        raise UserError(f"--frame-ext must be one of {', '.join(FRAME_EXTS)}, got {frame_ext!r}")
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    tree = scan_source(dataset, src)  # every layout error comes before anything is written
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --out {out}: {exc.strerror or exc}") from exc
    done, todo = _check_targets(out, tree)
    records = {r.video: r for r in done}
    bar = _bar(len(tree.videos), len(done), tree.dataset, progress)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(_run_one, v, out, link, frame_ext) for v in todo]
        for fut in as_completed(futures):
            rec = fut.result()
            records[rec.video] = rec
            if bar is not None:
                bar.update(1)
            if on_video is not None:
                on_video(rec)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # running videos finish or clean up their temp dirs
        raise
    finally:
        pool.shutdown(wait=True)
        if bar is not None:
            bar.close()
    shutil.rmtree(out / TMP_DIR, ignore_errors=True)
    report = _report(tree, out, [records[v.rel] for v in tree.videos])
    atomic_write_text(out / tree.dataset / REPORT, json.dumps(report, indent=1) + "\n")
    return report


def _bar(total: int, initial: int, name: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"prepare {name}", unit="video", file=sys.stderr,
                dynamic_ncols=True)


def _report(tree: SourceTree, out: Path, records: list[VideoRecord]) -> dict:
    written = [r for r in records if r.written]
    return {
        "dataset": tree.dataset,
        "out": str(out / tree.dataset),
        "videos": len(written),
        "splits": dict(Counter(r.video.split("/")[1] for r in written)),
        "frames": sum(r.frames for r in written),
        "already_prepared": sum(r.resumed for r in records),
        "missing_annotations": [r.video for r in records if r.missing_annotation],
        "frames_without_annotation": [f"{r.video}/{x}" for r in records for x in r.frames_without_annotation],
        "annotations_without_frame": [f"{r.video}/{x}" for r in records for x in r.annotations_without_frame],
        "annotations_without_video": [str(p) for p in tree.orphans],
    }


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def summary_lines(report: dict) -> list[str]:
    """The summary printed after a run."""
    splits = ", ".join(f"{s} {n}" for s, n in report["splits"].items())
    lines = [f"{report['dataset']}: {_n(report['videos'], 'video')} ({splits or 'none'}), "
             f"{_n(report['frames'], 'frame')} in {report['out']}"
             + (f" ({report['already_prepared']} prepared earlier)" if report["already_prepared"] else "")]
    for key, noun, rest in (("missing_annotations", "video", "without annotations (not written)"),
                            ("frames_without_annotation", "frame", "without annotation (left out)"),
                            ("annotations_without_frame", "annotation", "without a frame (left out)"),
                            ("annotations_without_video", "annotation folder", "without a video")):
        if report[key]:
            lines.append(f"{_n(len(report[key]), noun)} {rest}, first: {report[key][0]}")
    if len(lines) == 1:
        lines.append("every frame has its map and fixations")
    lines.append(f"report: {Path(report['out']) / REPORT}")
    return lines


def main(args) -> int:
    """``esan-train prepare`` handler."""
    try:
        report = prepare(args.dataset, args.src, args.out, link=args.link, jobs=args.jobs, frame_ext=args.frame_ext)
    except KeyboardInterrupt:
        print("\ninterrupted: finished videos are kept; run the same command again to continue", file=sys.stderr)
        raise
    for line in summary_lines(report):
        print(line)
    return 0
