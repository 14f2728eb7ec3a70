"""One thread owns the policy: requests from every client wait in a queue and are answered by batched calls.

A request is one checked observation of a *stream* (a websocket session, or a one-off REST call). The worker takes
the first waiting request, then gathers more for up to ``batch_wait_ms`` (or until ``max_batch``), appends each
observation to its stream's history in the :class:`~embodied.policies.runner.PolicyRunner` (the same runner as
evaluation, so multi-step policies see the history they were trained on) and makes one policy call for the batch;
each request gets its stream's whole action chunk. Requests with different ``unnorm_key`` are answered by separate
calls. If a batched call fails, its requests are retried one by one, so one bad request cannot fail the others.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from embodied.serving.observations import RequestError


@dataclass
class Request:
    stream: int
    obs: dict
    first: bool  # the first observation of its stream (resets the history)
    unnorm_key: str | None = None
    recorded: bool = False  # its observation is in the stream's history (a retry must not add it again)
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.perf_counter)


class StreamsExhausted(RequestError):
    def __init__(self, n: int):
        super().__init__(f"the server is serving its maximum of {n} sessions; try again later (serve max_sessions=)",
                         status=503)  # fmt: skip


class PolicyBatcher:
    """The policy's thread and its request queue (see the module docstring)."""

    def __init__(self, policy, max_batch: int = 16, batch_wait_ms: float = 2.0, max_sessions: int = 64):
        from embodied.policies.runner import PolicyRunner

        self.policy = policy
        self.runner = PolicyRunner(policy, num_streams=max_sessions)
        self.max_batch, self.batch_wait = max(1, int(max_batch)), max(0.0, batch_wait_ms) / 1000
        self._free = list(range(max_sessions - 1, -1, -1))
        self._lock = threading.Lock()
        self._queue: queue.Queue[Request | None] = queue.Queue()
        self.calls = self.answered = 0  # policy calls made, requests answered (for /metadata and benchmarks)
        self._thread = threading.Thread(target=self._work, name="embodied-policy", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ streams
    def open_stream(self) -> int:
        """A free stream for a new session; :class:`StreamsExhausted` when all are taken."""
        with self._lock:
            if not self._free:
                raise StreamsExhausted(self.runner.num_streams)
            return self._free.pop()

    def close_stream(self, stream: int) -> None:
        with self._lock:
            self._free.append(stream)

    @property
    def active_streams(self) -> int:
        """Sessions and REST calls open now (each has at most one request waiting)."""
        return self.runner.num_streams - len(self._free)

    # ------------------------------------------------------------------ requests
    def submit(self, stream: int, obs: dict, first: bool, unnorm_key: str | None = None) -> Future:
        """Queues one observation; the future resolves to the raw action chunk (n_action_steps, action_dim)
        and the seconds it waited and computed."""
        request = Request(stream, obs, first, unnorm_key)
        self._queue.put(request)
        return request.future

    def close(self) -> None:
        """Stops the thread after the queued requests."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _gather(self, first: Request) -> list[Request]:
        batch, deadline = [first], time.perf_counter() + self.batch_wait
        while len(batch) < min(self.max_batch, self.active_streams):  # no one else to wait for: answer now
            left = deadline - time.perf_counter()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
        return batch

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = self._gather(first)
            try:
                groups: dict[str | None, list[Request]] = {}
                for request in batch:
                    groups.setdefault(request.unnorm_key, []).append(request)
                for unnorm_key, requests in groups.items():
                    self._answer(requests, unnorm_key)
            except Exception as error:  # noqa: BLE001 - the thread must outlive any request
                for request in batch:
                    _resolve(request.future, error=RequestError(f"the server failed: {error}", status=500))

    def _answer(self, requests: list[Request], unnorm_key: str | None) -> None:
        started = time.perf_counter()
        try:
            chunks = self._call(requests, unnorm_key)
        except Exception:  # noqa: BLE001 - isolate the request that fails
            if len(requests) > 1:
                for request in requests:
                    self._answer([request], unnorm_key)
                return
            _resolve(requests[0].future, error=_as_request_error(requests[0]))
            return
        seconds = time.perf_counter() - started
        self.answered += len(requests)  # before the replies: a client that reads /metadata next sees its own
        for request, chunk in zip(requests, chunks):
            _resolve(request.future, (chunk, {"queue_s": started - request.queued, "infer_s": seconds,
                                              "batch": len(requests)}))  # fmt: skip

    def _call(self, requests: list[Request], unnorm_key: str | None) -> np.ndarray:
        for request in [r for r in requests if not r.recorded]:
            if request.first:
                self.runner.reset(request.stream, request.obs)
            else:
                self.runner.observe(request.stream, request.obs)
            request.recorded = True
        config = self.policy.config
        previous = getattr(config, "unnorm_key", None)
        if unnorm_key is not None:
            config.unnorm_key = unnorm_key
        try:
            self.calls += 1
            chunks = self.runner.chunks([r.stream for r in requests])
            if len(chunks) != len(requests):
                raise ValueError(f"the policy answered {len(chunks)} of {len(requests)} observations")
            return chunks
        finally:
            if unnorm_key is not None:
                config.unnorm_key = previous


def _resolve(future: Future, result=None, error: Exception | None = None) -> None:
    """Answers a request unless its client gave up on it (a cancelled future must not raise in this thread)."""
    if future.done() or not future.set_running_or_notify_cancel():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _as_request_error(request: Request) -> Exception:
    """The error of a request the policy could not answer, as the client should see it."""
    import sys

    error = sys.exc_info()[1]
    if isinstance(error, RequestError):
        return error
    if isinstance(error, (KeyError, ValueError)):
        return RequestError(f"the policy could not act on this observation: {error}", status=422)
    return RequestError(f"the policy failed: {type(error).__name__}: {error}", status=500)
