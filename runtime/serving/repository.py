"""Write a Triton model repository for a bundle: ``<repo>/esan/{config.pbtxt, 1/model.py, 1/bundle/}``.

The bundle is hard-linked (copied across file systems) into the model version, so the repository is
self-contained: the same folder runs under ``esan-rt serve`` here or in NVIDIA's Triton container on a
GPU machine. The model directory is written beside and swapped in whole, so a reader never sees half of it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from esan.runtime.core.bundle import Bundle, load_bundle, sha256_file
from esan.runtime.core.errors import UserError
from esan.runtime.core.fsutil import atomic_write_text
from esan.runtime.serving import protocol as P

MODEL_PY = '''"""Triton Python-backend model `esan` (written by `esan-rt serve`): esan.runtime.serving.triton_model."""

from esan.runtime.serving.triton_model import TritonPythonModel  # noqa: F401
'''


@dataclass(frozen=True)
class ServeOptions:
    """How the model serves: engines (backend/device), schedule, limits, instances."""

    backend: str = "ort"
    device: str = "cpu"
    lookahead: int = 8
    backward_chunk: int = 1
    max_streams: int = 16
    max_frame_pixels: int = 7680 * 4320
    idle_timeout_s: float = 30.0
    threads: int | None = None
    instances: int = 1

    def check(self) -> None:
        """The model's options through the runtime's one check, then the serving ones."""
        from esan.runtime.session import check_options

        check_options(backend=self.backend, device=self.device, lookahead=self.lookahead,
                      backward_chunk=self.backward_chunk, precision=None, threads=self.threads,
                      max_streams=self.max_streams, max_batch=None)  # fmt: skip
        for name in ("max_frame_pixels", "instances"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.idle_timeout_s <= 0:
            raise UserError(f"--idle-timeout must be > 0 seconds, got {self.idle_timeout_s}")

    @property
    def gpu(self) -> bool:
        return self.device.startswith("cuda") or self.device == "tensorrt" or self.backend == "trt"


def config_pbtxt(bundle: Bundle, opts: ServeOptions) -> str:
    """The model configuration: sequence batcher (oldest strategy) over streams, one instance group."""
    h2, w2 = bundle.output_size
    batch = opts.max_streams
    # room for a few START requests past max_streams, so the model can refuse them with a clear error
    # (Triton itself would only hold them back until a candidate sequence frees up)
    candidates = opts.max_streams + 8
    params = {
        "bundle": "bundle", "backend": opts.backend, "device": opts.device, "precision": bundle.precision,
        "lookahead": str(opts.lookahead), "backward_chunk": str(opts.backward_chunk),
        "max_streams": str(opts.max_streams), "max_frame_pixels": str(opts.max_frame_pixels),
        "threads": str(opts.threads or 0), "radius": str(bundle.radius),
        "input_size": "x".join(map(str, bundle.input_size)), "output_size": f"{h2}x{w2}",
        "bundle_sha256": sha256_file(bundle.root / "manifest.json"),
    }
    assert set(params) == set(P.PARAM_KEYS)
    param_text = "\n".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}'
                           for k, v in params.items())
    kind = "KIND_GPU" if opts.gpu else "KIND_CPU"
    start, end, corrid = P.CONTROLS
    flag = "int32_false_true: [ 0, 1 ]"
    controls = (
        f'    {{ name: "{start}" control [ {{ kind: CONTROL_SEQUENCE_START {flag} }} ] }},\n'
        f'    {{ name: "{end}" control [ {{ kind: CONTROL_SEQUENCE_END {flag} }} ] }},\n'
        f'    {{ name: "{corrid}" control [ {{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 }} ] }}'
    )
    return f"""# Written by esan-rt serve. One stateful model: each sequence (CORRID) is one stream.
name: "{P.MODEL_NAME}"
backend: "python"
max_batch_size: {batch}
input [
  {{ name: "{P.FRAME}" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] allow_ragged_batch: true }}
]
output [
  {{ name: "{P.MAPS}" data_type: TYPE_FP32 dims: [ -1, {h2}, {w2} ] }},
  {{ name: "{P.INDICES}" data_type: TYPE_INT64 dims: [ -1 ] }},
  {{ name: "{P.BOXES}" data_type: TYPE_INT32 dims: [ -1, 4 ] }},
  {{ name: "{P.STAGE_MS}" data_type: TYPE_FP32 dims: [ {len(P.STAGES)} ] }}
]
sequence_batching {{
  max_sequence_idle_microseconds: {round(opts.idle_timeout_s * 1e6)}
  oldest {{
    max_candidate_sequences: {candidates}
    preferred_batch_size: [ {batch} ]
    max_queue_delay_microseconds: 0
  }}
  control_input [
{controls}
  ]
}}
instance_group [ {{ count: {opts.instances} kind: {kind} }} ]
{param_text}
"""


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


MARKER = ".esan-rt-serve"  # in every model folder this tool writes: only such a folder is ever replaced


def _ours(model_dir: Path) -> bool:
    """Whether ``model_dir`` was written by ``esan-rt serve`` (its marker, or an older one's exact model.py)."""
    if (model_dir / MARKER).is_file():
        return True
    try:
        return (model_dir / "1" / "model.py").read_text() == MODEL_PY
    except (OSError, UnicodeDecodeError):
        return False


def write_repository(bundle: Bundle | str | os.PathLike, repo_dir: str | os.PathLike, opts: ServeOptions) -> Path:
    """Write ``<repo_dir>/esan`` for the bundle (a loaded one or its directory); returns the model directory.

    An older ``esan`` folder is replaced whole only when this tool wrote it (``MARKER``); any other is refused.
    """
    opts.check()
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    if opts.backend == "trt" and bundle.engines is None:
        from esan.runtime.core.bundle import to_trt_command

        raise UserError(f"bundle {bundle.root} has no TensorRT engines: build them with {to_trt_command(bundle)}")
    repo = Path(repo_dir)
    try:
        repo.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the model repository {repo}: {exc.strerror or exc}; "
                        "pass another --model-repository") from exc
    final = repo / P.MODEL_NAME
    if final.is_symlink() or (final.exists() and not (final.is_dir() and _ours(final))):
        raise UserError(f"{final} exists and was not written by esan-rt serve (no {MARKER} in it); it is left "
                        "as it is: pass another --model-repository, or move it away yourself")
    tmp = Path(tempfile.mkdtemp(prefix=f".{P.MODEL_NAME}.", dir=repo))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a server in a container may run as another user
    try:
        shutil.copytree(bundle.root, tmp / "1" / "bundle", copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns("__pycache__", "*.tmp", ".*"))
        atomic_write_text(tmp / "1" / "model.py", MODEL_PY)
        atomic_write_text(tmp / "config.pbtxt", config_pbtxt(bundle, opts))
        atomic_write_text(tmp / MARKER, "written by esan-rt serve; replaced whole on the next write\n")
        old = Path(tempfile.mkdtemp(prefix=f".{P.MODEL_NAME}.old.", dir=repo))  # a fresh name: nothing else goes
        if final.exists():
            final.rename(old / P.MODEL_NAME)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
