"""How many CPU cores this process may use: the default thread count of the inference libraries we configure."""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPU cores this process may run on: its affinity mask, capped by a cgroup v2 CPU quota (containers).

    ONNX Runtime's own default counts the host's physical cores, which oversubscribes a container limited
    to fewer (and ignores ``taskset``).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period) + 0.5)))
    except (OSError, ValueError):
        pass  # no cgroup v2 CPU controller here: the affinity mask is the limit
    return max(1, cores)
