"""Read and validate an ESAN-RT bundle (ONNX graphs, optional TensorRT engines, ``manifest.json``).

Torch-free and numpy-free (json + hashlib only). The schema is docs/contracts.md, "Bundle manifest".

API::

    bundle = load_bundle(dir)            # Bundle; raises UserError saying how to rebuild
    bundle.graph_path("encoder")         # Path of encoder.onnx
    bundle.engine_path("encoder")        # Path of encoder.plan (UserError if no engines)
    use_window = check_compatible(bundle, "ort", lookahead=8)

``check_compatible`` answers whether the runtime should use the unrolled ``bwd_window`` graph: only
when the requested lookahead equals the bundle's ``lookahead``. Any other L (or ``None``, the
whole clip) is served exactly by running the ``cell_bwd`` step graph L+1 times, so a lookahead
mismatch is never an error. Refused: plugin-DCN bundles on ONNX Runtime backends (they need our
TensorRT plugin), the TensorRT backend without engines, or engines built with another TensorRT
version or for another GPU compute capability.

Manifest notes beyond the contract: ``plugin`` is ``null`` for ``dcn == "standard"``; ``checks``
entries also hold per-output numbers under ``outputs``; ``engines.files`` maps graph -> {file, sha256}.

Batch: format 2 bundles say ``"batch": "dynamic"`` and give dimension 0 of every tensor symbolically,
``"batch"`` (one row per stream) or ``"K*batch"`` (K rows per stream, stream-major: the aligner's window
and the ``bwd_window`` input); ``TensorSpec.rows`` and ``TensorSpec.at_batch`` read it. Format 1 bundles
(``batch`` absent) have static batch-1 shapes: backends run them one stream per call.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esan.runtime.core.errors import UserError

FORMAT = "esan-rt-bundle"
FORMAT_VERSION = 2  # 2: dynamic batch axis ("batch": "dynamic"); 1: static batch 1 (still read)
BATCH_DIM = "batch"
MANIFEST = "manifest.json"
GRAPH_NAMES = ("encoder", "aligner", "cell_fwd", "cell_bwd", "bwd_window", "decoder")
PRECISIONS = ("fp32", "fp16", "int8")
DCN_MODES = ("standard", "plugin")
DTYPES = ("uint8", "float32", "float16")
BACKENDS_ORT = ("ort", "ort-cpu", "ort-cuda", "ort-gpu", "onnxruntime")
BACKENDS_TRT = ("trt", "tensorrt")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # dimension 0 may be symbolic: "batch" or "K*batch" (format 2)
    dtype: str  # numpy name: uint8, float32, float16

    @property
    def rows(self) -> int:
        """Rows of dimension 0 per stream (``K`` for ``"K*batch"``, 1 for ``"batch"``; static: the dimension)."""
        return batch_rows(self.shape[0]) if self.shape else 1

    @property
    def dynamic(self) -> bool:
        return bool(self.shape) and isinstance(self.shape[0], str)

    def at_batch(self, batch: int) -> tuple[int, ...]:
        """The concrete shape for ``batch`` streams (a static shape is returned as it is)."""
        if not self.dynamic:
            return tuple(int(d) for d in self.shape)
        return (self.rows * int(batch), *(int(d) for d in self.shape[1:]))


@dataclass(frozen=True)
class GraphSpec:
    name: str
    file: Path
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Engines:
    tensorrt_version: str
    gpu: str
    compute_capability: str
    files: dict[str, Path]
    max_batch: int = 1  # streams one engine call serves (the optimisation profile's maximum)


@dataclass(frozen=True)
class Bundle:
    """A validated bundle. ``config`` is ``ESANConfig.to_dict()``; sizes are (H, W)."""

    root: Path
    config: dict[str, Any]
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    radius: int
    lookahead: int
    precision: str
    dcn: str
    opset: int
    graphs: dict[str, GraphSpec]
    engines: Engines | None
    batch: int | str = 1  # "dynamic": one call serves any number of streams; 1: one stream per call
    normalization: dict[str, Any] = field(default_factory=dict)
    fp32_parts: tuple[str, ...] = ()
    checks: dict[str, Any] = field(default_factory=dict)
    source_checkpoint: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def window(self) -> int:
        """Frames per alignment window (2T+1)."""
        return 2 * self.radius + 1

    def graph_path(self, name: str) -> Path:
        return self.graphs[name].file

    def engine_path(self, name: str) -> Path:
        if self.engines is None:
            raise UserError(f"bundle {self.root} has no TensorRT engines; build them with {to_trt_command(self)}")
        return self.engines.files[name]


def rebuild_command(bundle_or_dir: Bundle | str | Path, lookahead: int | str = "L", **extra: str) -> str:
    """The command that (re)creates the ONNX bundle."""
    root = bundle_or_dir.root if isinstance(bundle_or_dir, Bundle) else bundle_or_dir
    ckpt = "CKPT"
    if isinstance(bundle_or_dir, Bundle):
        ckpt = bundle_or_dir.source_checkpoint.get("path") or ckpt
        extra = {"precision": bundle_or_dir.precision, "dcn": bundle_or_dir.dcn, **extra}
    opts = "".join(f" --{k} {v}" for k, v in extra.items())
    return f"`esan-rt export {ckpt} --out {root} --lookahead {lookahead}{opts}`"


def to_trt_command(bundle: Bundle) -> str:
    ckpt = bundle.source_checkpoint.get("path") or "CKPT"
    return (
        f"`esan-rt export {ckpt} --engines --out {bundle.root} --lookahead {bundle.lookahead} "
        f"--precision {bundle.precision} --dcn {bundle.dcn}`"
    )


def batch_rows(dim: int | str) -> int:
    """Rows per stream of a dimension 0: ``"batch"`` -> 1, ``"K*batch"`` -> K, a static int -> itself."""
    if isinstance(dim, int):
        return dim
    head, _, tail = str(dim).replace(" ", "").rpartition("*")
    if tail != BATCH_DIM or (head and not head.isdigit()) or (head and int(head) < 1):
        raise ValueError(f"symbolic dimension {dim!r} is neither 'batch' nor 'K*batch'")
    return int(head) if head else 1


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def bundle_file(root: Path, name: Any, what: str, fail) -> Path:
    """``root / name`` for a file the manifest names; ``fail`` unless it resolves inside ``root``.

    The name is hostile: it must be a relative string, and the resolved path (symlinks followed) must stay
    inside the resolved bundle folder, so a manifest cannot make the runtime read or hash files elsewhere.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        fail(f"{what} names no file ({name!r})")
    path = root / name
    try:
        inside = Path(name).is_absolute() is False and path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop, an unreadable folder
        inside = False
    if not inside:
        fail(f"{what} file {name!r} lies outside the bundle folder (absolute, '..' or a symlink out)")
    return path


def _optional(man: dict, key: str, kind: type, fail) -> Any:
    """An optional manifest field of JSON type ``kind`` (dict or list; absent or null: empty)."""
    value = man.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        fail(f"{key} must be a JSON {'object' if kind is dict else 'array'}, got {type(value).__name__}")
    return kind(value)


def _dims(raw: Any) -> tuple[int | str, ...]:
    """A manifest shape: integers, dimension 0 possibly symbolic (``ValueError``/``TypeError`` otherwise)."""
    dims = list(raw)
    head = dims[:1] if dims and isinstance(dims[0], str) and batch_rows(dims[0]) else []
    return (*head, *(int(d) for d in dims[len(head):]))


def _tensors(items: Any, where: str, fail, dynamic: bool) -> tuple[TensorSpec, ...]:
    if not isinstance(items, list) or not items:
        fail(f"{where} must be a non-empty list")
    out = []
    for t in items:
        try:
            spec = TensorSpec(str(t["name"]), _dims(t["shape"]), str(t["dtype"]))
        except (KeyError, TypeError, ValueError):
            fail(f"{where} has a malformed tensor entry {t!r}")
        if spec.dynamic != dynamic:
            fail(f"{where}: tensor {spec.name} has shape {list(spec.shape)}, but the manifest says batch "
                 f"{'dynamic' if dynamic else 1}")
        if spec.dtype not in DTYPES:
            fail(f"{where}: tensor {spec.name} has unknown dtype {spec.dtype!r}")
        out.append(spec)
    return tuple(out)


def load_bundle(path: str | Path, verify_hashes: bool = True) -> Bundle:
    """Read ``path/manifest.json`` and validate format, version, graphs, files and (optionally) hashes."""
    root = Path(path)
    man_path = root / MANIFEST

    def fail(msg: str) -> None:
        raise UserError(f"bundle {root}: {msg}; rebuild it with {rebuild_command(root)}")

    if not root.is_dir():
        fail("directory does not exist")
    if not man_path.is_file():
        fail(f"no {MANIFEST} (not a bundle, or an export that did not finish)")
    try:
        man = json.loads(man_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"{MANIFEST} is not valid JSON ({exc})")
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        found = man.get("format") if isinstance(man, dict) else None
        fail(f"{MANIFEST} is not an {FORMAT} manifest (format={found!r})")
    version = man.get("format_version")
    if not isinstance(version, int) or version < 1:
        fail(f"bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise UserError(
            f"bundle {root} has format_version {version}, this esan-rt reads up to {FORMAT_VERSION}: "
            f"upgrade esan-rt or re-export with {rebuild_command(root)}"
        )
    try:
        precision, dcn = man["precision"], man["dcn"]
        radius, lookahead = int(man["radius"]), int(man["lookahead"])
        input_size = (int(man["input_size"][0]), int(man["input_size"][1]))
        output_size = (int(man["output_size"][0]), int(man["output_size"][1]))
        config, raw_graphs = dict(man["config"]), man["graphs"]
        opset = int(man.get("opset", 0))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        fail(f"{MANIFEST} misses or mangles a required field ({exc!r})")
    if precision not in PRECISIONS:
        fail(f"unknown precision {precision!r}")
    if dcn not in DCN_MODES:
        fail(f"unknown dcn mode {dcn!r}")
    if lookahead < 0 or radius < 0:
        fail(f"bad lookahead {lookahead} or radius {radius}")
    batch = man.get("batch", 1)
    if batch not in (1, "dynamic"):
        fail(f"unknown batch {batch!r} (1 or 'dynamic')")
    if not isinstance(raw_graphs, dict):
        fail(f"'graphs' in {MANIFEST} must be an object mapping graph names to files, not {type(raw_graphs).__name__}")
    missing = [g for g in GRAPH_NAMES if g not in raw_graphs]
    if missing:
        fail(f"graphs {missing} are missing from {MANIFEST}")
    graphs = {}
    for name in GRAPH_NAMES:
        g = raw_graphs[name]
        if not isinstance(g, dict) or "file" not in g or "sha256" not in g:
            fail(f"graph {name} has no file/sha256")
        file = bundle_file(root, g["file"], f"graph {name}", fail)
        if not file.is_file():
            fail(f"graph file {g['file']} is missing")
        if verify_hashes and sha256_file(file) != g["sha256"]:
            fail(f"graph file {g['file']} does not match its sha256 (modified or truncated)")
        ins = _tensors(g.get("inputs"), f"graph {name} inputs", fail, batch == "dynamic")
        outs = _tensors(g.get("outputs"), f"graph {name} outputs", fail, batch == "dynamic")
        graphs[name] = GraphSpec(name, file, g["sha256"], ins, outs)
    engines = None
    raw_eng = man.get("engines")
    if raw_eng:
        files = {}
        hint = "rebuild the engines with `esan-rt export CKPT --engines --out DIR`"
        if not isinstance(raw_eng, dict) or not isinstance(raw_eng.get("files") or {}, dict):
            raise UserError(f"bundle {root}: 'engines' in {MANIFEST} is malformed (it must map graph names to "
                            f"their files); {hint}")
        try:
            max_batch = int(raw_eng.get("max_batch") or 1)
        except (TypeError, ValueError):
            raise UserError(f"bundle {root}: engines max_batch {raw_eng.get('max_batch')!r} is not a number; "
                            f"{hint}") from None
        for name in GRAPH_NAMES:
            e = (raw_eng.get("files") or {}).get(name)
            if not isinstance(e, dict) or "file" not in e:
                raise UserError(f"bundle {root}: engine for {name} is missing; {hint}")
            file = bundle_file(root, e["file"], f"engine {name}", fail)
            if not file.is_file():
                raise UserError(f"bundle {root}: engine for {name} is missing; {hint}")
            if verify_hashes and sha256_file(file) != e.get("sha256"):
                raise UserError(f"bundle {root}: engine {e['file']} does not match its sha256; {hint}")
            files[name] = file
        engines = Engines(
            str(raw_eng.get("tensorrt_version", "")),
            str(raw_eng.get("gpu", "")),
            str(raw_eng.get("compute_capability", "")),
            files,
            max_batch,
        )
    return Bundle(
        root=root,
        config=config,
        input_size=input_size,
        output_size=output_size,
        radius=radius,
        lookahead=lookahead,
        precision=precision,
        dcn=dcn,
        opset=opset,
        graphs=graphs,
        engines=engines,
        batch=batch,
        normalization=_optional(man, "normalization", dict, fail),
        fp32_parts=tuple(_optional(man, "fp32_parts", list, fail)),
        checks=_optional(man, "checks", dict, fail),
        source_checkpoint=_optional(man, "source_checkpoint", dict, fail),
        manifest=man,
    )


def check_compatible(
    bundle: Bundle,
    backend: str,
    lookahead: int | None,
    tensorrt_version: str | None = None,
    compute_capability: str | None = None,
) -> bool:
    """Refuse a bundle the backend cannot run; return True when ``bwd_window`` serves ``lookahead``.

    ``backend``: ``"ort"`` (also ``ort-cpu``/``ort-cuda``/``onnxruntime``), ``"trt"``, or ``"torch"``.
    ``lookahead=None`` means the whole clip (always the step graph). For ``trt``, pass the running
    TensorRT version / GPU compute capability to refuse engines built elsewhere.
    """
    if lookahead is not None and lookahead < 0:
        raise UserError(f"lookahead must be >= 0, got {lookahead}")
    b = backend.lower()
    if b in BACKENDS_ORT and bundle.dcn == "plugin":
        raise UserError(
            f"bundle {bundle.root} uses the TensorRT DCN plugin, which ONNX Runtime cannot run; "
            f"re-export it with {rebuild_command(bundle, bundle.lookahead, dcn='standard')} or use --backend trt"
        )
    if b in BACKENDS_TRT:
        if bundle.engines is None:
            raise UserError(f"bundle {bundle.root} has no TensorRT engines; build them with {to_trt_command(bundle)}")
        built = bundle.engines
        if tensorrt_version and built.tensorrt_version and tensorrt_version != built.tensorrt_version:
            raise UserError(
                f"engines in {bundle.root} were built with TensorRT {built.tensorrt_version}, this is "
                f"{tensorrt_version}; rebuild them with {to_trt_command(bundle)}"
            )
        if compute_capability and built.compute_capability and compute_capability != built.compute_capability:
            raise UserError(
                f"engines in {bundle.root} were built for compute capability {built.compute_capability} "
                f"({built.gpu}), this GPU is {compute_capability}; rebuild them with {to_trt_command(bundle)}"
            )
    elif b not in BACKENDS_ORT and b != "torch":
        raise UserError(f"unknown backend {backend!r}; use ort, trt or torch")
    return lookahead is not None and lookahead == bundle.lookahead
