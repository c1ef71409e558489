"""The runtime's one way in: a checkpoint or bundle and options -> a ready scheduler.

Every entry point (``esan-rt stream``, ``serve``, ``demo``, the benchmarks, your code) goes through here:
:func:`prepare` checks every option once, resolves ``backend="auto"`` / ``device="auto"`` and loads a given
bundle once; :meth:`Session.bundle` exports a checkpoint to the cached bundle the ``ort`` / ``trt``
backends run (on first use, ``esan.export.bundle_cache``); :meth:`Session.scheduler` opens the backend and
returns a ``MultiStreamScheduler`` (``Session.processor``: a single-stream ``StreamProcessor``).
:func:`open` does all of it in one call::

    import esan.runtime

    with esan.runtime.open("model.pt", lookahead=8) as scheduler:
        sid = scheduler.open_stream()
        scheduler.push(sid, rgb_frame)          # uint8 [h, w, 3]
        maps = scheduler.run()                  # StreamResult list (map, index, box, timings)

Every problem the user can fix is one ``UserError`` line saying how.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esan.runtime.backends import KINDS
from esan.runtime.core.assets import DEMO_BUNDLE, DEMO_CHECKPOINT
from esan.runtime.core.errors import UserError

if TYPE_CHECKING:
    from esan.runtime.backends.select import BackendChoice
    from esan.runtime.core.backend_api import Backend
    from esan.runtime.core.bundle import Bundle
    from esan.runtime.core.processor import StreamProcessor
    from esan.runtime.core.scheduler import MultiStreamScheduler

__all__ = ["DEFAULT_LOOKAHEAD", "KINDS", "Session", "open", "prepare"]

DEFAULT_LOOKAHEAD = 8  # for a checkpoint; a bundle's own lookahead otherwise
DCN_MODE = "standard"  # what a checkpoint is exported with (ONNX Runtime and TensorRT both run it)
PRECISIONS = ("fp32", "fp16", "int8")
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"esan-rt: {msg}", file=sys.stderr)


def _check_int(name: str, value: Any, low: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        flag = "--" + name.replace("_", "-")
        raise UserError(f"{name} ({flag}) must be an integer >= {low}, got {value!r}")


def check_options(*, backend: str, device: str, lookahead: int | None, backward_chunk: int, precision: str | None,
                  threads: int | None, max_streams: int | None, max_batch: int | None) -> None:  # fmt: skip
    """Refuse an option no backend accepts (the one place options are checked)."""
    from esan.runtime.backends import check_device
    from esan.runtime.backends.select import check_backend

    check_backend(backend)
    check_device(device)
    _check_int("lookahead", lookahead, 0, optional=True)
    _check_int("backward_chunk", backward_chunk, 1)
    for name, value in (("threads", threads), ("max_streams", max_streams), ("max_batch", max_batch)):
        _check_int(name, value, 1, optional=True)
    if precision is not None and precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


@dataclass
class Session:
    """A checked configuration: what to run, on what, with which schedule (made by :func:`prepare`).

    Nothing is opened until :meth:`scheduler` / :meth:`processor` / :meth:`open_backend`; a checkpoint is
    exported to its cached bundle on the first call that needs it (``bundle``).
    """

    choice: BackendChoice
    lookahead: int
    backward_chunk: int = 1
    precision: str | None = None
    threads: int | None = None
    max_streams: int | None = None
    max_batch: int | None = None
    checkpoint: Path | None = None
    log: Log = _stderr
    _bundle: Bundle | None = None

    @property
    def backend(self) -> str:
        return self.choice.backend

    @property
    def device(self) -> str:
        return self.choice.device

    @property
    def bundle(self) -> Bundle | None:
        """The bundle the backend runs (loaded once; a checkpoint's is exported and cached on first use);
        ``None`` for the torch backend, which runs the checkpoint itself."""
        if self._bundle is None and self.backend != "torch":
            self._bundle = self._fit(self._export())
        return self._bundle

    def _export(self) -> Bundle:
        from esan.export.bundle_cache import ensure_bundle, ensure_engines
        from esan.runtime.core.bundle import load_bundle

        precision = self.precision or "fp32"
        path = ensure_bundle(self.checkpoint, self.lookahead, precision, DCN_MODE, log=self.log)
        if self.backend == "trt":
            ensure_engines(self.checkpoint, path, self.lookahead, precision, DCN_MODE, log=self.log,
                           max_streams=max(8, self.max_batch or 0))  # fmt: skip
        return load_bundle(path)

    def _fit(self, bundle: Bundle) -> Bundle:
        """Refuse a bundle the backend cannot run; note a lookahead it was not built for (exact, slower)."""
        from esan.runtime.core.bundle import check_compatible, rebuild_command

        if not check_compatible(bundle, self.backend, self.lookahead):
            self.log(f"note: bundle {bundle.root} was built for lookahead {bundle.lookahead}; lookahead "
                     f"{self.lookahead} runs the backward cell step by step (same maps, slower); for speed "
                     f"re-export with {rebuild_command(bundle, self.lookahead)}")  # fmt: skip
        return bundle

    def open_backend(self) -> Backend:
        """The backend alone (the caller closes it); most callers want :meth:`scheduler`."""
        from esan.runtime.backends import open_backend

        bundle = self.bundle
        return open_backend(self.backend, bundle_dir=bundle, checkpoint=None if bundle else self.checkpoint,
                            device=self.device, lookahead=self.lookahead, precision=self.precision,
                            threads=self.threads)  # fmt: skip

    def scheduler(self) -> MultiStreamScheduler:
        """A ready ``MultiStreamScheduler`` (any number of streams); ``shutdown()`` (or ``with``) releases it."""
        from esan.runtime.core.scheduler import MultiStreamScheduler

        backend = self.open_backend()
        return MultiStreamScheduler(backend, self.lookahead, self.backward_chunk, max_streams=self.max_streams,
                                    max_batch=self.max_batch)  # fmt: skip

    def processor(self) -> StreamProcessor:
        """A ready single-stream ``StreamProcessor`` (``push`` / ``finish``); ``shutdown()`` releases it."""
        from esan.runtime.core.processor import StreamProcessor

        return StreamProcessor(self.open_backend(), self.lookahead, self.backward_chunk)


def prepare(
    checkpoint: str | os.PathLike | None = None,
    *,
    bundle: str | os.PathLike | None = None,
    backend: str = "auto",
    device: str = "auto",
    lookahead: int | None = None,
    backward_chunk: int = 1,
    precision: str | None = None,
    threads: int | None = None,
    max_streams: int | None = None,
    max_batch: int | None = None,
    log: Log | None = None,
) -> Session:
    """Check everything that can be checked without opening the engines; a :class:`Session`.

    One of ``checkpoint`` (an ``esan-train`` checkpoint, ``.pt``) or ``bundle`` (an exported bundle
    directory). ``backend``: ``auto`` (TensorRT with a GPU, else ONNX Runtime on CUDA, else on the CPU;
    ``backends.select.choose_backend``), ``ort``, ``trt`` or ``torch`` (checkpoints only); ``device``:
    ``auto``, ``cpu``, ``cuda[:N]`` or ``tensorrt`` (ONNX Runtime's TensorRT EP). ``lookahead``: future frames
    the backward pass sees (default: the bundle's, 8 for a checkpoint). ``precision``: ``fp32``/``fp16``
    (default: the bundle's; fp32 for a checkpoint). ``threads``: CPU threads of the inference library.
    ``max_streams`` / ``max_batch``: the scheduler's limits. ``log``: where notes go (default: stderr).
    """
    from esan.runtime.backends.select import choose_backend
    from esan.runtime.core.bundle import load_bundle

    check_options(backend=backend, device=device, lookahead=lookahead, backward_chunk=backward_chunk,
                  precision=precision, threads=threads, max_streams=max_streams, max_batch=max_batch)  # fmt: skip
    if (checkpoint is None) == (bundle is None):
        raise UserError("give one of a checkpoint (--checkpoint CKPT) or a bundle (--bundle DIR)")
    loaded = None
    if bundle is not None:
        if backend.lower() == "torch":
            raise UserError("--backend torch runs a checkpoint: pass --checkpoint CKPT instead of --bundle")
        if not (Path(bundle) / "manifest.json").is_file():
            raise UserError(f"{bundle} is not a bundle (no manifest.json); export one with "
                            "`esan-rt export CKPT --out DIR`")
        loaded = load_bundle(bundle)  # the one load: the backend opens this object
    elif not Path(checkpoint).is_file():
        raise UserError(f"checkpoint {checkpoint} does not exist; check the path (train one with `esan-train fit`)")
    choice = choose_backend(backend, device, bundle=loaded)  # auto never picks torch
    if loaded is None and choice.backend == "ort" and precision in (None, "fp32") and _is_demo(checkpoint):
        loaded, checkpoint = load_bundle(DEMO_BUNDLE), None  # its shipped ONNX bundle: no export, no PyTorch
    if lookahead is None:
        lookahead = loaded.lookahead if loaded is not None else DEFAULT_LOOKAHEAD
    session = Session(choice, lookahead, backward_chunk, precision, threads, max_streams, max_batch,
                      checkpoint=Path(checkpoint) if checkpoint is not None else None, log=log or _stderr)
    if loaded is not None:
        session._bundle = session._fit(loaded)
    return session


def _is_demo(checkpoint: str | os.PathLike) -> bool:
    """Whether ``checkpoint`` is the shipped demo model (whose ONNX bundle ships beside it)."""
    return Path(checkpoint).resolve() == DEMO_CHECKPOINT.resolve() and (DEMO_BUNDLE / "manifest.json").is_file()


def open(  # noqa: A001 - esan.runtime.open, as the built-in opens a file
    checkpoint: str | os.PathLike | None = None,
    *,
    single: bool = False,
    **options: Any,
) -> MultiStreamScheduler | StreamProcessor:
    """A ready scheduler for ``checkpoint`` or ``bundle=DIR`` (the options of :func:`prepare`).

    Returns a ``MultiStreamScheduler`` (streams: ``open_stream``, ``push``, ``run``, ``finish``), or with
    ``single=True`` a ``StreamProcessor`` (one stream: ``push``, ``finish``). Use it as a context manager
    (or call ``shutdown()``) to release the backend.
    """
    session = prepare(checkpoint, **options)
    return session.processor() if single else session.scheduler()
