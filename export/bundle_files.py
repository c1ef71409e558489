"""Writing a bundle folder atomically: check the target, then move the finished temp folder into place."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from esan.runtime.core.bundle import MANIFEST
from esan.runtime.core.errors import UserError


def prepare_target(out: Path) -> None:
    """Refuse an ``out`` that exists and is not a bundle (an older bundle there may be replaced)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists())):
        raise UserError(f"{out} exists and is not a bundle directory; choose another --out or empty it")


def install_bundle(tmp: Path, out: Path) -> None:
    """Move the finished temp bundle to ``out``, replacing an older bundle there."""
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; a bundle is as readable as any other output
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{int(time.time() * 1000)}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
