"""Where cached bundles live: ``$ESAN_CACHE_DIR/<key>/`` (default ``~/.cache/esan-rt/bundles/<key>/``).

``key = <checkpoint sha256[:16]>-L<lookahead>-<precision>-<dcn>-f<bundle format version>-g<graph revision>``;
``esan.export.bundle_cache`` fills it. The format tag keeps a newer esan-rt from reusing an older bundle layout
(format 1: static batch 1); the graph revision makes it re-export when the exported graphs got faster with
the same layout (revision 2: ``bwd_window`` without the recurrent conv on its zero start state).
"""

from __future__ import annotations

import os
from pathlib import Path

from esan.runtime.core.bundle import FORMAT_VERSION, sha256_file

ENV_VAR = "ESAN_CACHE_DIR"
GRAPH_REVISION = 2


def cache_root() -> Path:
    """Directory holding the cached bundles (``$ESAN_CACHE_DIR`` or ``~/.cache/esan-rt/bundles``)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "esan-rt" / "bundles"


def bundle_key(checkpoint: str | os.PathLike, lookahead: int, precision: str = "fp32", dcn: str = "standard") -> str:
    return f"{sha256_file(checkpoint)[:16]}-L{int(lookahead)}-{precision}-{dcn}-f{FORMAT_VERSION}-g{GRAPH_REVISION}"
