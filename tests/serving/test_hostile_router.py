"""One client cannot join, read or restart another's stream through the router (real scheduler, ORT)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BUNDLE_LOOKAHEAD, make_clip

from esan.runtime.serving import protocol as P
from esan.runtime.serving.router import Request, StreamRouter


@pytest.fixture
def router(ort_backend):
    from esan.runtime.core.scheduler import MultiStreamScheduler

    sched = MultiStreamScheduler(ort_backend, BUNDLE_LOOKAHEAD, max_streams=4)
    return StreamRouter(sched, max_frame_pixels=10_000, idle_timeout_s=60.0)


def test_start_on_an_open_id_is_refused_and_the_stream_survives(router) -> None:
    a = make_clip(4, (40, 90), seed=3)
    assert router.handle([Request(7, True, False, a[0])])[0].error is None
    hijack = router.handle([Request(7, True, False, a[1])])[0]
    assert hijack.error.startswith(P.REFUSED) and "already open" in hijack.error and not hijack.results
    assert router.stats.refused == 1
    assert router.scheduler.streams == [7] and router.scheduler.stream(7).n == 1  # not reset, frame 1 not taken
    results = []
    for f in a[1:]:
        out = router.handle([Request(7, False, False, f)])[0]
        assert out.error is None
        results += out.results
    results += router.handle([Request(7, False, True, np.zeros((0, 0, 3), np.uint8))])[0].results
    assert sorted(r.index for r in results) == [0, 1, 2, 3]  # indices continue: the stream was never restarted


def test_frames_of_an_id_without_start_are_refused(router) -> None:
    a = make_clip(2, (40, 90), seed=4)
    out = router.handle([Request(11, False, False, a[0])])[0]
    assert out.error.startswith(P.UNKNOWN_STREAM) and 11 not in router.scheduler.streams
    end = router.handle([Request(12, False, True, np.zeros((0, 0, 3), np.uint8))])[0]
    assert end.error.startswith(P.UNKNOWN_STREAM) and router.active == 0
