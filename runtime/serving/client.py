"""``RemoteStream``: the ``push / finish`` processor of ``esan-rt stream`` with the compute on a Triton server.

One stream is one Triton sequence (a random 63-bit CORRID, START on the first request, END on the last)
over its own gRPC bi-directional stream. ``push`` sends one frame and waits for its response (the maps
that became ready, as local ``StreamProcessor.push`` returns them), ``finish`` sends END and returns the
rest. Several servers: ``server_for(servers, i)`` pins stream ``i`` to one of them (round robin).
"""

from __future__ import annotations

import queue
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from esan.runtime.core.errors import UserError
from esan.runtime.core.letterbox import Box
from esan.runtime.core.processor import StreamResult
from esan.runtime.core.scheduler_api import EngineInfo, delay_frames
from esan.runtime.serving import protocol as P
from esan.runtime.serving.security import ClientTLS

CLIENT_HINT = "pip install 'esan-rt[serve]'"


class ServerError(UserError):
    """The server cannot be reached, refused the stream, or went away."""


class StreamRefused(ServerError):
    """The server is at its ``--max-streams`` limit."""


class ServerLost(ServerError):
    """The server went away (or stopped answering) in the middle of a stream."""


class FrameRejected(UserError):
    """The server refused one frame (malformed or oversized); the stream goes on."""


def tritonclient_grpc() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as exc:
        raise UserError(f"--server needs the Triton client ({exc.name or exc} is missing): {CLIENT_HINT}") from None
    return grpcclient


def check_address(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--server must be HOST:PORT (the server's gRPC port, e.g. 127.0.0.1:8001), got {address!r}")
    return address


def server_for(servers: list[str], stream_index: int) -> str:
    """The server stream ``stream_index`` is pinned to (round robin; a stream never moves)."""
    if not servers:
        raise UserError("no --server given")
    return servers[stream_index % len(servers)]


@dataclass(frozen=True)
class ModelParams:
    """The served model's parameters (``protocol.PARAM_KEYS``, read from its config), parsed once."""

    address: str
    params: dict[str, str]

    @property
    def engine(self) -> EngineInfo:
        return EngineInfo(f"triton:{self.params.get('backend', '?')}@{self.address}",
                          self.params.get("device", "?"), self.params.get("precision", "?"))  # fmt: skip

    def int(self, key: str) -> int:
        return int(self.params[key])

    @property
    def lookahead(self) -> int:
        return self.int("lookahead")

    @property
    def backward_chunk(self) -> int:
        return self.int("backward_chunk")

    @property
    def radius(self) -> int:
        return self.int("radius")


CLIENT_TLS: ClientTLS | None = None  # set once per process by configure_client_tls (esan-rt stream --tls-ca)


def configure_client_tls(tls: ClientTLS | None) -> None:
    """Connect every later client with TLS (``None``: plain gRPC)."""
    global CLIENT_TLS
    CLIENT_TLS = tls


def connect(address: str, timeout_s: float = 5.0) -> tuple[Any, ModelParams]:
    """A client for ``address`` and its model's parameters; one ``ServerError`` line naming the address if not."""
    grpcclient = tritonclient_grpc()
    from tritonclient.utils import InferenceServerException

    check_address(address)
    client = grpcclient.InferenceServerClient(address, **(CLIENT_TLS.client_kwargs() if CLIENT_TLS else {}))
    try:
        live = client.is_server_live(client_timeout=timeout_s)
        if not live:
            raise ServerError(f"Triton server at {address} is not live; is esan-rt serve still starting?")
        if not client.is_model_ready(P.MODEL_NAME, client_timeout=timeout_s):
            raise ServerError(f"Triton server at {address} has no ready model '{P.MODEL_NAME}'; "
                              "serve one with esan-rt serve")
        config = client.get_model_config(P.MODEL_NAME, as_json=True, client_timeout=timeout_s)["config"]
    except InferenceServerException as exc:
        client.close()
        detail = (exc.message() or str(exc)).splitlines()[0][:160]
        raise ServerError(f"no Triton server answering at {address} ({detail}); start one with "
                          f"esan-rt serve --grpc-port {address.rpartition(':')[2]}") from None
    except BaseException:
        client.close()
        raise
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    return client, ModelParams(address, params)


class RemoteStream:
    """One stream on a server: ``push``, ``finish``, ``delay_frames`` (as ``StreamProcessor``)."""

    def __init__(self, address: str, *, timeout_s: float = 60.0, connect_timeout_s: float = 5.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.client, self.model = connect(address, connect_timeout_s)
        self.sequence_id = random.getrandbits(63) or 1
        self._grpc = tritonclient_grpc()
        self._responses: queue.Queue = queue.Queue()
        self.client.start_stream(callback=lambda result=None, error=None: self._responses.put((result, error)))
        self._sent = 0  # frames the server accepted
        self._pending: dict[int, tuple[Any, tuple[int, int]]] = {}  # index -> (payload, source hw)
        self._open = False
        self.maps_received = 0
        self.last_round_trip_ms = 0.0
        self.last_server_ms: dict[str, float] = {}

    @property
    def delay_frames(self) -> int:
        return delay_frames(self.model.lookahead, self.model.radius, self.model.backward_chunk)

    def _request(self, frame: np.ndarray, *, end: bool, start: bool | None = None) -> list[StreamResult]:
        g = self._grpc
        batch = np.ascontiguousarray(frame[None])
        inp = g.InferInput(P.FRAME, list(batch.shape), "UINT8")
        inp.set_data_from_numpy(batch)
        outputs = [g.InferRequestedOutput(name) for name in P.OUTPUTS]
        start = not self._open if start is None else start
        t0 = time.perf_counter()
        try:
            self.client.async_stream_infer(P.MODEL_NAME, [inp], outputs=outputs, sequence_id=self.sequence_id,
                                           sequence_start=start, sequence_end=end)
            result, error = self._responses.get(timeout=self.timeout_s)
        except queue.Empty:
            raise ServerLost(self._lost(f"no answer within {self.timeout_s:g} s")) from None
        except Exception as exc:  # the gRPC stream is broken
            raise ServerLost(self._lost(str(exc).splitlines()[0][:160])) from None
        self.last_round_trip_ms = (time.perf_counter() - t0) * 1e3
        if error is not None:
            self._raise(error, start)
        self._open = not end
        return self._results(result)

    def _lost(self, why: str) -> str:
        return (f"server {self.address} went away mid-stream ({why}); {self.maps_received} maps received before "
                f"that, the {len(self._pending)} frames still on the server are lost")

    def _raise(self, error: Any, start: bool) -> None:
        msg = (error.message() if hasattr(error, "message") else str(error)) or str(error)
        if P.REFUSED in msg:
            raise StreamRefused(f"server {self.address} refused the stream: {msg.split(P.REFUSED, 1)[1].strip()}")
        if P.BAD_FRAME in msg:
            raise FrameRejected(f"server {self.address} rejected a frame: {msg.split(P.BAD_FRAME, 1)[1].strip()}")
        if P.UNKNOWN_STREAM in msg:
            raise ServerError(f"server {self.address} lost this stream: {msg.split(P.UNKNOWN_STREAM, 1)[1].strip()}")
        status = error.status() if hasattr(error, "status") else None
        if (status and "UNAVAILABLE" in str(status)) or "unavailable" in msg.lower() or "Socket closed" in msg:
            raise ServerLost(self._lost(msg.splitlines()[0][:160]))
        raise ServerError(f"server {self.address}: {msg.splitlines()[0][:300]}")

    def _results(self, result: Any) -> list[StreamResult]:
        maps = result.as_numpy(P.MAPS)[0]
        indices = result.as_numpy(P.INDICES)[0]
        boxes = result.as_numpy(P.BOXES)[0]
        stage_ms = result.as_numpy(P.STAGE_MS)[0]
        self.last_server_ms = {k: float(v) for k, v in zip(P.STAGES, stage_ms, strict=True)}
        timings = dict(self.last_server_ms, round_trip=self.last_round_trip_ms)
        out = []
        for k, index in enumerate(indices.tolist()):
            payload, hw = self._pending.pop(index, (None, (0, 0)))
            out.append(StreamResult(index, np.array(maps[k]), Box(*map(int, boxes[k])), dict(timings), payload, hw))
        self.maps_received += len(out)
        return out

    def push(self, frame: np.ndarray, payload: Any = None) -> list[StreamResult]:
        """Send RGB ``uint8 [h, w, 3]`` ``frame``; returns the maps that became ready (0 or 1 once warmed up).

        The frame goes as it is: the caller checks it (``RemoteScheduler.push``), the server checks it again.
        """
        index = self._sent
        self._pending[index] = (payload, (int(frame.shape[0]), int(frame.shape[1])))
        try:
            results = self._request(frame, end=False)
        except FrameRejected:
            self._pending.pop(index, None)
            raise
        except StreamRefused:
            self._pending.pop(index, None)
            self._release()
            raise
        self._sent += 1
        return results

    def finish(self) -> list[StreamResult]:
        """End of stream: the server flushes the remaining maps; the stream then closes."""
        if not self._open:
            return []
        results = self._request(np.zeros((0, 0, 3), np.uint8), end=True)
        self._sent = 0
        return results

    def _release(self) -> None:
        """END a sequence the model refused, so Triton frees its slot now rather than at the idle timeout."""
        try:
            self._request(np.zeros((0, 0, 3), np.uint8), end=True, start=False)
        except UserError:
            pass  # the model does not know the refused stream: that error is expected
        finally:
            self._open = False
            self.close()

    def close(self) -> None:
        """Stop the gRPC stream (an open sequence is freed by the server's idle timeout)."""
        try:
            self.client.stop_stream()
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a broken channel must not hide the real error
            pass
