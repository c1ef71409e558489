"""Bundle cache: ``--checkpoint`` with the ONNX Runtime / TensorRT backends exports once, then reuses.

Layout: ``$ESAN_CACHE_DIR/<key>/`` (default ``~/.cache/esan-rt/bundles/<key>/``) with
``key = <checkpoint sha256[:16]>-L<lookahead>-<precision>-<dcn>-f<bundle format>-g<graph revision>``
(``esan.runtime.core.cache_paths``); an entry
that is not a dynamic-batch bundle (made before the batch axis) is rebuilt too. The exporter writes into a
temporary sibling directory and renames it into place only once every graph passed its check, so a
reader never sees half a bundle and an interrupted export leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from esan.runtime.core.bundle import load_bundle
from esan.runtime.core.cache_paths import ENV_VAR, bundle_key, cache_root
from esan.runtime.core.errors import UserError


def _valid_bundle(path: Path) -> bool:
    if not (path / "manifest.json").is_file():
        return False
    try:
        bundle = load_bundle(path, verify_hashes=False)  # the backend verifies hashes when it loads
    except UserError:  # a damaged cache entry is rebuilt
        return False
    return bundle.batch == "dynamic"  # an entry from before the batch axis is rebuilt


def export_bundle(checkpoint: Path, out: Path, lookahead: int, precision: str, dcn: str, log=print) -> None:
    """Export ``checkpoint`` to an ONNX bundle in ``out`` with the export Python API (needs torch).

    The checkpoint is loaded (and refused if corrupt) before anything is announced or written.
    """
    try:
        from esan.export import onnx_export
        from esan.train.checkpoint import load
    except ImportError as exc:
        raise UserError(
            f"exporting --checkpoint to ONNX needs PyTorch and onnx ({exc}; pip install 'esan-rt[train]'); or "
            "pass --bundle DIR exported on another machine with `esan-rt export`"
        ) from None

    model = load(checkpoint)
    log(f"exporting {checkpoint.name} to an ONNX bundle (lookahead {lookahead}, {precision}, {dcn} DCN), "
        f"cached in {out}")
    onnx_export.export_bundle(checkpoint, out, lookahead=lookahead, precision=precision, dcn=dcn, progress=log,
                              model=model)


def ensure_bundle(
    checkpoint: str | os.PathLike,
    lookahead: int,
    precision: str = "fp32",
    dcn: str = "standard",
    *,
    log=print,
) -> Path:
    """Path of a cached bundle for this checkpoint and settings, exporting it on first use."""
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise UserError(f"checkpoint {ckpt} does not exist; check the path (train one with `esan-train fit`)")
    root = cache_root()
    key = bundle_key(ckpt, lookahead, precision, dcn)
    final = root / key
    if _valid_bundle(final):
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write the bundle cache {root}: {exc.strerror or exc}; set {ENV_VAR}") from exc
    if final.exists():  # damaged or unfinished entry: rebuild it
        shutil.rmtree(final, ignore_errors=True)
    export_bundle(ckpt, final, lookahead, precision, dcn, log=log)  # atomic: temp dir + rename
    return final


def ensure_engines(
    checkpoint: str | os.PathLike, bundle_dir: Path, lookahead: int, precision: str, dcn: str = "standard",
    *, log=print, max_streams: int = 8,
) -> None:
    """Build TensorRT engines into a cached bundle unless it holds engines for this TensorRT and GPU
    that serve ``max_streams`` streams per call."""
    from esan.runtime.core.bundle import load_bundle

    try:
        from esan.export.trt_build import INSTALL_HINT, gpu_info, import_tensorrt
    except ImportError as exc:
        raise UserError(f"--backend trt with --checkpoint needs the export tools ({exc})") from None
    trt = import_tensorrt()
    if trt is None:
        raise UserError(f"--backend trt needs TensorRT: {INSTALL_HINT}; or use --backend ort")
    gpu = gpu_info()
    if not gpu.ok:
        raise UserError(f"--backend trt needs a usable NVIDIA GPU: {gpu.message}; or use --backend ort")
    built = load_bundle(bundle_dir, verify_hashes=False).engines
    if (built and built.tensorrt_version == str(trt.__version__) and built.compute_capability == gpu.compute_capability
            and built.max_batch >= max_streams):
        return
    log(f"building TensorRT {trt.__version__} engines for {gpu.name} into {bundle_dir} (once; takes a while)")
    from esan.export import to_trt

    argv = [str(checkpoint), "--out", str(bundle_dir), "--lookahead", str(lookahead), "--precision", precision,
            "--dcn", dcn, "--max-streams", str(max_streams)]
    if to_trt.main(argv) != 0:
        raise UserError(f"building TensorRT engines into {bundle_dir} failed (see the message above)")
