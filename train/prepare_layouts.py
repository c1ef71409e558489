"""What ``esan-train prepare`` reads: the official download layouts, checked before anything is written.

- ``dhf1k``: ``SRC/video/<n>.AVI`` (n = 1..1000, ``001.AVI`` ...) and ``SRC/annotation/<nnnn>/maps/*.png``,
  ``.../fixation/*.png`` (or ``.../fixation/maps/*.mat``, key ``I``; continuous maps stored only as
  ``maps/*.mat`` are converted); videos 1-600 are ``training``, 601-700 ``val``, 701-1000 ``test``
  (frames only). Frames come from the AVI; frame ``k`` (1-based) pairs with annotation stem ``k``.
- ``hollywood2``, ``ucf``: ``SRC/<training|testing>/<video>/images/*``, ``maps/*``, ``fixation/*``
  (or ``fixation/maps/*``), files paired by stem.

Every scanner raises one ``UserError`` naming the first file or folder that does not fit. Hidden
files (``.*``), ``Thumbs.db`` and ``__MACOSX`` folders are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from esan.runtime.core.framefiles import IMAGE_EXTS, natural_key
from esan.train.errors import UserError

DATASETS = {"dhf1k": "DHF1K", "hollywood2": "Hollywood-2", "ucf": "UCF"}  # command name -> our folder name
DHF1K_SPLITS = ((1, 600, "training"), (601, 700, "val"), (701, 1000, "test"))
ANNOTATED_SPLITS = ("training", "val", "testing")  # splits that need maps and fixations
MAP_EXTS = (".png", ".jpg", ".jpeg")
FIX_EXTS = (".png", ".mat")
FRAME_SPLITS = {"training": "training", "train": "training", "testing": "testing", "test": "testing"}
IGNORED = ("thumbs.db", "desktop.ini", "__macosx")


@dataclass
class SourceVideo:
    """One video of a download: where its frames come from and its annotation files by stem."""

    dataset: str  # our folder name: DHF1K, Hollywood-2, UCF
    split: str
    name: str  # output folder name
    origin: Path  # the AVI file or the source video folder
    frames: dict[str, Path] = field(default_factory=dict)  # stem -> image (empty: frames come from the AVI)
    maps: dict[str, Path] = field(default_factory=dict)  # stem -> .png/.jpg, or .mat to convert
    fixations: dict[str, list[Path]] = field(default_factory=dict)  # stem -> [.png] and/or [.mat]
    annotated: bool = True  # the split needs maps and fixations
    annotation_dir: Path | None = None  # None in an annotated split: the whole annotation is missing

    @property
    def from_video_file(self) -> bool:
        return not self.frames and self.origin.is_file()

    @property
    def rel(self) -> str:
        return f"{self.dataset}/{self.split}/{self.name}"


@dataclass
class SourceTree:
    """Everything a download holds, in output order, plus annotations that have no video."""

    dataset: str
    videos: list[SourceVideo]
    orphans: list[Path] = field(default_factory=list)


def _ignored(p: Path) -> bool:
    return p.name.startswith(".") or p.name.lower() in IGNORED


def _entries(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not _ignored(p)), key=lambda p: natural_key(p.name))


def _misfit(path: Path, expected: str) -> UserError:
    return UserError(f"{path} does not fit the expected layout: {expected}")


def files_by_stem(folder: Path, exts: tuple[str, ...], expected: str, subdirs: tuple[str, ...] = ()) -> dict[str, Path]:
    """``stem -> file`` of ``folder``; any other file, a folder not in ``subdirs`` or two files of one
    stem are a misfit."""
    out: dict[str, Path] = {}
    for p in _entries(folder):
        if p.is_dir():
            if p.name in subdirs:
                continue
            raise _misfit(p, expected)
        if p.suffix.lower() not in exts:
            raise _misfit(p, expected)
        if p.stem in out:
            raise _misfit(p, f"{expected} (two files named {p.stem}.*: {out[p.stem].name} and {p.name})")
        out[p.stem] = p
    return out


def check_children(folder: Path, allowed: tuple[str, ...], where: str) -> None:
    """Every entry of ``folder`` is one of the sub-folders ``allowed``."""
    for p in _entries(folder):
        if p.name not in allowed or not p.is_dir():
            raise _misfit(p, f"{where} holds {', '.join(a + '/' for a in allowed)}")


def scan_annotation(folder: Path, video: SourceVideo, where: str) -> None:
    """Fill ``video.maps`` and ``video.fixations`` from ``folder/{maps,fixation}`` (a missing folder leaves
    them empty: its frames are reported as unpaired)."""
    video.annotation_dir = folder
    if (folder / "maps").is_dir():
        found = files_by_stem(folder / "maps", MAP_EXTS + (".mat",), f"{where}/maps/ holds <frame>.png")
        pngs = {s: p for s, p in found.items() if p.suffix.lower() != ".mat"}
        video.maps = {s: pngs.get(s, p) for s, p in found.items()}  # a .mat only where no image exists
    fix_dir = folder / "fixation"
    if fix_dir.is_dir():
        expected = f"{where}/fixation/ holds <frame>.png (binary) or maps/<frame>.mat"
        for s, p in files_by_stem(fix_dir, FIX_EXTS, expected, subdirs=("maps",)).items():
            video.fixations.setdefault(s, []).append(p)
        if (fix_dir / "maps").is_dir():
            for s, p in files_by_stem(fix_dir / "maps", FIX_EXTS, expected).items():
                if p.suffix.lower() == ".mat" or s not in video.fixations:
                    video.fixations.setdefault(s, []).append(p)


def _numbered(name: str, pattern: str) -> int | None:
    m = re.fullmatch(pattern, name, flags=re.IGNORECASE)
    return int(m.group(1)) if m else None


def _child(src: Path, names: tuple[str, ...], what: str) -> Path:
    for n in names:
        if (src / n).is_dir():
            return src / n
    raise UserError(f"{src} has no {names[0]}/ folder; --src must be the {what} download folder")


def _check_numbered(v: SourceVideo, where: str) -> None:
    """DHF1K annotations pair with AVI frames by number: every stem must be one, once."""
    seen: dict[int, str] = {}
    for stem, path in [(s, p) for s, p in v.maps.items()] + [(s, ps[0]) for s, ps in v.fixations.items()]:
        if not stem.isdigit():
            raise _misfit(path, f"{where} names its files by frame number (0001.png ...)")
        if seen.setdefault(int(stem), stem) != stem:
            raise _misfit(path, f"{where}: {stem} and {seen[int(stem)]} are the same frame number")


def scan_dhf1k(src: Path) -> SourceTree:
    """The DHF1K release: ``video/*.AVI`` and ``annotation/<nnnn>/``."""
    vdir = _child(src, ("video", "videos"), "DHF1K (video/ and annotation/)")
    adir = _child(src, ("annotation", "annotations"), "DHF1K (video/ and annotation/)")
    avis: dict[int, Path] = {}
    for p in _entries(vdir):
        n = _numbered(p.name, r"0*(\d+)\.avi") if p.is_file() else None
        if n is None or not 1 <= n <= 1000 or n in avis:
            why = f"duplicate of {avis[n].name}" if n in avis else "video/ holds 001.AVI .. 1000.AVI"
            raise _misfit(p, why)
        avis[n] = p
    if not avis:
        raise UserError(f"{vdir} holds no .AVI files; --src must be the DHF1K download folder")
    notes: dict[int, Path] = {}
    for p in _entries(adir):
        n = _numbered(p.name, r"0*(\d+)") if p.is_dir() else None
        if n is None or n in notes:
            raise _misfit(p, "annotation/ holds one folder per video: 0001 .. 0700")
        notes[n] = p
    videos = []
    for n, avi in sorted(avis.items()):
        split = next(s for lo, hi, s in DHF1K_SPLITS if lo <= n <= hi)
        v = SourceVideo("DHF1K", split, f"{n:04d}", avi, annotated=split != "test")
        if v.annotated and n in notes:
            where = f"annotation/{notes[n].name}"
            check_children(notes[n], ("maps", "fixation"), where)
            scan_annotation(notes[n], v, where)
            _check_numbered(v, where)
        videos.append(v)
    orphans = [p for n, p in sorted(notes.items()) if n not in avis]
    return SourceTree("DHF1K", videos, orphans)


def scan_frame_folders(src: Path, dataset: str) -> SourceTree:
    """Hollywood-2 / UCF-Sports releases: ``<training|testing>/<video>/{images,maps,fixation}``."""
    splits: dict[str, Path] = {}
    for p in _entries(src):
        if p.is_file():
            continue  # readme, licence ...
        split = FRAME_SPLITS.get(p.name.lower())
        if split is None or split in splits:
            raise _misfit(p, f"the {dataset} download holds training/ and testing/")
        splits[split] = p
    if not splits:
        raise UserError(f"{src} has no training/ or testing/ folder; --src must be the {dataset} download folder")
    videos = []
    for split in ("training", "testing"):
        if split not in splits:
            continue
        for vdir in _entries(splits[split]):
            where = f"{splits[split].name}/{vdir.name}"
            if not vdir.is_dir():
                raise _misfit(vdir, f"{splits[split].name}/ holds one folder per video")
            check_children(vdir, ("images", "maps", "fixation"), where)
            if not (vdir / "images").is_dir():
                raise UserError(f"{vdir} has no images/ folder; every video of the {dataset} download has one")
            v = SourceVideo(dataset, split, vdir.name, vdir, annotated=True)
            v.frames = files_by_stem(vdir / "images", IMAGE_EXTS, f"{where}/images/ holds the frames")
            if not v.frames:
                raise UserError(f"{vdir / 'images'} holds no frames ({', '.join(IMAGE_EXTS)})")
            if (vdir / "maps").is_dir() or (vdir / "fixation").is_dir():
                scan_annotation(vdir, v, where)
            videos.append(v)
    if not videos:
        raise UserError(f"{src} holds no videos under {', '.join(p.name for p in splits.values())}/")
    return SourceTree(dataset, videos)


def scan_source(dataset: str, src: str | Path) -> SourceTree:
    """Scan a download of ``dataset`` (``dhf1k``, ``hollywood2``, ``ucf``)."""
    key = dataset.lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    root = Path(src).expanduser()
    if not root.is_dir():
        raise UserError(f"--src {root} is not a folder; give the folder the {DATASETS[key]} download was unpacked to")
    return scan_dhf1k(root) if key == "dhf1k" else scan_frame_folders(root, DATASETS[key])
