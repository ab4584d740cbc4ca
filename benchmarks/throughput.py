"""Throughput benchmark: what an RN graph costs against TorchRL's MAPPO, and how it scales with vertices.

1. Training frames/s of RN (2-level tree) and MAPPO on the same task, batch and epochs: one collect + update
   iteration each, alternated A B A B in one process, median over ``reps``, printed as a ratio.
2. Policy-step cost of the composed graph vs vertex count (flat 4/16/64 motors, 2- and 3-level trees over them)
   against a flat ``MultiAgentMLP`` policy over the same agents (MAPPO's actor).
3. The raw VMAS step rate (random actions), the physical limit of collection.
4. Collection and training frames/s with 1 and 2 collector workers (``rn train --workers N``: TorchRL's
   ``MultiSyncCollector``), RN and MAPPO, alternated, median over ``reps``; collection = waiting for a batch,
   training = the whole iteration (batch, update, weights sent to the workers).

Writes ``<out>/throughput.json`` and ``<out>/throughput.png`` (``--out`` defaults to a scratch folder; pass
``--out benchmarks/results`` to update the committed figures). With ``--device cuda``, only part 1 runs, with the
envs and models on the GPU, into ``<out>/training-cuda.json``.

    python benchmarks/throughput.py --out benchmarks/results     # default preset, a few minutes on 2 CPU cores
    python benchmarks/throughput.py --threads 1 --out benchmarks/results/threads1   # per-core cost
    python benchmarks/throughput.py --device cuda --out benchmarks/results           # RN vs MAPPO training on a GPU
    python benchmarks/throughput.py --threads 1 --training-only --fused   # part 1 only, RN also with --fused-loss
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import speed_cli  # this script runs from benchmarks/
import torch
from torchrl.envs import TransformedEnv

from torchrl_rn import GraphComposer, LevelEnv, RNGraph
from torchrl_rn.envs import MockMultiAgentEnv, make_env
from torchrl_rn.train import RNTrainer, TrainConfig


@dataclass(frozen=True)
class Preset:
    task: str = "vmas/balance"
    n_agents: int = 4
    rn_graph: str = "tree:2"
    frames_per_batch: int = 6_000
    max_steps: int = 100
    epochs: int = 10
    minibatch_size: int = 400
    reps: int = 5
    motor_counts: tuple[int, ...] = (4, 16, 64)
    policy_envs: int = 60
    obs_dim: int = 16
    policy_reps: int = 30
    num_cells: int = 256
    vmas_steps: int = 50
    worker_counts: tuple[int, ...] = (1, 2)
    worker_algos: tuple[str, ...] = ("rn", "mappo")


PRESETS = {
    "default": Preset(),
    "tiny": Preset(frames_per_batch=200, max_steps=10, epochs=1, minibatch_size=100, reps=2, motor_counts=(4, 8),
                   policy_envs=4, policy_reps=3, num_cells=16, vmas_steps=3, worker_counts=(1,),
                   worker_algos=("rn",)),  # worker processes cost seconds to start: tests/test_collection covers them
}


def training_rates(p: Preset, device: str = "cpu", *, fused: bool = False) -> dict:
    """Frames/s of one collect + update iteration, RN and MAPPO alternated, envs and models on ``device``; with
    ``fused``, RN with ``--fused-loss`` too (``rn_fused``), in the same rounds."""
    common = dict(task=p.task, n_agents=p.n_agents, frames_per_batch=p.frames_per_batch, max_steps=p.max_steps,
                  epochs=p.epochs, minibatch_size=p.minibatch_size, num_cells=p.num_cells, logger="", device=device)
    runs = {"rn": RNTrainer(TrainConfig(algo="rn", graph=p.rn_graph, **common), progress=False),
            "mappo": RNTrainer(TrainConfig(algo="mappo", **common), progress=False)}
    if fused:
        runs["rn_fused"] = RNTrainer(TrainConfig(algo="rn", graph=p.rn_graph, fused_loss=True, **common),
                                     progress=False)
    iterators = {name: iter(t.make_collector()) for name, t in runs.items()}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for rep in range(p.reps + 1):  # the first round warms up
        for name, trainer in runs.items():
            start = time.perf_counter()
            data = next(iterators[name])
            trainer.update(data)
            if rep:
                rates[name].append(data.numel() / (time.perf_counter() - start))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    paired = statistics.median(r / m for r, m in zip(rates["rn"], rates["mappo"]))  # within each round
    result = {"frames_per_second": medians, "samples": rates, "rn_over_mappo": medians["rn"] / medians["mappo"],
              "rn_over_mappo_paired": paired}
    if fused:
        result["rn_fused_over_mappo"] = medians["rn_fused"] / medians["mappo"]
        result["rn_fused_over_mappo_paired"] = statistics.median(
            r / m for r, m in zip(rates["rn_fused"], rates["mappo"]))
    return result


def worker_rates(p: Preset) -> list[dict]:
    """Collection and training frames/s per (algo, workers), every configuration alternated in each round."""
    common = dict(task=p.task, n_agents=p.n_agents, graph=p.rn_graph, frames_per_batch=p.frames_per_batch,
                  max_steps=p.max_steps, epochs=p.epochs, minibatch_size=p.minibatch_size, num_cells=p.num_cells,
                  logger="")
    runs = {(algo, n): RNTrainer(TrainConfig(algo=algo, workers=n, **common), progress=False)
            for algo in p.worker_algos for n in p.worker_counts}
    collectors = {key: t.make_collector() for key, t in runs.items()}
    iterators = {key: iter(c) for key, c in collectors.items()}
    collect: dict[tuple, list[float]] = {key: [] for key in runs}
    train: dict[tuple, list[float]] = {key: [] for key in runs}
    try:
        for rep in range(p.reps + 1):  # the first round warms up (and waits for the workers to start)
            for key, trainer in runs.items():
                start = time.perf_counter()
                data = next(iterators[key])
                collected = time.perf_counter()
                trainer.update(data)
                collectors[key].update_policy_weights_()
                if rep:
                    collect[key].append(data.numel() / (collected - start))
                    train[key].append(data.numel() / (time.perf_counter() - start))
    finally:
        for collector in collectors.values():
            collector.shutdown()
    return [{"algo": algo, "workers": n, "collection_frames_per_second": statistics.median(collect[algo, n]),
             "training_frames_per_second": statistics.median(train[algo, n]),
             "collection_samples": collect[algo, n], "training_samples": train[algo, n]} for algo, n in runs]


def _time(fn, reps: int) -> float:
    fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def policy_costs(p: Preset) -> list[dict]:
    """Seconds per policy step (no grad) for flat / 2-level / 3-level graphs and a flat MultiAgentMLP."""
    rows = []
    for n in p.motor_counts:
        env = MockMultiAgentEnv(n, num_envs=p.policy_envs, obs_dim=p.obs_dim, seed=0)
        baseline = RNTrainer(TrainConfig(task="mock", algo="mappo", frames_per_batch=p.policy_envs, max_steps=1,
                                         minibatch_size=p.policy_envs, num_cells=p.num_cells, logger=""),
                             env_fn=lambda k, seed, n=n: MockMultiAgentEnv(n, num_envs=k, obs_dim=p.obs_dim),
                             progress=False).policy
        td = env.reset()
        with torch.no_grad():
            base_s = _time(lambda: baseline(td.clone()), p.policy_reps)
        for spec in ("flat", "tree:2", "tree:2,2"):
            graph = RNGraph.from_spec(spec, n)
            rn_env = TransformedEnv(MockMultiAgentEnv(n, num_envs=p.policy_envs, obs_dim=p.obs_dim, seed=0),
                                    LevelEnv(graph))
            composer = GraphComposer(graph, rn_env, num_cells=p.num_cells, manager_cells=64)
            rn_td = rn_env.reset()
            with torch.no_grad():
                seconds = _time(lambda: composer.policy(rn_td.clone()), p.policy_reps)
            rows.append({"motors": n, "graph": spec, "vertices": len(graph.vertex_order), "levels": graph.depth + 1,
                         "seconds": seconds, "flat_mlp_seconds": base_s, "speed_vs_flat_mlp": base_s / seconds})
    return rows


def vmas_rate(p: Preset) -> float:
    """Frames/s of the bare VMAS env under random actions."""
    env = make_env(p.task, n_agents=p.n_agents, num_envs=p.frames_per_batch // p.max_steps, max_steps=p.max_steps)
    td = env.reset()
    start = time.perf_counter()
    for _ in range(p.vmas_steps):
        td = env.rand_step(td)
    return p.vmas_steps * env.batch_size.numel() / (time.perf_counter() - start)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right, workers) = plt.subplots(1, 3, figsize=(15, 4))
    rates = result["training"]["frames_per_second"]
    bars = left.bar(["MAPPO", "RN " + result["preset"]["rn_graph"], "VMAS step (random)"],
                    [rates["mappo"], rates["rn"], result["vmas_frames_per_second"]])
    left.bar_label(bars, fmt="%.0f")
    left.set_ylabel("frames / s")
    left.set_title(f"training on {result['preset']['task']} (RN/MAPPO = {result['training']['rn_over_mappo']:.2f})")
    for spec in ("flat", "tree:2", "tree:2,2"):
        rows = [r for r in result["policy"] if r["graph"] == spec]
        right.plot([r["vertices"] for r in rows], [1e3 * r["seconds"] for r in rows], "o-", label=f"RN {spec}")
    flat = [r for r in result["policy"] if r["graph"] == "flat"]
    right.plot([r["vertices"] for r in flat], [1e3 * r["flat_mlp_seconds"] for r in flat], "k--",
               label="flat MultiAgentMLP")
    right.set_xlabel("vertices")
    right.set_ylabel("ms per policy step")
    right.set_title("policy-step cost vs vertex count")
    right.legend()
    rows = result.get("workers", [])
    labels = [f"{r['algo'].upper()} x{r['workers']}" for r in rows]
    x = range(len(rows))
    workers.bar([i - 0.2 for i in x], [r["collection_frames_per_second"] for r in rows], 0.4, label="collection")
    workers.bar([i + 0.2 for i in x], [r["training_frames_per_second"] for r in rows], 0.4, label="training")
    workers.set_xticks(list(x), labels)
    workers.set_ylabel("frames / s")
    workers.set_title("collector workers (MultiSyncCollector)")
    workers.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    flags = {"--fused": "also time RN with --fused-loss (RNLoss(fused=True)), alternated in the same rounds",
             "--training-only": "run part 1 only (training frames/s), written to <out>/training.json"}
    args, p, out = speed_cli.parse(__doc__, PRESETS, "default", "torchrl-rn-throughput", argv, device=True,
                                   flags=flags)
    torch.manual_seed(0)
    result = {"preset": dataclasses.asdict(p), "threads": torch.get_num_threads()}
    result["training"] = training = training_rates(p, args.device, fused=args.fused)
    print(f"training frames/s: RN {training['frames_per_second']['rn']:.0f}, "
          f"MAPPO {training['frames_per_second']['mappo']:.0f}, "
          f"ratio RN/MAPPO {training['rn_over_mappo']:.2f} (paired by round "
          f"{training['rn_over_mappo_paired']:.2f})", flush=True)
    if args.fused:
        print(f"fused loss: RN {training['frames_per_second']['rn_fused']:.0f} frames/s, ratio RN/MAPPO "
              f"{training['rn_fused_over_mappo']:.2f} (paired by round {training['rn_fused_over_mappo_paired']:.2f})",
              flush=True)
    device = torch.device(args.device)
    if args.training_only:
        (out / "training.json").write_text(json.dumps({"threads": result["threads"], **training}, indent=1))
        return
    if device.type != "cpu":  # the other parts measure CPU costs
        (out / f"training-{device.type}.json").write_text(json.dumps(result["training"], indent=1))
        return
    result["policy"] = policy_costs(p)
    for r in result["policy"]:
        print(f"policy step {r['graph']:>8} over {r['motors']:>3} motors ({r['vertices']:>3} vertices): "
              f"{1e3 * r['seconds']:.2f} ms, {r['speed_vs_flat_mlp']:.2f}x the flat MultiAgentMLP's speed", flush=True)
    result["vmas_frames_per_second"] = vmas_rate(p)
    print(f"raw VMAS step rate: {result['vmas_frames_per_second']:.0f} frames/s", flush=True)
    result["workers"] = worker_rates(p)
    for r in result["workers"]:
        print(f"{r['algo']} with {r['workers']} collector worker(s): collection "
              f"{r['collection_frames_per_second']:.0f} frames/s, training {r['training_frames_per_second']:.0f} "
              "frames/s", flush=True)
    (out / "throughput.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "throughput.png")


if __name__ == "__main__":
    main()
