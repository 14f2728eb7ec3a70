"""Lang4Sim2Real's claim in miniature: BC in a visually shifted target domain (env=franka_shifted) from many source
demos (env=franka) and few target demos, with encoders pretrained by language across the two domains vs baselines.

    python benchmarks/lang4sim2real.py [--work outputs/benchmarks/lang4sim2real] [--source-demos 200]
        [--target-demos 10 25 100] [--domain warm] [--image-size 64] [--pretrain-steps 1000] [--steps 1000]
        [--eval-episodes 40] [--encoders lang_reg lang_dist stage_classify mmd random scratch_mixed scratch_target]
        [--extras lang_reg+film dp:lang_reg dp:random] [--extras-at 25]

Stages (each skipped when its output exists):

1. lift demos in both domains, captioned by the expert; the instructions carry a domain prefix ("source domain: ",
   "target domain: ");
2. encoders (a small ViT, or ``--encoder resnet18``) pretrained with each objective on the source store plus the
   smallest target store: ``lang_reg``, ``lang_dist``, ``stage_classify`` and the ``mmd`` domain-alignment baseline
   (stage classification + MMD between the domains' features);
3. cross-domain probes of every frozen encoder: ridge regressions fitted on source frames, scored on target frames
   (object position R^2, stage accuracy): does the encoder put both domains' frames in the same place?
4. BC (the encoder frozen except its last block, as in the paper) on source + N target demos for each N, evaluated on
   ``--eval-episodes`` unseen target-domain scenes (95% Wilson intervals). Baselines: ``random`` (the same
   frozen-but-last-block encoder, random init: no hub here, so no CLIP/R3M weights), ``scratch_mixed`` (BC's own
   small CNN trained from scratch on source + target) and ``scratch_target`` (the same on the target demos alone).
   ``--extras`` at ``--extras-at`` target demos only: ``ENCODER+film`` (BC FiLM-conditioned on the domain-prefixed
   instruction) and ``dp:ENCODER`` (Diffusion Policy instead of BC).

Prints markdown tables and writes ``<work>/lang4sim2real.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

OBJECTIVES = ("lang_reg", "lang_dist", "stage_classify", "mmd")
SOURCE_PREFIX, TARGET_PREFIX = "source domain: ", "target domain: "  # the paper's domain prefix of the instruction
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

    # the domain prefixes are what FiLM-on-instruction policies read (every other policy ignores the instruction)
    source_env = FrankaConfig(image_size=args.image_size, instruction_prefix=SOURCE_PREFIX)
    source = collect(CollectConfig(env=source_env, episodes=args.source_demos, out=str(work / "source.zarr")), work)
    target_env = ShiftedFrankaConfig(image_size=args.image_size, domain=args.domain, instruction_prefix=TARGET_PREFIX)
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


def cross_domain_probes(name: str, encoder_cfg: dict, source: Path, target: Path, work: Path) -> dict:
    """Ridge probes fitted on every source frame, scored on every target frame: object position R^2 and stage
    accuracy (stage: the expert's caption), for one frozen encoder."""
    import numpy as np

    from embodied.datasets.store import EpisodeStore
    from embodied.encoders import make_encoder
    from embodied.encoders.cache import compute_features, load_features
    from embodied.evaluation.probes import ridge_probe
    from embodied.features import CAPTION

    path = work / "probes" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    encoder = make_encoder({**encoder_cfg, "train": "frozen"})
    data = {}
    for side, store_path in (("source", source), ("target", target)):
        store = EpisodeStore(store_path)
        compute_features(store, {"images/agentview": encoder}, progress=False)
        features = np.asarray(load_features(store, {"images/agentview": encoder})["images/agentview"])
        captions = np.asarray(store.vocabulary(CAPTION))[store.read(CAPTION, 0, store.n_steps).astype(int)]
        data[side] = features, store.read("state", 0, store.n_steps)[:, :3], captions
    (xs, ps, cs), (xt, pt, ct) = data["source"], data["target"]
    stages = sorted(set(cs) | set(ct))
    onehot = [np.eye(len(stages))[[stages.index(c) for c in caps]] for caps in (cs, ct)]
    mean, std = xs.mean(0), xs.std(0) + 1e-6
    a = np.concatenate([(xs - mean) / std, np.ones((len(xs), 1))], 1)
    b = np.concatenate([(xt - mean) / std, np.ones((len(xt), 1))], 1)
    weights = np.linalg.solve(a.T @ a + 1e-3 * len(a) * np.eye(a.shape[1]), a.T @ onehot[0])
    record = {"encoder": name, "object_r2_source_to_target": ridge_probe(xs, ps, xt, pt, 1e-3),
              "stage_accuracy_source_to_target": float(((b @ weights).argmax(1) == onehot[1].argmax(1)).mean()),
              "stage_chance": float(np.bincount(onehot[1].argmax(1)).max() / len(ct))}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def policy_config(variant: str, encoders: dict, base: dict):
    """The policy of a row: ``ENCODER`` (BC), ``ENCODER+film`` (BC on the instruction) or ``dp:ENCODER``."""
    from embodied.policies.bc import BCConfig
    from embodied.policies.diffusion import DiffusionConfig

    kind, _, name = variant.rpartition(":")
    name, film = (name[: -len("+film")], True) if name.endswith("+film") else (name, False)
    encoder = encoder_config(name, encoders, base)
    if kind == "dp":  # a small U-Net: CPU-sized (the paper's 256-512-1024 is ~30x the compute)
        config = DiffusionConfig(down_dims=[64, 128, 256], film_instruction=film)
    else:
        config = BCConfig(film_instruction=film)
    if encoder is not None:
        config.encoder = encoder
    return config


def train_and_eval(work: Path, name: str, n: int, datasets: list[str], policy, target_env, args) -> dict:
    from embodied.evaluation.evaluate import eval_env_config, evaluate
    from embodied.policies import load_policy
    from embodied.training.fit_policy import TrainConfig, train

    run = work / "bc" / f"{name.replace(':', '_').replace('+', '_')}_{n}"
    result_path = run / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    started = time.perf_counter()
    checkpoint = train(TrainConfig(env=target_env, policy=policy, dataset=datasets, steps=args.steps, batch_size=64,
                                   run_dir=str(run), resume=(run / "checkpoints" / "last").exists()), run)  # fmt: skip
    minutes = (time.perf_counter() - started) / 60
    model = load_policy(checkpoint)
    result = evaluate(model, eval_env_config(target_env, model), episodes=args.eval_episodes, videos=1,
                      out_dir=run / "eval")  # fmt: skip
    record = {"encoder": name, "target_demos": n, "success_rate": result["success_rate"],
              "success_ci95": result["success_ci95"], "train_minutes": round(minutes, 1)}  # fmt: skip
    result_path.write_text(json.dumps(record, indent=1))
    return record


def cell(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{row['success_rate']:.2f} ({row['success_ci95'][0]:.2f}-{row['success_ci95'][1]:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="outputs/benchmarks/lang4sim2real")
    parser.add_argument("--source-demos", type=int, default=200)
    parser.add_argument("--target-demos", type=int, nargs="+", default=[10, 25, 100])
    parser.add_argument("--domain", default="warm")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--pretrain-steps", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=40)
    parser.add_argument("--encoder", choices=["vit_small", "resnet18"], default="vit_small")
    parser.add_argument("--encoders", nargs="+",
                        default=[*OBJECTIVES, "random", "scratch_mixed", "scratch_target"])  # fmt: skip
    parser.add_argument("--extras", nargs="*", default=["lang_reg+film", "dp:lang_reg", "dp:random"])
    parser.add_argument("--extras-at", type=int, default=25, help="the target-demo count of the --extras rows")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    source, targets, target_env = stores(work, args)
    smallest, largest = targets[min(targets)], targets[max(targets)]
    wanted = {v.rpartition(":")[2].removesuffix("+film") for v in [*args.encoders, *args.extras]}
    encoders = {o: pretrained(work, o, source, smallest, args.pretrain_steps, backbone(args))
                for o in OBJECTIVES if o in wanted}  # fmt: skip
    probes = [cross_domain_probes(name, encoder_config(name, encoders, backbone(args)), source, largest, work)
              for name in [*encoders, "random"] if name in wanted]  # fmt: skip
    for probe in probes:
        print(probe, flush=True)
    runs = [(name, n) for name in args.encoders for n in sorted(targets)]
    runs += [(name, args.extras_at) for name in args.extras]
    rows = []
    for name, n in runs:
        plain = name.rpartition(":")[2].removesuffix("+film")
        datasets = [str(targets[n])] if plain == "scratch_target" else [str(source), str(targets[n])]
        rows.append(train_and_eval(work, name, n, datasets, policy_config(name, encoders, backbone(args)), target_env,
                                   args))  # fmt: skip
        print(rows[-1], flush=True)
    print("\ntarget-domain success (95% CI), BC on source + N target demos:\n")
    print(f"| encoder | {' | '.join(f'{n} target demos' for n in sorted(targets))} |")
    print("|---|" + "---|" * len(targets))
    for name in [*args.encoders, *args.extras]:
        found = {r["target_demos"]: r for r in rows if r["encoder"] == name}
        print(f"| {name} | {' | '.join(cell(found.get(n)) for n in sorted(targets))} |")
    print("\ncross-domain probes (fitted on source frames, scored on target frames):\n")
    print("| encoder | object position R^2 | stage accuracy | (majority stage) |\n|---|---|---|---|")
    for p in probes:
        print(
            f"| {p['encoder']} | {p['object_r2_source_to_target']:.3f} | {p['stage_accuracy_source_to_target']:.3f}"
            f" | {p['stage_chance']:.3f} |"
        )
    (work / "lang4sim2real.json").write_text(json.dumps({"success": rows, "probes": probes}, indent=1))


if __name__ == "__main__":
    main()
