"""Self-supervised pretraining on franka data, then `bench encoders`: our tov_vicreg / mae / time_contrastive
encoders against the same architecture randomly initialised (and the CPU baselines cnn and resnet18), all frozen.

    python benchmarks/pretrain_encoders.py --store PATH [--pretrain-steps 300] [--bc-steps 1000] [--episodes 20]

Prints pretraining throughput per objective and the bench table (probe R^2 to object position and gripper
opening on held-out episodes, BC success on unseen scenes with cached features).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SMALL_VIT = {
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "image_size": 84,
    "patch_size": 12,
}
# ViTMAE's default decoder (8 layers, 512 wide) is built for ViT-L; a light one suits a small encoder
SMALL_MAE = {
    **SMALL_VIT,
    "decoder_hidden_size": 128,
    "decoder_num_hidden_layers": 2,
    "decoder_num_attention_heads": 4,
    "decoder_intermediate_size": 256,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bc-steps", type=int, default=1000)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--out", default="outputs/benchmarks/pretrain_encoders")
    args = parser.parse_args()

    from embodied.envs.franka.config import FrankaConfig
    from embodied.jobs.bench_encoders import BenchEncodersConfig
    from embodied.jobs.bench_encoders import run as bench_encoders
    from embodied.pretrain.fit import PretrainConfig, pretrain

    out = Path(args.out)
    throughput, pretrained = [], []
    for objective, name in (("tov_vicreg", "vit"), ("mae", "mae"), ("time_contrastive", "vit")):
        path = out / objective
        pretrained.append({"name": name, "pretrained": str(path), "label": f"{name} + {objective}"})
        if (path / "embodied_pretrain.json").exists():  # finished by an earlier run: reuse it
            info = json.loads((path / "embodied_pretrain.json").read_text())
            seconds = info.get("seconds", float("nan"))
            rate = args.pretrain_steps * args.batch_size / seconds
            throughput.append((objective, seconds, rate, info["final_metrics"]["loss"]))
            continue
        job = PretrainConfig(
            policy={"encoder": {"name": name, "model": SMALL_MAE if name == "mae" else SMALL_VIT}},
            objective=objective,
            dataset=args.store,
            steps=args.pretrain_steps,
            batch_size=args.batch_size,
            out=str(out / objective),
            progress=False,
        )
        job.optim.lr = 3e-4
        start = time.perf_counter()
        path = pretrain(job, out / f"run_{objective}")
        seconds = time.perf_counter() - start
        final = json.loads((path / "embodied_pretrain.json").read_text())["final_metrics"]
        throughput.append((objective, seconds, args.pretrain_steps * args.batch_size / seconds, final["loss"]))
        print(f"{objective}: {seconds:.0f} s, final loss {final['loss']:.4f}", flush=True)

    encoders = [
        {"name": "cnn", "label": "cnn (random)"},
        {"name": "resnet18", "label": "resnet18 (random)"},
        {"name": "vit", "model": SMALL_VIT, "label": "vit (random)"},
        *pretrained,
    ]
    job = BenchEncodersConfig(
        env=FrankaConfig(task="lift"),
        dataset=args.store,
        encoders=encoders,
        bc_steps=args.bc_steps,
        eval_episodes=args.episodes,
        progress=False,
    )
    summary = bench_encoders(job, out / "bench")

    print(f"\nPretraining ({args.pretrain_steps} steps x batch {args.batch_size}, small ViT {SMALL_VIT}):")
    print("| objective | time | samples/s | final loss |\n|---|---|---|---|")
    for objective, seconds, rate, loss in throughput:
        print(f"| {objective} | {seconds:.0f} s | {rate:.0f} | {loss:.4f} |")
    print(
        f"\nbench encoders ({summary['train_episodes']} train / {summary['test_episodes']} held-out episodes, "
        f"BC {args.bc_steps} steps on cached features, {args.episodes} eval episodes):"
    )
    print((out / "bench" / "table.md").read_text())


if __name__ == "__main__":
    main()
