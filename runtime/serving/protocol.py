"""What the Triton model ``esan`` and its clients agree on: tensor names, parameters, error phrases.

A request is one RGB uint8 frame ``FRAME [1, h, w, 3]`` (Triton's batch dimension first) with the
sequence controls START / END / CORRID. An empty frame (``h = 0`` or ``w = 0``) with END ends the stream
without a new frame. The response carries the maps that became ready: ``MAPS [1, K, H/2, W/2]`` float32,
``INDICES [1, K]`` int64, ``BOXES [1, K, 4]`` int32 (top, left, height, width of the picture on the map
canvas) and ``STAGE_MS [1, S]`` float32: milliseconds per stage of the scheduling round that served the
request, and last the round's total as the model measured it.
"""

from __future__ import annotations

from esan.runtime.core.stream_state import STAGES as SCHEDULER_STAGES

MODEL_NAME = "esan"
FRAME = "FRAME"
MAPS, INDICES, BOXES, STAGE_MS = "MAPS", "INDICES", "BOXES", "STAGE_MS"
OUTPUTS = (MAPS, INDICES, BOXES, STAGE_MS)
CONTROLS = ("START", "END", "CORRID")
STAGES = (*SCHEDULER_STAGES, "total")  # the scheduler's stages, then the round's total

# error phrases (the model's messages start with one; clients classify errors by them)
REFUSED = "stream refused:"
BAD_FRAME = "frame rejected:"
UNKNOWN_STREAM = "unknown stream:"

# model parameters written into config.pbtxt (string values)
PARAM_KEYS = ("bundle", "backend", "device", "precision", "lookahead", "backward_chunk", "max_streams",
              "max_frame_pixels", "threads", "radius", "input_size", "output_size", "bundle_sha256")
