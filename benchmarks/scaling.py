"""Scaling benchmark: the composed RN policy's step time per vertex against a flat MAPPO actor's time per agent.

From 4 to 1,024 motors, 2 to 5 levels (trees of branching 4: ``tree:4`` on 4 and 16 motors, ``tree:4,4`` on 64,
``tree:4,4,4`` on 256, ``tree:4,4,4,4`` on 1,024), one policy step (no grad, sampling) of
:class:`~torchrl_rn.GraphComposer`'s policy on a :class:`~torchrl_rn.LevelEnv`-wrapped mock env, against TorchRL's
MAPPO actor over the same motors (a ``ProbabilisticActor`` over a ``MultiAgentMLP``, as in TorchRL's multi-agent
PPO tutorial). Both alternate in one process; the median of ``reps`` steps is kept. ``ratio`` is RN's seconds per
vertex over the flat actor's seconds per agent (<= 1.3 is issue 13's target); ``ratio_paired`` is the median over the
rounds of that ratio within each round (RN and the flat actor timed back to back), less swayed by a load that
changes during the run. Peak memory is the highest running
sum of the CPU bytes the step's operators allocate and free (``torch.profiler``, ``profile_memory=True``), above its
input.

On a CUDA device (``--device cuda``) the clock stops after ``torch.cuda.synchronize()`` and peak memory is the
rise of ``torch.cuda.max_memory_allocated`` above the input, during one step. There a step of a few small layers is
bound by kernel launches, and the levels of a graph run one after another, so a graph of L levels pays about L flat
actors' launches; ``--cudagraphs`` wraps both policies in tensordict's ``CudaGraphModule`` (as TorchRL's own
examples do on GPU), which replays each step's kernels as one CUDA graph.

Writes ``<out>/scaling.json`` and ``<out>/scaling.png`` (``scaling-cuda.json`` / ``scaling-cuda-cudagraphs.json``
and their plots on CUDA):

    python benchmarks/scaling.py --threads 1 --out benchmarks/results     # default preset
    python benchmarks/scaling.py --device cuda --out benchmarks/results   # the same on a GPU
    python benchmarks/scaling.py --device cuda --cudagraphs --out benchmarks/results
    python benchmarks/scaling.py --preset tiny                            # seconds; a scratch folder
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
from tensordict.nn import CudaGraphModule, NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.envs import TransformedEnv
from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal

from torchrl_rn import GraphComposer, LevelEnv, RNGraph
from torchrl_rn.envs import MockMultiAgentEnv


@dataclass(frozen=True)
class Preset:
    sizes: tuple[tuple[int, str], ...] = ((4, "tree:4"), (16, "tree:4"), (64, "tree:4,4"), (256, "tree:4,4,4"),
                                          (1024, "tree:4,4,4,4"))
    num_envs: int = 32
    obs_dim: int = 16
    num_cells: int = 256
    manager_cells: int = 64
    reps: int = 40


PRESETS = {
    "default": Preset(),
    "tiny": Preset(sizes=((4, "tree:4"), (16, "tree:4,4")), num_envs=2, num_cells=16, manager_cells=8, reps=2),
}


def flat_actor(env, n: int, num_cells: int) -> ProbabilisticActor:
    """TorchRL's multi-agent PPO tutorial actor: a ``ProbabilisticActor`` over a shared-parameter ``MultiAgentMLP``."""
    obs = env.full_observation_spec_unbatched["agents", "observation"].shape[-1]
    act = env.full_action_spec_unbatched["agents", "action"]
    head = TensorDictModule(
        nn.Sequential(MultiAgentMLP(obs, 2 * act.shape[-1], n_agents=n, centralized=False, share_params=True,
                                    depth=2, num_cells=num_cells, activation_class=nn.Tanh), NormalParamExtractor()),
        [("agents", "observation")], [("agents", "loc"), ("agents", "scale")])
    return ProbabilisticActor(head, in_keys=[("agents", "loc"), ("agents", "scale")], out_keys=[("agents", "action")],
                              distribution_class=TanhNormal,
                              distribution_kwargs={"low": act.space.low, "high": act.space.high}, return_log_prob=True)


def peak_bytes(fn, device: torch.device) -> int:
    """Highest running sum of the CPU bytes allocated (+) and freed (-) by ``fn``'s operators, in call order; on CUDA,
    the rise of the device's peak allocated bytes above what was allocated before ``fn``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(p: Preset, device: torch.device | str = "cpu", cudagraphs: bool = False) -> list[dict]:
    device = torch.device(device)
    rows = []
    for n, spec in p.sizes:
        graph = RNGraph.from_spec(spec, n)
        rn_env = TransformedEnv(MockMultiAgentEnv(n, num_envs=p.num_envs, obs_dim=p.obs_dim, seed=0, device=device),
                                LevelEnv(graph))
        policy = GraphComposer(graph, rn_env, num_cells=p.num_cells, manager_cells=p.manager_cells,
                               device=device).policy
        env = MockMultiAgentEnv(n, num_envs=p.num_envs, obs_dim=p.obs_dim, seed=0, device=device)
        flat = flat_actor(env, n, p.num_cells).to(device)
        if cudagraphs:  # captured after 2 warm-up calls, inside the warm-up rounds below
            policy = CudaGraphModule(policy, warmup=2, device=device)
            flat = CudaGraphModule(flat, warmup=2, device=device)
        steps = {"rn": (policy, rn_env.reset()), "flat": (flat, env.reset())}
        samples: dict[str, list[float]] = {"rn": [], "flat": []}
        with torch.no_grad():
            warm = 3 if cudagraphs else 1
            for rep in range(p.reps + warm):  # the first rounds warm up (and capture the CUDA graphs)
                for name, (module, td) in steps.items():
                    td = td.clone()
                    _sync(device)
                    start = time.perf_counter()
                    module(td)
                    _sync(device)
                    if rep >= warm:
                        samples[name].append(time.perf_counter() - start)
            memory = {name: peak_bytes(lambda m=module, td=td: m(td.clone()), device)
                      for name, (module, td) in steps.items()}
        rn_s, flat_s = statistics.median(samples["rn"]), statistics.median(samples["flat"])
        vertices = len(graph.vertex_order)
        rows.append({"motors": n, "graph": spec, "vertices": vertices, "levels": graph.depth + 1,
                     "rn_seconds": rn_s, "flat_seconds": flat_s, "rn_seconds_per_vertex": rn_s / vertices,
                     "flat_seconds_per_agent": flat_s / n, "ratio": (rn_s / vertices) / (flat_s / n),
                     "ratio_paired": statistics.median((r / vertices) / (f / n)
                                                       for r, f in zip(samples["rn"], samples["flat"])),
                     "rn_peak_bytes": memory["rn"], "flat_peak_bytes": memory["flat"],
                     "rn_samples": samples["rn"], "flat_samples": samples["flat"]})
        print(f"{n:>5} motors, {spec:<13} ({vertices:>4} vertices, {graph.depth + 1} levels): RN "
              f"{1e6 * rn_s / vertices:.1f} us/vertex, flat {1e6 * flat_s / n:.1f} us/agent, ratio "
              f"{rows[-1]['ratio']:.2f} (paired {rows[-1]['ratio_paired']:.2f}); peak memory RN {memory['rn'] / 2**20:.1f} MiB, flat "
              f"{memory['flat'] / 2**20:.1f} MiB", flush=True)
    return rows


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    motors = [r["motors"] for r in rows]
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(15, 4))
    left.plot(motors, [1e6 * r["rn_seconds_per_vertex"] for r in rows], "o-", label="RN, per vertex")
    left.plot(motors, [1e6 * r["flat_seconds_per_agent"] for r in rows], "k--", label="flat MAPPO actor, per agent")
    left.set_xscale("log", base=4)
    left.set_xlabel("motors")
    left.set_ylabel("us per policy step")
    left.legend()
    mid.plot(motors, [r["ratio"] for r in rows], "o-")
    mid.axhline(1.3, color="r", ls=":", label="target 1.3")
    mid.set_xscale("log", base=4)
    mid.set_xlabel("motors")
    mid.set_title("RN time per vertex / flat time per agent")
    mid.legend()
    right.plot(motors, [r["rn_peak_bytes"] / 2**20 for r in rows], "o-", label="RN")
    right.plot(motors, [r["flat_peak_bytes"] / 2**20 for r in rows], "k--", label="flat MAPPO actor")
    right.set_xscale("log", base=4)
    right.set_xlabel("motors")
    right.set_ylabel("peak MiB per policy step")
    right.legend()
    where = f"{result['threads']} thread(s)" if result.get("device", "cpu") == "cpu" else result["device_name"]
    where += ", CUDA graphs" * result.get("cudagraphs", False)
    fig.suptitle(f"policy step, {result['preset']['num_envs']} envs, {where}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args, p, out = speed_cli.parse(__doc__, PRESETS, "default", "torchrl-rn-scaling", argv, device=True,
                                   flags={"--cudagraphs": "replay each policy step as a CUDA graph (tensordict's "
                                                          "CudaGraphModule); CUDA devices only"})
    device = torch.device(args.device)
    if args.cudagraphs and device.type != "cuda":
        raise SystemExit(f"scaling.py: error: --cudagraphs needs a CUDA --device, not {args.device!r}")
    torch.manual_seed(0)
    result = {"preset": dataclasses.asdict(p), "preset_name": args.preset, "threads": torch.get_num_threads(),
              "device": device.type, "torch": torch.__version__,
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "cudagraphs": args.cudagraphs}
    result["rows"] = measure(p, device, args.cudagraphs)
    stem = "scaling" if device.type == "cpu" else f"scaling-{device.type}" + "-cudagraphs" * args.cudagraphs
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    plot(result, out / f"{stem}.png")


if __name__ == "__main__":
    main()
