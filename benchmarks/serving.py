"""Policy serving on loopback: round-trip latency per transport and throughput under concurrent clients, ours vs a
minimal server of the same transport (the overhead our validation, batching and protocol handling add).

    python benchmarks/serving.py [--work outputs/benchmarks/serving] [--requests 200] [--clients 1 4 16]

Setup (skipped when present): two lift episodes with a 224x224 camera, and two BC checkpoints trained on them for a
few steps (timing does not depend on the weights): ``tiny`` (BCConfig.tiny(): a 2-layer CNN, one 32-wide layer) and
``bc`` (policy=bc's defaults). Each request is one 224x224 image + proprio + instruction -> an 8-step action chunk.

- websocket: the unmodified openpi-client against `embodied serve` and against a minimal websockets + msgpack server
  that calls ``predict_action`` directly (no checks, no batching);
- REST: OpenVLA-style ``POST /act`` with json-numpy bodies (requests) against `embodied serve` and a minimal FastAPI
  endpoint doing the same;
- ROS topic (when rospy and rosmaster are installed): a ``sensor_msgs/Image`` published by this process, received by
  a node running the bridge's core (:class:`BridgeCore`: decode, watchdog, policy, safety) on each image, answered
  by a ``geometry_msgs/Twist``; the bridge itself publishes at its control rate instead, so this is the cost one
  observation adds on top of the control period. The core executes chunks: 7 of 8 images are answered from the
  queue (the median), the 8th by a policy call (the p99 and most of the mean);
- throughput: requests/s of N concurrent openpi clients, `embodied serve` with batching (max_batch 16, 2 ms) and
  without (max_batch 1).
Prints markdown tables and writes ``<work>/serving.json``.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

MINIMAL_WS = """
import asyncio, sys, numpy as np, websockets
from openpi_client import msgpack_numpy
from embodied.policies import load_policy
policy = load_policy(sys.argv[1])
async def handler(ws):
    await ws.send(msgpack_numpy.packb({}))
    async for message in ws:
        obs = msgpack_numpy.unpackb(message)
        chunk = policy.predict_action({"images/agentview": obs["observation/image"][None],
                                       "proprio": obs["observation/state"][None]})[0].numpy()
        await ws.send(msgpack_numpy.packb({"actions": chunk}))
async def main():
    async with websockets.serve(handler, "127.0.0.1", int(sys.argv[2]), max_size=None, compression=None):
        print("ready", flush=True)
        await asyncio.Future()
asyncio.run(main())
"""

MINIMAL_REST = """
import sys, json, json_numpy, numpy as np, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from embodied.policies import load_policy
policy = load_policy(sys.argv[1])
app = FastAPI()
@app.get("/healthz")
def healthz():
    return {"ok": True}
@app.post("/act")
async def act(request: Request):
    payload = json.loads(await request.body(), object_hook=json_numpy.object_hook)
    chunk = policy.predict_action({"images/agentview": payload["image"][None], "proprio": payload["proprio"][None]})
    return Response(json_numpy.dumps(chunk[0].numpy()), media_type="application/json")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


ROS_ECHO = """
import sys, time, numpy as np, rospy
from geometry_msgs.msg import Twist
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray
from embodied.serving.bridge import BridgeConfig, BridgeCore, image_from_message
core = BridgeCore(BridgeConfig(checkpoint=sys.argv[1], stale_after_s=60.0))
rospy.init_node("embodied_bench_echo")
out = rospy.Publisher("/bench/twist", Twist, queue_size=10)
def on_image(msg):
    core.set_image("images/agentview", image_from_message(msg))
    twist = Twist()
    core.next_twist(twist, print)
    out.publish(twist)
rospy.Subscriber("/bench/state", Float32MultiArray, lambda m: core.set_state(m.data), queue_size=1)
rospy.Subscriber("/bench/image", Image, on_image, queue_size=10)
print("ready", flush=True)
rospy.spin()
"""


def ros_latency(checkpoints: dict[str, Path], n: int) -> dict[str, dict]:
    """Round trips image -> BridgeCore -> Twist over a real rosmaster, per checkpoint; empty without ROS."""
    import os
    import shutil

    try:
        import rospy
        from geometry_msgs.msg import Twist
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float32MultiArray
    except ImportError:
        return {}
    if shutil.which("rosmaster") is None:
        return {}
    port = free_port()
    os.environ.update(ROS_MASTER_URI=f"http://127.0.0.1:{port}", ROS_IP="127.0.0.1")
    master = start(["rosmaster", "--core", "-p", str(port)], port)
    results = {}
    try:
        rospy.init_node("embodied_bench", anonymous=True, disable_signals=True)
        replies = []
        arrived = threading.Event()
        rospy.Subscriber("/bench/twist", Twist, lambda m: (replies.append(time.perf_counter()), arrived.set()))
        images = rospy.Publisher("/bench/image", Image, queue_size=10)
        state = rospy.Publisher("/bench/state", Float32MultiArray, queue_size=1, latch=True)
        state.publish(Float32MultiArray(data=[0.0] * 9))
        frame = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8).tobytes()
        for name, checkpoint in checkpoints.items():
            echo = subprocess.Popen([sys.executable, "-c", ROS_ECHO, str(checkpoint)], stdout=subprocess.PIPE,
                                    text=True)  # fmt: skip
            try:
                assert echo.stdout.readline().strip() == "ready"
                while images.get_num_connections() == 0:
                    time.sleep(0.05)
                times = []
                for i in range(n + 10):
                    arrived.clear()
                    sent = time.perf_counter()
                    images.publish(Image(height=224, width=224, encoding="rgb8", step=672, data=frame))
                    if arrived.wait(timeout=10) and i >= 10:  # the first images may come before the state
                        times.append(replies[-1] - sent)
                ms = 1000 * np.asarray(times)
                results[name] = {"median_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
                                 "mean_ms": float(ms.mean())}  # fmt: skip
            finally:
                echo.terminate()
                echo.wait(timeout=30)
            while images.get_num_connections() > 0:  # the next echo node starts on a quiet topic
                time.sleep(0.05)
    finally:
        master.terminate()
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(work: Path) -> dict[str, Path]:
    from embodied.envs.franka.config import FrankaConfig
    from embodied.evaluation.collection import CollectConfig, collect
    from embodied.policies.bc import BCConfig
    from embodied.training.fit_policy import TrainConfig, train

    store = collect(CollectConfig(env=FrankaConfig(image_size=224), episodes=2, out=str(work / "lift224.zarr")), work)
    checkpoints = {}
    for name, policy in (("tiny", BCConfig.tiny()), ("bc", BCConfig())):
        run = work / name
        last = run / "checkpoints" / "last"
        checkpoints[name] = (
            last
            if last.exists()
            else train(
                TrainConfig(policy=policy, dataset=str(store), steps=2, batch_size=4, run_dir=str(run), progress=False),
                run,
            )
        )
    return checkpoints


def start(command: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                time.sleep(0.5)  # the app finishes starting after the socket opens
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command} did not start")


def ours(checkpoint: Path, port: int, max_batch: int = 16) -> subprocess.Popen:
    return start([sys.executable, "-m", "embodied.cli", "serve", f"checkpoint={checkpoint}", f"port={port}",
                  f"max_batch={max_batch}"], port)  # fmt: skip


def observation(rng) -> dict:
    return {"observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
            "observation/state": rng.normal(size=9).astype(np.float32), "prompt": "lift the red cube"}  # fmt: skip


def latencies(call, n: int) -> dict:
    rng = np.random.default_rng(0)
    obs = [observation(rng) for _ in range(8)]
    for i in range(10):  # warm-up
        call(obs[i % 8])
    times = []
    for i in range(n):
        t = time.perf_counter()
        call(obs[i % 8])
        times.append(time.perf_counter() - t)
    ms = 1000 * np.asarray(times)
    return {"median_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def ws_call(port: int):
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    client = WebsocketClientPolicy("127.0.0.1", port)
    return client.infer


def rest_call(port: int):
    import json_numpy
    import requests

    session = requests.Session()

    def call(obs):
        body = json_numpy.dumps({"image": obs["observation/image"], "proprio": obs["observation/state"],
                                 "instruction": obs["prompt"]})  # fmt: skip
        response = session.post(f"http://127.0.0.1:{port}/act", data=body,
                                headers={"Content-Type": "application/json"})  # fmt: skip
        response.raise_for_status()
        return json.loads(response.text, object_hook=json_numpy.object_hook)

    return call


def throughput(port: int, clients: int, seconds: float = 5.0) -> float:
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    connections = [WebsocketClientPolicy("127.0.0.1", port) for _ in range(clients)]
    calls = [c.infer for c in connections]
    rng = np.random.default_rng(1)
    obs = observation(rng)
    for call in calls:  # warm-up
        for _ in range(3):
            call(obs)
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def worker(i):
        while time.perf_counter() < stop:
            calls[i](obs)
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in connections:  # an idle open session would make batches wait for it
        c._ws.close()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="outputs/benchmarks/serving")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    checkpoints = setup(work)
    rows, loads = [], []
    for name, checkpoint in checkpoints.items():
        minimal = {"websocket": MINIMAL_WS, "REST": MINIMAL_REST}
        for transport, call in (("websocket", ws_call), ("REST", rest_call)):
            for which in ("embodied serve", "minimal"):
                if which == "minimal":

                    def server(p, c=checkpoint, script=minimal[transport]):
                        return start([sys.executable, "-c", script, str(c), str(p)], p)
                else:

                    def server(p, c=checkpoint):
                        return ours(c, p)

                port = free_port()
                process = server(port)
                try:
                    rows.append({"policy": name, "transport": transport, "server": which,
                             **latencies(call(port), args.requests)})  # fmt: skip
                finally:
                    process.terminate()
                    process.wait(timeout=30)
                print(rows[-1], flush=True)
    for name, ros in ros_latency(checkpoints, args.requests).items():
        rows.append({"policy": name, "transport": "ROS topic", "server": "embodied ros core", **ros})
        print(rows[-1], flush=True)
    for max_batch in (16, 1):
        port = free_port()
        process = ours(checkpoints["tiny"], port, max_batch)
        try:
            for clients in args.clients:
                loads.append({"policy": "tiny", "max_batch": max_batch, "clients": clients,
                              "requests_per_s": throughput(port, clients)})  # fmt: skip
                print(loads[-1], flush=True)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metadata") as response:
                meta = json.loads(response.read())
            loads[-1]["mean_batch"] = meta["answered"] / max(meta["calls"], 1)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print("\n| policy | transport | server | median ms | p99 ms | mean ms | ours / minimal (median) |")
    print("|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows):
        minimal = r["server"] == "embodied serve" and i + 1 < len(rows) and rows[i + 1]["server"] == "minimal"
        ratio = f"{r['median_ms'] / rows[i + 1]['median_ms']:.2f}" if minimal else ""
        print(
            f"| {r['policy']} | {r['transport']} | {r['server']} | {r['median_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['mean_ms']:.2f} | {ratio} |"
        )
    print("\n| clients | requests/s, batching (max_batch 16) | requests/s, max_batch 1 | ratio |\n|---|---|---|---|")
    for clients in args.clients:
        batched = next(r for r in loads if r["clients"] == clients and r["max_batch"] == 16)["requests_per_s"]
        single = next(r for r in loads if r["clients"] == clients and r["max_batch"] == 1)["requests_per_s"]
        print(f"| {clients} | {batched:.0f} | {single:.0f} | {batched / single:.2f} |")
    (work / "serving.json").write_text(json.dumps({"latency": rows, "throughput": loads}, indent=1))


if __name__ == "__main__":
    main()
