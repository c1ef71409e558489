"""``--segment-seconds N`` / ``--keep``: outputs of a long run rolled into time-stamped segments.

Every ``N`` seconds (at a map boundary) a stream's overlay video, maps folder and latency log close and
new ones open. One segment's files share a UTC stamp (``20261202T154500Z-00003``, sortable):

* video ``OUT-<stamp>.mp4`` (``OUT.mp4`` is the ``--save-video`` path),
* maps ``MAPS/<stamp>/`` (``MAPS`` is the ``--save-maps`` folder),
* latency log ``OUT-<stamp>.latency.csv`` beside the video, else ``MAPS/<stamp>/latency.csv``
  (one row per map: frame number, capture -> written milliseconds).

A segment is written under a hidden temporary name and renamed when complete (the video closed, so it
plays), so a segment being written is never half-visible. ``--keep`` then deletes the oldest complete
segments: a count (``24``), an age (``90m``, ``12h``, ``7d``) or a total size (``500MB``, ``20GB``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from esan.runtime.core.errors import UserError

STAMP = re.compile(r"\d{8}T\d{6}Z-\d{5}")
_AGE = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


@dataclass(frozen=True)
class Retention:
    """Keep at most ``count`` segments, none older than ``age_s``, at most ``bytes`` in all (one of them)."""

    count: int | None = None
    age_s: float | None = None
    bytes: int | None = None


def parse_keep(text: str | None) -> Retention | None:
    """``--keep``: ``N`` segments, ``N{s,m,h,d}`` of age, or ``N{KB,MB,GB,TB}`` in all; ``UserError`` otherwise."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if m := re.fullmatch(r"(\d+)", t):
        value = int(m.group(1))
        if value >= 1:
            return Retention(count=value)
    elif m := re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", t):
        return Retention(age_s=float(m.group(1)) * _AGE[m.group(2)])
    elif m := re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt])i?b?", t):
        return Retention(bytes=int(float(m.group(1)) * _SIZE[m.group(2)]))
    raise UserError(f"--keep must be a count of segments (24), an age (90m, 12h, 7d) or a size (500MB, 20GB), "
                    f"got {text!r}")


class SegmentRoller:
    """Paths of one stream's current segment; ``roll()`` closes it (renamed into place) and applies ``--keep``."""

    def __init__(self, seconds: float, keep: Retention | None, video: Path | None, maps: Path | None) -> None:
        if not seconds > 0:
            raise UserError(f"--segment-seconds must be > 0, got {seconds}")
        self.seconds, self.keep, self.video, self.maps = float(seconds), keep, video, maps
        self.started = 0.0
        self.seq = 0
        self.stamp: str | None = None
        self.rows: list[str] = []
        self.closed: list[str] = []  # stamps of the segments this run completed

    # -- paths of the current segment ---------------------------------------------------------------
    def _video(self, stamp: str, partial: bool) -> Path:
        assert self.video is not None
        name = f"{self.video.stem}-{stamp}"
        return self.video.with_name(f".{name}.partial{self.video.suffix}" if partial else name + self.video.suffix)

    def _maps(self, stamp: str, partial: bool) -> Path:
        assert self.maps is not None
        return self.maps / (f".{stamp}.partial" if partial else stamp)

    def _csv(self, stamp: str, partial: bool) -> Path:
        if self.video is not None:
            name = f"{self.video.stem}-{stamp}.latency.csv"
            return self.video.with_name(f".{name}.partial" if partial else name)
        return self._maps(stamp, partial) / "latency.csv"

    @property
    def video_path(self) -> Path | None:
        return self._video(self.stamp, True) if self.video is not None and self.stamp else None

    @property
    def maps_dir(self) -> Path | None:
        return self._maps(self.stamp, True) if self.maps is not None and self.stamp else None

    # -- life cycle ------------------------------------------------------------------------------------
    def due(self) -> bool:
        """True when no segment is open or the open one is ``seconds`` old."""
        return self.stamp is None or time.monotonic() - self.started >= self.seconds

    def open(self) -> None:
        self.seq += 1
        self.stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{self.seq:05d}"
        self.started = time.monotonic()
        self.rows = ["frame,capture_to_written_ms"]
        if self.maps is not None:
            self._maps(self.stamp, True).mkdir(parents=True, exist_ok=True)

    def record(self, index: int, latency_ms: float) -> None:
        self.rows.append(f"{int(index)},{latency_ms:.3f}")

    def close(self) -> None:
        """Complete the open segment (the video must be released first): rename its files into place."""
        if self.stamp is None:
            return
        stamp, self.stamp = self.stamp, None
        self._csv(stamp, True).write_text("\n".join(self.rows) + "\n")
        if self.maps is not None:
            os.replace(self._maps(stamp, True), self._maps(stamp, False))  # the folder first: the csv may be in it
        if self.video is not None:
            for partial, final in ((self._video(stamp, True), self._video(stamp, False)),
                                   (self._csv(stamp, True), self._csv(stamp, False))):
                if partial.exists():
                    os.replace(partial, final)
        self.closed.append(stamp)
        self.apply_keep()

    # -- retention -------------------------------------------------------------------------------------
    def segments(self) -> dict[str, list[Path]]:
        """Every complete segment on disk (this run's and earlier ones'), oldest first: stamp -> its files."""
        found: dict[str, list[Path]] = {}
        if self.video is not None and self.video.parent.is_dir():
            prefix = f"{self.video.stem}-"
            for p in self.video.parent.iterdir():
                rest = p.name[len(prefix):] if p.name.startswith(prefix) else ""
                if (m := STAMP.match(rest)) and rest[m.end():] in (self.video.suffix, ".latency.csv"):
                    found.setdefault(m.group(0), []).append(p)
        if self.maps is not None and self.maps.is_dir():
            for p in self.maps.iterdir():
                if STAMP.fullmatch(p.name) and p.is_dir():
                    found.setdefault(p.name, []).append(p)
        return dict(sorted(found.items()))

    def apply_keep(self) -> list[str]:
        """Delete the oldest complete segments beyond ``--keep``; returns their stamps."""
        if self.keep is None:
            return []
        segs = self.segments()
        sizes = {s: sum(_size(p) for p in files) for s, files in segs.items()}
        now = time.time()
        deleted = []
        for stamp, files in segs.items():
            left = len(segs) - len(deleted)
            too_many = self.keep.count is not None and left > self.keep.count
            too_old = self.keep.age_s is not None and now - max(p.stat().st_mtime for p in files) > self.keep.age_s
            too_big = self.keep.bytes is not None and sum(sizes[s] for s in segs if s not in deleted) > self.keep.bytes
            if not (too_many or too_old or too_big) or left <= 1 and not too_old:
                break
            for p in files:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            deleted.append(stamp)
        return deleted


def _size(p: Path) -> int:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size if p.exists() else 0
