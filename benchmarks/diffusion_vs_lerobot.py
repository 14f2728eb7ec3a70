"""Our Diffusion Policy vs LeRobot's (0.4.4), same config, same machine, one run: train-step throughput and
DDIM inference latency.

    python benchmarks/diffusion_vs_lerobot.py [--lerobot-python PATH] [--sizes small paper] [--batch-size 8]

Both policies are built at identical sizes: one 84 px camera (random 76 px crops in training, the centre crop at
inference), 9-D proprio, 7-D actions, n_obs_steps 2, horizon 16, ResNet-18 with GroupNorm and 32 spatial-softmax
keypoints, FiLM U-Net with the given ``down_dims``, 100 DDPM training steps, DDIM with 10 steps at inference.
Each side runs in its own interpreter (LeRobot lives in a separate virtualenv: ``../shared/tools/
lerobot-reference-venv.sh`` builds one) on the same random batches, one side at a time. A train step is
forward + loss + backward + optimiser step as each project's training loop does it (LeRobot: Adam with its
gradient clipping at norm 10; ours: fused AdamW, as configs/policy/diffusion.yaml). Inference is one action
chunk from one observation (batch 1) and for 8 observations at once (8 vector envs). Skips LeRobot with a
message when its interpreter cannot import it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZES = {"small": [64, 128, 256], "paper": [512, 1024, 2048]}
IMAGE, CROP, PROPRIO, ACTION, N_OBS, HORIZON, N_ACTION = 84, 76, 9, 7, 2, 16, 8


def timed(fn, warmup: int, repeats: int) -> float:
    """Median seconds per call after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_batch(torch, batch: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randint(0, 256, (batch, N_OBS, IMAGE, IMAGE, 3), dtype=torch.uint8, generator=g),
        "proprio": torch.rand(batch, N_OBS, PROPRIO, generator=g) * 2 - 1,
        "action": torch.rand(batch, HORIZON, ACTION, generator=g) * 2 - 1,
    }


def run_ours(down_dims: list[int], batch: int, steps: int, chunks: int) -> dict:
    import torch

    from embodied.features import Feature
    from embodied.policies import make_policy
    from embodied.training.optim import OptimConfig, make_optimizer

    features = {
        "images/agentview": Feature("images/agentview", (IMAGE, IMAGE, 3), "uint8", "image"),
        "proprio": Feature("proprio", (PROPRIO,), "float32", "proprio"),
        "action": Feature("action", (ACTION,), "float32", "action"),
    }
    unit = {"mean": [0.0] * 9, "std": [1.0] * 9, "min": [-1.0] * 9, "max": [1.0] * 9}
    stats = {"proprio": unit, "action": {k: v[:ACTION] for k, v in unit.items()}}
    torch.manual_seed(0)
    policy = make_policy(
        {"name": "diffusion", "down_dims": down_dims, "num_inference_steps": 10},
        features,
        stats,
    )
    optimizer = make_optimizer(policy, OptimConfig(lr=1e-4, betas=[0.95, 0.999], weight_decay=1e-6))
    data = random_batch(torch, batch)
    train_batch = {
        "images/agentview": data["image"],
        "proprio": data["proprio"],
        "action": data["action"],
        "action_is_pad": torch.zeros(batch, HORIZON, dtype=torch.bool),
    }

    def train_step():
        policy.train()
        loss, _ = policy.compute_loss(train_batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    result = {"params": sum(p.numel() for p in policy.parameters()), "train_s": timed(train_step, 2, steps)}
    policy.eval()
    for n in (1, 8):
        obs = {
            "images/agentview": data["image"][:1].expand(n, -1, -1, -1, -1),
            "proprio": data["proprio"][:1].expand(n, -1, -1),
        }
        result[f"infer{n}_s"] = timed(lambda obs=obs: policy.predict_action(obs), 2, chunks)
    return result


def run_lerobot(down_dims: list[int], batch: int, steps: int, chunks: int) -> dict:
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    config = DiffusionConfig(
        n_obs_steps=N_OBS,
        horizon=HORIZON,
        n_action_steps=N_ACTION,
        crop_shape=(CROP, CROP),
        pretrained_backbone_weights=None,
        down_dims=tuple(down_dims),
        noise_scheduler_type="DDIM",
        num_inference_steps=10,
        input_features={
            "observation.image": PolicyFeature(type=FeatureType.VISUAL, shape=(3, IMAGE, IMAGE)),
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(PROPRIO,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION,))},
        device="cpu",
    )
    torch.manual_seed(0)
    policy = DiffusionPolicy(config)
    optimizer = config.get_optimizer_preset().build(policy.get_optim_params())
    data = random_batch(torch, batch)
    # LeRobot's processors hand the model normalised float images (B, T, 3, H, W); done once, outside the timing
    image = data["image"].permute(0, 1, 4, 2, 3).float() / 255
    train_batch = {
        "observation.image": image,
        "observation.state": data["proprio"],
        "action": data["action"],
        "action_is_pad": torch.zeros(batch, HORIZON, dtype=torch.bool),
    }

    def train_step():
        policy.train()
        loss, _ = policy.forward(train_batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)  # lerobot_train.update_policy
        optimizer.step()

    result = {"params": sum(p.numel() for p in policy.parameters()), "train_s": timed(train_step, 2, steps)}
    policy.eval()
    for n in (1, 8):
        obs = {
            "observation.images": image[:1].expand(n, -1, -1, -1, -1).unsqueeze(2),
            "observation.state": data["proprio"][:1].expand(n, -1, -1),
        }
        with torch.no_grad():
            result[f"infer{n}_s"] = timed(lambda obs=obs: policy.diffusion.generate_actions(obs), 2, chunks)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lerobot-python", default=os.environ.get("LEROBOT_PYTHON", "/tmp/lerobot-ref/bin/python"))
    parser.add_argument("--sizes", nargs="+", default=["small", "paper"], choices=sorted(SIZES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed train steps (after 2 warm-up steps)")
    parser.add_argument("--chunks", type=int, default=10, help="timed inference chunks per batch size")
    parser.add_argument("--side", choices=["ours", "lerobot"], help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side:  # a child process: one side, one size; JSON on the last line
        runner = run_ours if args.side == "ours" else run_lerobot
        print(json.dumps(runner(SIZES[args.size], args.batch_size, args.steps, args.chunks)))
        return

    lerobot_ok = Path(args.lerobot_python).exists() and (
        subprocess.run([args.lerobot_python, "-c", "import lerobot.policies.diffusion"], capture_output=True).returncode
        == 0
    )
    if not lerobot_ok:
        print(
            f"LeRobot is not importable with {args.lerobot_python}: timing ours only. Build its virtualenv with "
            "../shared/tools/lerobot-reference-venv.sh and pass --lerobot-python DIR/bin/python."
        )
    rows = []
    for size in args.sizes:
        results = {}
        for side, python in (("ours", sys.executable), ("lerobot", args.lerobot_python)):
            if side == "lerobot" and not lerobot_ok:
                continue
            command = [python, __file__, "--side", side, "--size", size, "--batch-size", str(args.batch_size)]
            command += ["--steps", str(args.steps), "--chunks", str(args.chunks)]
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            out = subprocess.run(command, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise SystemExit(f"{side} ({size}) failed:\n{out.stderr[-3000:]}")
            results[side] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{size} {side}: {results[side]}", flush=True)
        rows.append((size, results))

    print(
        f"\nDiffusion Policy, ours vs LeRobot 0.4.4, CPU ({os.cpu_count()} cores), batch {args.batch_size} for "
        f"training, DDIM 10 steps for inference; median of {args.steps} train steps / {args.chunks} chunks"
    )
    print(
        "| down_dims | params ours / lerobot | train step ours | lerobot | train speed-up | chunk (1 obs) ours "
        "| lerobot | speed-up | chunk (8 obs) ours | lerobot | speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size, r in rows:
        ours, ref = r["ours"], r.get("lerobot")

        def cell(key, ours=ours, ref=ref):
            if ref is None:
                return f"{ours[key] * 1000:.0f} ms | - | -"
            return f"{ours[key] * 1000:.0f} ms | {ref[key] * 1000:.0f} ms | {ref[key] / ours[key]:.2f}x"

        params = f"{ours['params'] / 1e6:.1f}M / {ref['params'] / 1e6:.1f}M" if ref else f"{ours['params'] / 1e6:.1f}M"
        dims = "-".join(map(str, SIZES[size]))
        print(f"| {dims} | {params} | {cell('train_s')} | {cell('infer1_s')} | {cell('infer8_s')} |")


if __name__ == "__main__":
    main()
