"""One stream's segments: a live source's outages split it (DESIGN: gaps).

At an outage the current segment is flushed exactly as at the end of a clip; the next one starts from
zero state under its own scheduler key. Frame numbers stay monotonic across segments and count the
frames lost in the gap (each segment's scheduler indices start at 0 and are shifted by its offset).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol


class _Scheduler(Protocol):
    def open_stream(self, stream_id: Hashable | None = None) -> Hashable: ...

    def finish(self, stream_id: Hashable) -> None: ...

    def close(self, stream_id: Hashable) -> None: ...


class StreamSegments:
    """The scheduler key of the current segment, the first frame number of each, and the gaps between."""

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.key: Hashable = sid
        self.offsets: dict[Hashable, int] = {sid: 0}
        self.next_index = 0  # the number of the next frame pushed
        self.gaps: list[dict[str, Any]] = []
        self.segment_open = True  # False once the current segment was flushed (its source went down)

    def end_segment(self, scheduler: _Scheduler) -> None:
        """The source went down: flush the segment so far now (as at the end of a clip), if it has frames."""
        if self.segment_open and self.next_index > self.offsets[self.key]:
            scheduler.finish(self.key)
            self.segment_open = False

    def new_segment(self, scheduler: _Scheduler, gap: Any) -> None:
        """After an outage: the segment before is flushed; the next starts from zero state after the lost frames."""
        self.end_segment(scheduler)
        if not self.segment_open:
            self.key = (self.sid, len(self.offsets))
            scheduler.open_stream(self.key)
            self.segment_open = True
        self.next_index += gap.frames_lost if gap is not None else 0
        self.offsets[self.key] = self.next_index
        if gap is not None:
            self.gaps.append({**gap.as_dict(), "resumed_at_frame": self.next_index})

    def close_all(self, scheduler: _Scheduler) -> None:
        """Drop every segment at once (no flush)."""
        for key in self.offsets:
            scheduler.close(key)
