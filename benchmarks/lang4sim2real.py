"""Lang4Sim2Real's claim in miniature: BC in a visually shifted target domain (env=franka_shifted) from many source
demos (env=franka) and few target demos, with encoders pretrained by language across the two domains vs baselines.

    python benchmarks/lang4sim2real.py [--work outputs/benchmarks/lang4sim2real] [--source-demos 200]
        [--target-demos 10 25 100] [--domain warm] [--image-size 64] [--pretrain-steps 1000] [--steps 3000]
        [--eval-episodes 30] [--encoders lang_reg lang_dist stage_classify random scratch_mixed scratch_target]

Stages (each skipped when its output exists): lift demos in both domains (captioned by the expert); encoders (a
small ViT, or ``--encoder resnet18``) pretrained with each objective on the source store plus the smallest target
store; BC (the encoder frozen
except its last stage, as in the paper) on source + N target demos for each N, evaluated on ``--eval-episodes``
unseen target-domain scenes (95% Wilson intervals). Baselines: ``random`` (the same frozen-but-last-block encoder,
random init: no hub here, so no CLIP/R3M weights), ``scratch_mixed`` (BC's own small CNN trained from scratch on
source + target) and ``scratch_target`` (the same on the target demos alone). Prints a markdown table and writes
``<work>/lang4sim2real.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

OBJECTIVES = ("lang_reg", "lang_dist", "stage_classify")
# a small ViT (4 layers, 96 wide, 8 px patches): a ResNet-18 through every BC step of a source+target mixture is
# ~10x slower on 2 CPU cores; --encoder resnet18 uses the paper's backbone
SMALL_VIT = {"name": "vit", "model": {"hidden_size": 96, "num_hidden_layers": 4, "num_attention_heads": 4,
                                      "intermediate_size": 192, "patch_size": 8}}  # fmt: skip


def backbone(args) -> dict:
    """The encoder every pretrained and random variant uses, sized to the images."""
    if args.encoder == "resnet18":
        return {"name": "resnet18"}
    return {**SMALL_VIT, "model": {**SMALL_VIT["model"], "image_size": args.image_size}}


def stores(work: Path, args) -> tuple[Path, dict[int, Path], object]:
    from embodied.envs.franka.config import FrankaConfig, ShiftedFrankaConfig
    from embodied.evaluation.collection import CollectConfig, collect

    source = collect(CollectConfig(env=FrankaConfig(image_size=args.image_size), episodes=args.source_demos,
                                   out=str(work / "source.zarr")), work)  # fmt: skip
    target_env = ShiftedFrankaConfig(image_size=args.image_size, domain=args.domain)
    targets = {}
    for n in args.target_demos:  # the same first seeds: the smaller sets are prefixes of the larger
        targets[n] = collect(CollectConfig(env=target_env, episodes=n, out=str(work / f"target_{n}.zarr"),
                                           seed=50_000), work)  # fmt: skip
    return source, targets, target_env


def pretrained(work: Path, objective: str, source: Path, target: Path, steps: int, encoder: dict) -> Path:
    from embodied.pretrain.fit import PretrainConfig, pretrain

    out = work / "encoders" / objective / "encoder"
    if (out / "checksums.json").exists():
        return out
    job = PretrainConfig(policy={"encoder": encoder}, objective=objective,
                         datasets=[str(source), str(target)], steps=steps, batch_size=32,
                         run_dir=str(out.parent), resume=(out.parent / "checkpoints" / "last").exists())  # fmt: skip
    job.optim.lr, job.optim.warmup_steps = 3e-4, 50
    return pretrain(job, out.parent)


def encoder_config(name: str, encoders: dict, base: dict) -> dict | None:
    if name in encoders:  # the pretrained backbone (its architecture comes with it), frozen but its last block
        return {"name": base["name"], "pretrained": str(encoders[name]), "train": "last_n", "last_n": 1}
    if name == "random":
        return {**base, "train": "last_n", "last_n": 1}
    return None  # scratch: BC's default cnn


def train_and_eval(work: Path, name: str, n: int, datasets: list[str], encoder, target_env, args) -> dict:
    from embodied.evaluation.evaluate import eval_env_config, evaluate
    from embodied.policies import load_policy
    from embodied.policies.bc import BCConfig
    from embodied.training.fit_policy import TrainConfig, train

    run = work / "bc" / f"{name}_{n}"
    result_path = run / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    policy = BCConfig() if encoder is None else BCConfig(encoder=encoder)
    started = time.perf_counter()
    checkpoint = train(TrainConfig(env=target_env, policy=policy, dataset=datasets, steps=args.steps, batch_size=64,
                                   run_dir=str(run), resume=(run / "checkpoints" / "last").exists()), run)  # fmt: skip
    minutes = (time.perf_counter() - started) / 60
    model = load_policy(checkpoint)
    result = evaluate(model, eval_env_config(target_env, model), episodes=args.eval_episodes, videos=0,
                      out_dir=run / "eval")  # fmt: skip
    record = {"encoder": name, "target_demos": n, "success_rate": result["success_rate"],
              "success_ci95": result["success_ci95"], "train_minutes": round(minutes, 1)}  # fmt: skip
    result_path.write_text(json.dumps(record, indent=1))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="outputs/benchmarks/lang4sim2real")
    parser.add_argument("--source-demos", type=int, default=200)
    parser.add_argument("--target-demos", type=int, nargs="+", default=[10, 25, 100])
    parser.add_argument("--domain", default="warm")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--pretrain-steps", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval-episodes", type=int, default=30)
    parser.add_argument("--encoder", choices=["vit_small", "resnet18"], default="vit_small")
    parser.add_argument("--encoders", nargs="+",
                        default=[*OBJECTIVES, "random", "scratch_mixed", "scratch_target"])  # fmt: skip
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    source, targets, target_env = stores(work, args)
    smallest = targets[min(targets)]
    encoders = {o: pretrained(work, o, source, smallest, args.pretrain_steps, backbone(args))
                for o in OBJECTIVES if o in args.encoders}  # fmt: skip
    rows = []
    for name in args.encoders:
        for n, target in sorted(targets.items()):
            datasets = [str(target)] if name == "scratch_target" else [str(source), str(target)]
            encoder = encoder_config(name, encoders, backbone(args))
            rows.append(train_and_eval(work, name, n, datasets, encoder, target_env, args))
            print(rows[-1], flush=True)
    print(f"| encoder | {' | '.join(f'{n} target demos' for n in sorted(targets))} |")
    print("|---|" + "---|" * len(targets))
    for name in args.encoders:
        cells = [next(r for r in rows if r["encoder"] == name and r["target_demos"] == n) for n in sorted(targets)]
        text = [f"{c['success_rate']:.2f} ({c['success_ci95'][0]:.2f}-{c['success_ci95'][1]:.2f})" for c in cells]
        print(f"| {name} | {' | '.join(text)} |")
    (work / "lang4sim2real.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
