"""The robot side: one action per control step from a server that answers with action chunks.

``embodied serve`` returns a whole chunk per request. :class:`ChunkedClient` turns any ``infer(obs) -> {"actions":
(n, action_dim)}`` function (openpi-client's ``WebsocketClientPolicy(...).infer``, :func:`rest_infer` for the REST
endpoint, or your own) into ``act(obs) -> action``: it asks the server only when its queue of actions is empty, or,
with ``temporal_ensemble=m``, at every step, executing ACT's weighted average of every chunk's prediction for the
current step. It is the same :class:`~embodied.policies.runner.PolicyRunner` evaluation uses, around the server::

    from openpi_client.websocket_client_policy import WebsocketClientPolicy
    from embodied.serving.client import ChunkedClient

    client = ChunkedClient(WebsocketClientPolicy("127.0.0.1", 8000).infer)
    action = client.act({"observation/image": frame, "observation/state": proprio, "prompt": "lift the red cube"})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class _RemoteConfig:
    name: str = "remote"
    n_obs_steps: int = 1  # the server keeps the history


class RemotePolicy:
    """The part of the Policy interface :class:`PolicyRunner` uses, answered by a server."""

    optional_obs_keys: tuple[str, ...] = ()

    def __init__(self, infer: Callable[[dict], Mapping], keys: list[str]):
        self.infer, self.obs_keys = infer, list(keys)
        self.config = _RemoteConfig()
        self.action_dim = 0

    def reset(self) -> None:
        """Nothing kept here between calls (the server's session holds the history)."""

    def predict_action(self, batch: Mapping[str, Any]):
        import torch

        chunks = []
        for i in range(len(batch[self.obs_keys[0]])):
            obs = {}
            for key in self.obs_keys:
                if isinstance(batch[key], list):  # the runner passes the instruction as one string per row
                    obs[key] = str(batch[key][i])
                    continue
                value = batch[key][i, -1]
                obs[key] = str(value) if isinstance(value, (str, np.str_)) else value
            reply = self.infer(obs)
            if not isinstance(reply, Mapping) or "actions" not in reply:
                raise ValueError(f"the server's reply has no 'actions': {reply!r:.200}")
            actions = np.asarray(reply["actions"], dtype=np.float32)
            chunks.append(actions.reshape(-1, actions.shape[-1]))
        self.action_dim = chunks[0].shape[-1]
        return torch.from_numpy(np.stack(chunks))


class ChunkedClient:
    """``act(obs)`` one action per step from a chunk-answering server (see the module docstring)."""

    def __init__(self, infer: Callable[[dict], Mapping], temporal_ensemble: float | None = None):
        self.infer, self.temporal_ensemble = infer, temporal_ensemble
        self._runner = None

    def reset(self) -> None:
        """A new episode: queued actions are dropped (start a new server session too for multi-step policies)."""
        self._runner = None

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """The action for this step, (action_dim,)."""
        from embodied.policies.runner import PolicyRunner

        obs = dict(obs)
        if self._runner is None:
            self._runner = PolicyRunner(RemotePolicy(self.infer, sorted(obs)), temporal_ensemble=self.temporal_ensemble)
            self._runner.reset(0, obs)
        else:
            self._runner.observe(0, obs)
        return self._runner.act([0])[0]


def rest_infer(url: str, api_key: str | None = None, timeout: float = 30.0) -> Callable[[dict], dict]:
    """An ``infer`` for ``POST /act`` (json-numpy), for :class:`ChunkedClient`; HTTP errors raise with the
    server's message."""
    import json
    import urllib.error
    import urllib.request

    from embodied.serving.codec import json_dumps

    def infer(obs: dict) -> dict:
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Api-Key {api_key}"} if api_key else {})
        request = urllib.request.Request(url, json_dumps(obs).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                import json_numpy

                actions = json.loads(response.read(), object_hook=json_numpy.object_hook)
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{url}: HTTP {error.code}: {error.read().decode(errors='replace')}") from None
        return {"actions": np.atleast_2d(actions)}

    return infer
