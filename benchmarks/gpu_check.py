"""The GPU path, checked in one short run: what `benchmarks/gpu_check.sh` runs on a CUDA machine (under 8 minutes).

    python benchmarks/gpu_check.py --work /tmp/gpu_check [--out DIR] [--store PATH] [--smoke]

Prints one table (and ``DIR/gpu_check.json``):
- the machine: torch, CUDA device, bitsandbytes, the MuJoCo GL backend and the GL renderer it reached;
- train steps/s, samples/s and peak GPU memory through the real Trainer (bf16 autocast, pinned memory,
  non-blocking copies) for bc, diffusion (the paper-size preset) and openvla (the default preset: fused
  DINOv2+SigLIP built from config, tiny Llama) at their GPU batch sizes;
- evaluation env steps/s with EGL rendering (8 env workers, the bc checkpoint driving);
- VLA decode latency, sequential and parallel (benchmarks/vla_decoding.py on the device), and the LM loaded
  8-bit and 4-bit through bitsandbytes;
- a DDP smoke run (bc) and an FSDP smoke run (the VLA) through torchrun on one GPU (NCCL);
- bc again with ``compile=true`` (torch.compile of the loss; its wall time includes compiling).

Every section runs even if an earlier one failed; a failure prints its error in the table. ``--smoke``: tiny sizes
for a CPU machine, to check the script itself (benchmarks/gpu_rehearse.sh runs it so in a virtualenv holding only
what the GPU image holds, plus what gpu_prepare.sh carries).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
TINY_VLA = ["policy.encoder.channels=[8,8,8]", "policy.encoder.strides=[2,2,2]", "policy.encoder.dim=16",
            "+policy.lm.model.hidden_size=64", "+policy.lm.model.intermediate_size=128",
            "+policy.lm.model.num_hidden_layers=2", "+policy.lm.model.num_attention_heads=2",
            "+policy.lm.model.num_key_value_heads=2"]  # fmt: skip


def section(rows: list, name: str, fn) -> None:
    """Runs one check; its rows (or its error) go into the table."""
    started = time.perf_counter()
    print(f"\n== {name}", flush=True)
    try:
        for label, value in fn():
            rows.append((name, label, value))
            print(f"   {label}: {value}", flush=True)
    except Exception as error:  # a failed section is a finding, not the end of the check
        traceback.print_exc()
        rows.append((name, "error", f"{type(error).__name__}: {str(error)[:300]}"))
    rows.append((name, "seconds", f"{time.perf_counter() - started:.0f}"))


def figure(value: float) -> str:
    """A rate for the table: whole numbers from 100 on, three significant digits below."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def machine():
    import torch

    yield "torch", torch.__version__
    yield "cuda", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    try:
        import bitsandbytes

        yield "bitsandbytes", bitsandbytes.__version__
    except ImportError as error:
        yield "bitsandbytes", f"not importable ({error})"
    from embodied.envs.gl import choose_gl_backend

    yield "MUJOCO_GL", choose_gl_backend()
    probe = ("import mujoco; c = mujoco.GLContext(64, 64); c.make_current(); from OpenGL import GL; "
             "print(GL.glGetString(GL.GL_VENDOR).decode(), '/', GL.glGetString(GL.GL_RENDERER).decode())")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    failure = (result.stderr.strip().splitlines() or ["no output"])[-1]
    yield "GL renderer", result.stdout.strip() or f"probe failed: {failure}"


def collect_store(work: Path, smoke: bool, given: str | None):
    from embodied.cli import main

    store = work / "lift.zarr"
    if given:  # collected elsewhere (benchmarks/gpu_prepare.sh: robosuite's wheel is too large to carry)
        import shutil

        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(given, store)
        yield "store", f"{given} (carried)"
        return
    size = 32 if smoke else 84
    episodes = 4 if smoke else 24
    code = main(["collect", "env=franka", "env.task=lift", f"env.image_size={size}", f"episodes={episodes}",
                 f"out={store}", f"num_workers={2 if smoke else 8}", f"run_dir={work / 'collect'}"])  # fmt: skip
    assert code == 0, f"collect exited {code}"
    yield "store", f"{episodes} lift episodes at {size} px"


def train_rate(work: Path, name: str, args: list[str], steps: int):
    import torch

    from embodied.cli import main

    run_dir = work / f"train_{name}"
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    code = main(["train", "env=franka", "env.task=lift", f"dataset={work / 'lift.zarr'}", *args, f"steps={steps}",
                 f"log_every={max(1, steps // 2)}", f"checkpoint_every={steps}", "progress=false",
                 f"run_dir={run_dir}"])  # fmt: skip
    assert code == 0, f"train exited {code}"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if r["split"] == "train"][-1]  # the second window: warm-up excluded
    batch = next(a.split("=")[1] for a in args if a.startswith("batch_size="))
    yield "batch", batch
    yield "samples/s", figure(last["samples_per_s"])
    yield "steps/s", figure(last["samples_per_s"] / int(batch))
    yield "wall s (incl. build, warm-up)", f"{time.perf_counter() - started:.0f}"
    if torch.cuda.is_available():
        yield "peak GPU memory", f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"


def egl_render_rate():
    """Without robosuite: MuJoCo alone renders a small scene at 84 px through the GL backend chosen above."""
    import mujoco

    xml = """<mujoco><worldbody><light pos="0 0 3"/><geom type="plane" size="2 2 .1"/>
      <body pos="0 0 .5"><freejoint/><geom type="box" size=".05 .05 .05" rgba="1 0 0 1"/></body>
      <camera name="cam" pos="0 -1 1" xyaxes="1 0 0 0 .7 .7"/></worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, 84, 84)
    for _ in range(20):
        mujoco.mj_step(model, data)
        renderer.update_scene(data, "cam")
        renderer.render()
    started, frames = time.perf_counter(), 500
    for _ in range(frames):
        mujoco.mj_step(model, data)
        renderer.update_scene(data, "cam")
        renderer.render()
    yield "robosuite", "not importable: the franka eval row needs it carried (see gpu_prepare.sh)"
    yield "MuJoCo 84 px frames/s (step + render)", f"{frames / (time.perf_counter() - started):.0f}"


def eval_rate(work: Path, smoke: bool):
    import importlib.util

    from embodied.cli import main

    if importlib.util.find_spec("robosuite") is None:  # not carried: MuJoCo's own frame rate instead
        yield from egl_render_rate()
        return

    episodes, envs = (2, 2) if smoke else (16, 8)
    out = work / "eval_bc"
    code = main(["eval", f"checkpoint={work / 'train_bc' / 'checkpoints' / 'last'}", f"episodes={episodes}",
                 f"num_envs={envs}", "videos=0", "progress=false", f"run_dir={out}"])  # fmt: skip
    assert code == 0, f"eval exited {code}"
    result = json.loads((out / "results.json").read_text())
    steps = sum(r["length"] for r in result["per_episode"])
    yield "episodes x env workers", f"{episodes} x {envs}"
    yield "env steps/s (policy included)", f"{steps / result['seconds']:.0f}"
    yield "success", f"{result['successes']}/{result['episodes']}"


def decode(work: Path, smoke: bool):
    sizes = ["tiny"] if smoke else ["tiny", "0.5b"]
    command = [sys.executable, str(HERE / "vla_decoding.py"), "--store", str(work / "lift.zarr"), "--sizes", *sizes,
               "--batches", "1", "8", "--calls", "3" if smoke else "10"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    size = table = None
    for line in result.stdout.splitlines():
        if line.startswith("torch"):
            yield "vla_decoding", line
        elif ": LM " in line:  # "<size>: LM ...M parameters", before each size's two tables
            size = line.split(":")[0]
        elif line.startswith("| batch |"):
            table = "ours vs generate" if "generate" in line else "sequential vs parallel, per action"
        elif line.startswith("| 1 |") or line.startswith("| 8 |"):
            yield f"{size}: {table}", line


def quantized(work: Path, smoke: bool):
    """The VLA's LM saved as a transformers directory, reloaded 8-bit and 4-bit: latency of predict_action and the
    LM's weight memory (bitsandbytes' CUDA kernels on a GPU, its CPU backend elsewhere)."""
    import torch

    sys.path.insert(0, str(HERE))
    import vla_decoding

    from embodied.datasets.store import EpisodeStore
    from embodied.policies.openvla.language_model import base_model

    vla_decoding.DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    store = EpisodeStore(work / "lift.zarr")
    size = "tiny" if smoke else "0.5b"
    base = vla_decoding.build(store, size, {})
    directory = work / f"lm_{size}"
    base.lm.save_pretrained(directory)
    base.tokenizer.save_pretrained(directory)
    obs = vla_decoding.observations(base, store, 1)
    latency = vla_decoding.timed(lambda base=base: base.predict_action(obs), 5)
    footprint = base_model(base.lm).get_memory_footprint() / 2**20
    yield f"{size} full precision predict_action", f"{latency * 1e3:.1f} ms, LM weights {footprint:.0f} MiB"
    del base
    for bits in ("8bit", "4bit"):
        lm = {**vla_decoding.SIZES[size], "pretrained": str(directory), "quantization": bits, "train": "frozen"}
        policy = vla_decoding.build(store, size, {"lm": lm})
        latency = vla_decoding.timed(lambda policy=policy: policy.predict_action(obs), 5)
        footprint = base_model(policy.lm).get_memory_footprint() / 2**20
        yield f"{size} {bits} predict_action", f"{latency * 1e3:.1f} ms, LM weights {footprint:.0f} MiB"
        del policy


def torchrun_smoke(work: Path, smoke: bool, small: list[str], steps: int):
    steps = min(steps, 20)
    common = ["env=franka", "env.task=lift", f"dataset={work / 'lift.zarr'}", f"steps={steps}", "progress=false",
              f"checkpoint_every={steps}", f"log_every={steps}", *small]  # fmt: skip
    runs = {
        "ddp bc": ["policy=bc", "batch_size=64", "distributed.strategy=ddp"],
        "fsdp openvla": ["policy=openvla_small", *(TINY_VLA if smoke else []), "batch_size=16", "ema.enabled=false",
                         "distributed.strategy=fsdp"],
    }  # fmt: skip
    for name, args in runs.items():
        run_dir = work / f"torchrun_{name.replace(' ', '_')}"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m",
                   "embodied.cli", "train", *common, *args, f"run_dir={run_dir}"]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{name}: {result.stdout[-1500:]}{result.stderr[-1500:]}"
        record = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
        yield name, f"loss {record['loss']:.4f}, {record['samples_per_s']:.0f} samples/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/embodied_gpu_check")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="where gpu_check.json goes")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script on a CPU")
    parser.add_argument("--store", help="a lift store collected elsewhere (default: collect one here)")
    parser.add_argument("--steps", type=int, help="train steps per policy (default 40, or 4 with --smoke); a CPU "
                        "rehearsal of the GPU sizes passes 2")  # fmt: skip
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    smoke = args.smoke
    steps = args.steps or (4 if smoke else 40)
    small = ["env.image_size=32"] if smoke and not args.store else []  # a carried store keeps its own size
    policies = {
        "bc": ["policy=bc", "batch_size=64"],
        "diffusion": (["policy=diffusion_small", "batch_size=8"] if smoke else ["policy=diffusion", "batch_size=64"]),
        "openvla": (["policy=openvla_small", *TINY_VLA, "batch_size=8"] if smoke
                    else ["policy=openvla", "batch_size=16"]),
    }  # fmt: skip
    rows: list = []
    started = time.perf_counter()
    out = Path(args.out) if args.out else None

    def run(name: str, fn) -> None:  # rows are saved after every section: a run cut short keeps what it measured
        section(rows, name, fn)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "gpu_check.json").write_text(json.dumps(rows, indent=1))

    run("machine", machine)
    run("collect", lambda: collect_store(work, smoke, args.store))
    for name, extra in policies.items():
        run(f"train {name}", lambda name=name, extra=extra: train_rate(work, name, extra + small, steps))
    run("eval (EGL)", lambda: eval_rate(work, smoke))
    run("VLA decoding", lambda: decode(work, smoke))
    run("VLA bitsandbytes", lambda: quantized(work, smoke))
    run("torchrun on one device", lambda: torchrun_smoke(work, smoke, small, steps))
    # last, as the one most likely to run long (the first steps compile): bc again, the loss through torch.compile
    run("train bc, compile=true", lambda: train_rate(work, "bc_compile", policies["bc"] + small + ["compile=true"],
                                                     steps))  # fmt: skip
    print("\n| check | figure | value |\n|---|---|---|")
    for name, label, value in rows:
        print(f"| {name} | {label} | {value} |")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
