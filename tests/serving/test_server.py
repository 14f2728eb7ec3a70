"""`embodied serve` as a real process on loopback, driven by real clients: the unmodified openpi-client package, an
OpenVLA deploy-script style client (requests + json_numpy), raw websockets for malformed traffic."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from embodied.policies import load_policy
from embodied.policies.bc import BCConfig
from embodied.serving import codec
from embodied.training.fit_policy import TrainConfig, train

API_KEY = "s3cret"


@pytest.fixture(scope="module")
def checkpoint(image_store, tmp_path_factory):
    run = tmp_path_factory.mktemp("serve_bc")
    return train(TrainConfig(policy=BCConfig.tiny(), dataset=str(image_store), steps=3, batch_size=8, run_dir=str(run),
                             progress=False), run)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers: dict | None = None):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(checkpoint):
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "embodied.cli", "serve", f"checkpoint={checkpoint}",
                                f"port={port}", "max_request_mb=1", f"api_key={API_KEY}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            _get(f"http://127.0.0.1:{port}/healthz")
            break
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"embodied serve did not start: {process.stdout.read()}")
            time.sleep(0.2)
    yield port, process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, process.stdout.read()


def _observation(rng, size=32):
    return {"observation/image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "observation/state": rng.normal(size=9).astype(np.float32), "prompt": "lift the red cube"}  # fmt: skip


def _expected(policy, obs):
    return policy.predict_action({"images/agentview": obs["observation/image"][None],
                                  "proprio": obs["observation/state"][None]})[0].numpy()  # fmt: skip


def test_the_real_openpi_client_gets_the_policys_actions(server, checkpoint):
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    from embodied.serving.client import ChunkedClient

    port, _ = server
    policy = load_policy(checkpoint)
    client = WebsocketClientPolicy("127.0.0.1", port, api_key=API_KEY)
    metadata = client.get_server_metadata()
    assert metadata["policy"] == "bc" and metadata["action_dim"] == 7 and metadata["n_action_steps"] == 8
    assert len(metadata["checkpoint_sha256"]) == 64
    rng = np.random.default_rng(0)
    for _ in range(3):
        obs = _observation(rng)
        reply = client.infer(obs)
        assert reply["actions"].shape == (8, 7) and reply["actions"].dtype == np.float32
        np.testing.assert_allclose(reply["actions"], _expected(policy, obs), atol=1e-6)
        assert reply["server_timing"]["infer_ms"] > 0
    obs = _observation(rng, size=64)  # another camera size: resized to the policy's 32 px
    assert client.infer(obs)["actions"].shape == (8, 7)
    with pytest.raises(RuntimeError, match="missing observation keys \\['proprio'\\]"):
        client.infer({"observation/image": obs["observation/image"]})
    assert client.infer(_observation(rng))["actions"].shape == (8, 7)  # the session survives a refused request

    # chunks are queued on the robot side: one server call per 8 steps; temporal ensembling asks every step
    headers = {"Authorization": f"Api-Key {API_KEY}"}
    before = _get(f"http://127.0.0.1:{port}/metadata", headers)["answered"]
    chunked = ChunkedClient(client.infer)
    first = _observation(rng)
    actions = [chunked.act(first if t == 0 else _observation(rng)) for t in range(8)]
    np.testing.assert_allclose(np.stack(actions), _expected(policy, first), atol=1e-6)
    assert _get(f"http://127.0.0.1:{port}/metadata", headers)["answered"] == before + 1
    own_keys = ChunkedClient(client.infer)  # the policy's own key names, instruction included (as embodied ros sends)
    own = {"images/agentview": first["observation/image"], "proprio": first["observation/state"],
           "language_instruction": "lift the red cube"}  # fmt: skip
    np.testing.assert_allclose(own_keys.act(own), _expected(policy, first)[0], atol=1e-6)
    ensembled = ChunkedClient(client.infer, temporal_ensemble=0.01)
    for _ in range(3):
        ensembled.act(_observation(rng))
    assert _get(f"http://127.0.0.1:{port}/metadata", headers)["answered"] == before + 5


OPENVLA_CLIENT = """
import sys, json, numpy as np, requests, json_numpy
json_numpy.patch()  # as in OpenVLA's vla-scripts/deploy.py client example
rng = np.random.default_rng(0)
image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
proprio = rng.normal(size=9).astype(np.float32)
url, key = sys.argv[1], sys.argv[2]
headers = {"Authorization": "Api-Key " + key}
action = requests.post(url, json={"image": image, "instruction": "lift the red cube", "proprio": proprio},
                       headers=headers).json()
encoded = requests.post(url, json={"encoded": json.dumps({"image": image, "instruction": "lift", "proprio": proprio})},
                        headers=headers).json()
missing = requests.post(url, json={"image": image, "instruction": "lift"}, headers=headers)
unauthorised = requests.post(url, json={"image": image, "instruction": "lift", "proprio": proprio})
np.save(sys.argv[3], np.stack([action, json_numpy.loads(encoded)]))
print(json.dumps({"missing": [missing.status_code, missing.json()], "unauthorised": unauthorised.status_code}))
"""


def test_an_openvla_style_rest_client_gets_the_same_actions_and_real_status_codes(server, checkpoint, tmp_path):
    port, _ = server
    out = tmp_path / "actions.npy"
    done = subprocess.run([sys.executable, "-c", OPENVLA_CLIENT, f"http://127.0.0.1:{port}/act", API_KEY, str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    statuses = json.loads(done.stdout)
    assert statuses["missing"][0] == 400 and "proprio" in statuses["missing"][1]["error"]
    assert statuses["unauthorised"] == 401
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    proprio = rng.normal(size=9).astype(np.float32)
    from PIL import Image

    small = np.array(Image.fromarray(image).resize((32, 32), Image.BILINEAR))
    expected = load_policy(checkpoint).predict_action({"images/agentview": small[None], "proprio": proprio[None]})
    actions = np.load(out)
    np.testing.assert_allclose(actions[0], expected[0].numpy(), atol=1e-6)  # the whole 8-step chunk
    np.testing.assert_allclose(actions[1], actions[0], atol=1e-6)


def _malformed(rng) -> list:
    """Many kinds of bad websocket messages (bytes) and text frames (str)."""
    good = codec.packb(_observation(rng))
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    state = np.zeros(9, np.float32)
    bad_arrays = [
        {b"__ndarray__": True, b"data": b"\x00" * 5, b"dtype": "<f4", b"shape": [9]},  # wrong length
        {b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "|O", b"shape": [1]},  # object dtype
        {b"__ndarray__": True, b"data": b"", b"dtype": "<f4", b"shape": [2**40, 2**40]},  # absurd shape
        {b"__ndarray__": True, b"data": b"\x00" * 36, b"dtype": 7, b"shape": [9]},  # dtype not a string
        {b"__ndarray__": True, b"data": "text", b"dtype": "<f4", b"shape": [1]},  # data not bytes
        {b"__npgeneric__": True, b"data": "x", b"dtype": "<f4"},
        {b"__ndarray__": True, b"data": b"\x00" * 36, b"dtype": "V4", b"shape": [9]},
    ]
    import msgpack

    messages: list = []
    for _ in range(60):
        cut = int(rng.integers(1, len(good) - 1))
        messages += [
            good[:cut],  # truncated
            good + b"\x00",  # trailing bytes
            bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8)),  # noise
            msgpack.packb([1, 2, 3]),
            msgpack.packb(42),
            msgpack.packb("observation"),
            msgpack.packb(None),
            msgpack.packb({b"observation/image": 1}),  # bytes key
            codec.packb({"observation/image": image}),  # missing state
            codec.packb({"observation/image": image, "observation/state": state, "bogus": 1}),
            codec.packb({"observation/image": image.astype(np.float32), "observation/state": state}),
            codec.packb({"observation/image": image[..., :2], "observation/state": state}),
            codec.packb({"observation/image": image, "observation/state": np.full(9, np.nan, np.float32)}),
            codec.packb({"observation/image": image, "observation/state": np.full(9, np.inf, np.float32)}),
            codec.packb({"observation/image": image, "observation/state": np.zeros(4, np.float32)}),
            codec.packb({"observation/image": image, "observation/state": state, "prompt": 5}),
            codec.packb({"observation/image": image, "observation/state": state, "prompt": "x" * 300}),
            codec.packb({"observation/image": "not an image", "observation/state": state}),
            "a text frame instead of msgpack",
        ]
        messages += [codec.packb({"observation/image": bad, "observation/state": state}) for bad in bad_arrays]
    return messages


def test_malformed_traffic_never_kills_the_server(server, checkpoint):
    from websockets.sync.client import connect

    port, process = server
    rng = np.random.default_rng(1)
    messages = _malformed(rng)
    assert len(messages) >= 1000
    headers = {"Authorization": f"Api-Key {API_KEY}"}
    with connect(f"ws://127.0.0.1:{port}", additional_headers=headers, max_size=None) as ws:
        ws.recv()  # metadata
        for message in messages:
            ws.send(message)
            reply = ws.recv(timeout=30)
            assert isinstance(reply, str) and "refused" in reply, reply  # each one answered by a text frame
        obs = _observation(rng)
        ws.send(codec.packb(obs))
        reply = codec.unpackb(ws.recv(timeout=30))
        np.testing.assert_allclose(reply["actions"], _expected(load_policy(checkpoint), obs), atol=1e-6)
    # a frame over max_request_mb closes that connection (1009) and nothing else
    with connect(f"ws://127.0.0.1:{port}", additional_headers=headers, max_size=None) as ws:
        ws.recv()
        ws.send(b"\x00" * (2 * 2**20))
        from websockets.exceptions import ConnectionClosed

        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    # a wrong API key is refused at the handshake
    with pytest.raises(Exception, match="403"):
        connect(f"ws://127.0.0.1:{port}", additional_headers={"Authorization": "Api-Key wrong"})
    # REST: malformed bodies get 4xx with a message
    codes = []
    for body in [b"{", b"[1, 2]", b'{"image": 3}', b'{"image": {"__numpy__": "!!", "dtype": "<u1", "shape": [2]}}',
                 b'{"unnorm_key": 5}', b"\xff\xfe", b'"text"', b'{"proprio": [' + b"9" * 400 + b"]}",
                 b'{"proprio": ["1.5", "2"]}', b"x" * (2 * 2**20)]:  # fmt: skip
        request = urllib.request.Request(f"http://127.0.0.1:{port}/act", body, headers)
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=30)
        codes.append(error.value.code)
        assert "error" in json.loads(error.value.read())
    assert set(codes) <= {400, 413} and codes[-1] == 413
    assert process.poll() is None
    assert _get(f"http://127.0.0.1:{port}/healthz")["status"] == "ok"
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    assert WebsocketClientPolicy("127.0.0.1", port, api_key=API_KEY).infer(obs)["actions"].shape == (8, 7)


def test_concurrent_requests_are_batched_into_one_call_and_sessions_keep_history(image_store, tmp_path):
    from embodied.serving.batcher import PolicyBatcher, StreamsExhausted

    run = tmp_path / "bc2"
    policy_config = BCConfig.tiny()
    policy_config.n_obs_steps, policy_config.n_action_steps = 2, 4
    policy = load_policy(train(TrainConfig(policy=policy_config, dataset=str(image_store), steps=2, batch_size=8,
                                           run_dir=str(run), progress=False), run))  # fmt: skip
    batcher = PolicyBatcher(policy, max_batch=4, batch_wait_ms=60_000, max_sessions=4)
    try:
        streams = [batcher.open_stream() for _ in range(4)]
        with pytest.raises(StreamsExhausted):
            batcher.open_stream()
        rng = np.random.default_rng(2)
        obs = [{"images/agentview": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
                "proprio": rng.normal(size=9).astype(np.float32)} for _ in range(8)]  # fmt: skip
        # four sessions' first steps: answered together by one call (the batch is full, so nobody waits a minute)
        futures = [batcher.submit(s, obs[i], first=True) for i, s in enumerate(streams)]
        results = [f.result(timeout=60) for f in futures]
        assert batcher.calls == 1 and all(timing["batch"] == 4 for _, timing in results)
        for i, (chunk, _) in enumerate(results):  # a session's first step fills its history, as in training
            stacked = {k: np.stack([obs[i][k], obs[i][k]])[None] for k in obs[i]}
            expected = policy.predict_action(stacked)[0].numpy()
            np.testing.assert_allclose(chunk, expected, rtol=1e-5, atol=1e-5)  # batched: float sums in another order
        futures = [batcher.submit(s, obs[4 + i], first=False) for i, s in enumerate(streams)]
        for i, future in enumerate(futures):  # the second step sees the first and the second observation
            chunk, _ = future.result(timeout=60)
            stacked = {k: np.stack([obs[i][k], obs[4 + i][k]])[None] for k in obs[i]}
            expected = policy.predict_action(stacked)[0].numpy()
            np.testing.assert_allclose(chunk, expected, rtol=1e-5, atol=1e-5)  # batched: float sums in another order
        assert batcher.calls == 2
    finally:
        batcher.close()
