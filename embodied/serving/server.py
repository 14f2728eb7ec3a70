"""`embodied serve`: a trained policy behind the protocols robot clients already speak.

- ``ws://HOST:PORT/`` — openpi's websocket protocol, for the unmodified ``openpi-client`` package: on connect one
  binary msgpack frame with the server's metadata; then each binary msgpack frame is one observation and is
  answered by ``{"actions": (n_action_steps, action_dim) float32, "server_timing": {...}}``; a refused request is
  answered by a text frame (the client raises it) and the session goes on. A session is one episode: policies that
  see several steps get its history.
- ``POST /act`` — OpenVLA's REST protocol (its ``vla-scripts/deploy.py``): a json-numpy body ``{image, instruction,
  unnorm_key?}`` (plus any other observation key the policy reads), answered by the json-numpy action: (action_dim,)
  for one-step policies, the whole (n_action_steps, action_dim) chunk otherwise. Unlike OpenVLA's server, errors are
  real HTTP statuses with a JSON ``{"error": ...}`` (400 malformed, 401 API key, 413 too large, 422 not actionable,
  503 busy), never "error" with 200.
- ``GET /healthz`` and ``GET /metadata`` (features, key map, action space, statistics keys, policy, checkpoint hash).

Requests from all clients are batched into one policy call (:mod:`embodied.serving.batcher`). With ``api_key`` set
(or ``$EMBODIED_API_KEY``), every request but ``/healthz`` needs the header ``Authorization: Api-Key <key>``
(openpi-client's ``api_key=``).

This module is FastAPI's: no ``from __future__ import annotations`` (FastAPI reads the handlers' annotations).
"""

import asyncio
import hmac
import time

from embodied.serving.batcher import PolicyBatcher
from embodied.serving.codec import DecodeError, json_dumps, json_loads, packb, unpackb
from embodied.serving.observations import ObservationSpec, RequestError


class PolicyService:
    """The policy, its observation spec, the batcher and the metadata, shared by every endpoint."""

    def __init__(self, policy, config, checkpoint_hash: str = ""):
        self.policy, self.config = policy, config
        self.spec = ObservationSpec(policy, config.key_map, config.resize_images)
        self.batcher = PolicyBatcher(policy, config.max_batch, config.batch_wait_ms, config.max_sessions)
        self.max_bytes = int(config.max_request_mb * 2**20)
        self.api_key = config.api_key or None
        stats = policy.dataset_stats
        self.metadata = {
            "server": "embodied", "policy": policy.config.name, "checkpoint": str(config.checkpoint),
            "checkpoint_sha256": checkpoint_hash, "n_obs_steps": policy.config.n_obs_steps,
            "n_action_steps": policy.config.n_action_steps, "action_dim": policy.action_dim,
            "action": {k: _plain(v) for k, v in stats.get("action", {}).items() if k in ("min", "max", "mean", "std")},
            "observations": self.spec.describe(), "statistics": sorted(stats),
            "unnorm_keys": sorted(stats.get("datasets", {})) if hasattr(policy.config, "unnorm_key") else [],
            "max_request_bytes": self.max_bytes, "max_batch": self.batcher.max_batch,
        }  # fmt: skip

    def authorized(self, headers) -> bool:
        """Whether the request carries the API key (always, without one)."""
        if self.api_key is None:
            return True
        given = headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Api-Key {self.api_key}".encode())

    async def act(self, stream: int, obs: dict, first: bool, unnorm_key=None):
        """The action chunk of one checked observation (awaits the batcher)."""
        return await asyncio.wrap_future(self.batcher.submit(stream, obs, first, unnorm_key))

    def unnorm_key(self, payload: dict):
        """The request's ``unnorm_key`` (removed from the payload), checked against the policy."""
        key = payload.pop("unnorm_key", None)
        if key is None:
            return None
        if not isinstance(key, str):
            raise RequestError(f"unnorm_key must be a string, got {type(key).__name__}")
        if key not in self.metadata["unnorm_keys"]:
            raise RequestError(f"unnorm_key={key!r}: this policy has {self.metadata['unnorm_keys'] or 'none'}")
        return key


def _plain(value):
    """JSON- and msgpack-ready numbers and lists."""
    import numpy as np

    return np.asarray(value).tolist()


def make_app(service: PolicyService):
    """The FastAPI app of one service."""
    from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
    from fastapi.responses import JSONResponse, Response

    app = FastAPI(title="embodied policy server", docs_url=None, redoc_url=None)

    def refused(error: Exception, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=getattr(error, "status", status))

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "policy": service.metadata["policy"]}

    @app.get("/metadata")
    async def metadata(request: Request):
        if not service.authorized(request.headers):
            return refused(RequestError("missing or wrong API key (header Authorization: Api-Key <key>)", 401))
        return {**service.metadata, "calls": service.batcher.calls, "answered": service.batcher.answered}

    @app.post("/act")
    async def act(request: Request):
        if not service.authorized(request.headers):
            return refused(RequestError("missing or wrong API key (header Authorization: Api-Key <key>)", 401))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > service.max_bytes:
            return refused(RequestError(f"body of {declared} bytes is over the limit of {service.max_bytes}", 413))
        body = await request.body()
        try:
            if len(body) > service.max_bytes:
                raise RequestError(f"body of {len(body)} bytes is over the limit of {service.max_bytes}", 413)
            payload, encoded = json_loads(body)
            if not isinstance(payload, dict):
                raise RequestError(f"the body must be a JSON object, got {type(payload).__name__}")
            unnorm_key = service.unnorm_key(payload)
            obs = service.spec.parse(payload)
            stream = service.batcher.open_stream()
            try:
                chunk, _ = await service.act(stream, obs, True, unnorm_key)
            finally:
                service.batcher.close_stream(stream)
        except (RequestError, DecodeError) as error:
            return refused(error)
        action = chunk[0] if service.policy.config.n_action_steps == 1 else chunk
        text = json_dumps(action)
        if encoded:  # answered as OpenVLA answers double-encoded requests: a JSON string of json-numpy text
            import json

            text = json.dumps(text)
        return Response(text, media_type="application/json")

    @app.websocket("/")
    async def session(websocket: WebSocket):
        if not service.authorized(websocket.headers):
            await websocket.close(code=1008, reason="missing or wrong API key")
            return
        try:
            stream = service.batcher.open_stream()
        except RequestError:
            await websocket.close(code=1013, reason="the server is at max_sessions")  # refused at the handshake
            return
        await websocket.accept()
        first = True
        try:
            await websocket.send_bytes(packb(service.metadata))
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                started = time.perf_counter()
                try:
                    data = message.get("bytes")
                    if data is None:
                        raise RequestError("send observations as binary msgpack frames (openpi-client's format)")
                    obs = service.spec.parse(unpackb(data, service.max_bytes))
                    chunk, timing = await service.act(stream, obs, first)
                    first = False
                except (RequestError, DecodeError) as error:
                    await websocket.send_text(f"embodied serve refused the request: {error}")
                    continue
                total = time.perf_counter() - started
                reply = {"actions": chunk, "server_timing": {
                    "infer_ms": 1000 * timing["infer_s"], "queue_ms": 1000 * timing["queue_s"],
                    "total_ms": 1000 * total, "batch": timing["batch"]}}  # fmt: skip
                await websocket.send_bytes(packb(reply))
        except WebSocketDisconnect:
            pass
        finally:
            service.batcher.close_stream(stream)

    return app


def serve(config) -> None:
    """Loads the checkpoint and serves it until interrupted (uvicorn; Ctrl-C or SIGTERM stop it cleanly)."""
    import hashlib
    import os
    from pathlib import Path

    import uvicorn

    from embodied.policies import load_policy
    from embodied.runtime import resolve_device

    if not config.api_key and os.environ.get("EMBODIED_API_KEY"):
        config.api_key = os.environ["EMBODIED_API_KEY"]
    policy = load_policy(config.checkpoint, device=resolve_device(config.device))
    manifest = Path(config.checkpoint) / "checksums.json"
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else ""
    service = PolicyService(policy, config, digest)
    print(f"serving {policy.config.name} from {config.checkpoint}: openpi websocket ws://{config.host}:{config.port}/, "
          f"OpenVLA REST http://{config.host}:{config.port}/act, /metadata, /healthz", flush=True)  # fmt: skip
    try:
        uvicorn.run(make_app(service), host=config.host, port=config.port, log_level="warning",
                    ws_max_size=service.max_bytes + 1024, ws_ping_interval=20.0, ws_ping_timeout=20.0)  # fmt: skip
    finally:
        service.batcher.close()
