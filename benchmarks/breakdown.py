"""Where an RN training iteration's extra time goes, against MAPPO's (issue 13's profile, as numbers to repeat).

1. One iteration, RN (2-level tree) and MAPPO alternated, median over ``reps``: collection (waiting for a batch)
   and update (advantages, then ``epochs`` passes of minibatches), in seconds.
2. One collection step, RN and MAPPO interleaved, median over ``steps``: the policy's forward pass and the env's
   step (for RN, LevelEnv's too) in milliseconds.
3. One minibatch, RN and MAPPO interleaved, median over ``minibatches``: the loss's forward and backward passes
   in milliseconds, and for RN each vertex group's own loss forward (timed by hooks on ``RNLoss.group_losses``).
4. The fixed cost of a group: RN's loss on ``tiny_frames`` frames, per group. A group's TorchRL ``ClipPPOLoss``
   call costs about as much on 8 frames as on 400 when its networks are small: what every extra group adds.

Writes ``<out>/breakdown.json`` (``--out`` defaults to a scratch folder; pass ``--out benchmarks/results`` to
update the committed figures, which ``report.py`` renders into docs/performance.md).

    python benchmarks/breakdown.py --threads 1 --out benchmarks/results    # a minute or two on one core
    python benchmarks/breakdown.py --threads 1 --fused    # RN with --fused-loss too
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass

import speed_cli  # this script runs from benchmarks/
import throughput
import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MultiAgentMLP

from torchrl_rn.train import RNTrainer, TrainConfig


@dataclass(frozen=True)
class Preset(throughput.Preset):
    """``throughput.py``'s task, graph, batch, epochs and ``reps`` (iterations of each method after one to warm up),
    and how many steps and minibatches to time."""

    steps: int = 100  # collection steps of each method, interleaved (after 10 to warm up)
    minibatches: int = 100  # minibatches of each method, interleaved (after 10 to warm up)
    tiny_frames: int = 8  # frames of the minibatch that shows a group's fixed cost


PRESETS = {
    "default": Preset(reps=3),
    "tiny": Preset(frames_per_batch=200, max_steps=10, epochs=1, minibatch_size=100, num_cells=16, reps=1,
                   steps=3, minibatches=3),
}


class _GroupTimer:
    """Forward time of each group loss of an ``RNLoss``, from hooks (the loss itself is left as it is)."""

    def __init__(self, loss) -> None:
        self.seconds: dict[str, list[float]] = {g: [] for g in loss.group_losses}
        self._start: dict[str, float] = {}
        self.recording = False
        for g, group_loss in loss.group_losses.items():
            group_loss.register_forward_pre_hook(lambda *_, g=g: self._start.__setitem__(g, time.perf_counter()))
            group_loss.register_forward_hook(lambda *_, g=g: self._stop(g))

    def _stop(self, group: str) -> None:
        if self.recording:
            self.seconds[group].append(time.perf_counter() - self._start[group])


def _ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


def network_macs(trainer: RNTrainer) -> dict[str, int]:
    """Multiply-accumulates per frame (one env step of every env's agents) of a trainer's networks: its actors (the
    ``MultiAgentMLP`` s of the policy) and critics (the loss's others). A ``MultiAgentMLP`` runs its linear layers once
    per agent, or once for all agents when it is centralised with shared weights (its output is then expanded).

    Examples:
        >>> macs = network_macs(RNTrainer(TrainConfig(task="mock", algo="mappo", num_cells=8), progress=False))
        >>> macs["actor"], macs["critic"]  # 3 agents: 3 x (3*8 + 8*8 + 8*4) and once (9*8 + 8*8 + 8*1)
        (360, 144)
    """
    def mlps(module: torch.nn.Module) -> dict[int, MultiAgentMLP]:
        return {id(m): m for m in module.modules() if isinstance(m, MultiAgentMLP)}

    def macs(net: MultiAgentMLP) -> int:
        per_call = sum(layer.in_features * layer.out_features for layer in net._empty_net.modules()
                       if isinstance(layer, torch.nn.Linear))
        return per_call * (1 if net.centralized and net.share_params else net.n_agents)

    actors = mlps(trainer.policy)
    losses = getattr(trainer.loss, "group_losses", {"": trainer.loss})  # RN: one TorchRL loss per group
    critics = {k: v for loss in losses.values() for k, v in mlps(loss.critic_network).items() if k not in actors}
    return {"actor": sum(map(macs, actors.values())), "critic": sum(map(macs, critics.values()))}


def breakdown(p: Preset, *, fused: bool = False) -> dict:
    """The four parts (see the module docstring); with ``fused``, RN with ``--fused-loss`` too (``rn_fused``),
    interleaved with the others in parts 1-3."""
    common = dict(task=p.task, n_agents=p.n_agents, frames_per_batch=p.frames_per_batch, max_steps=p.max_steps,
                  epochs=p.epochs, minibatch_size=p.minibatch_size, num_cells=p.num_cells, logger="")
    runs = {"rn": RNTrainer(TrainConfig(algo="rn", graph=p.rn_graph, **common), progress=False),
            "mappo": RNTrainer(TrainConfig(algo="mappo", **common), progress=False)}
    if fused:
        runs["rn_fused"] = RNTrainer(TrainConfig(algo="rn", graph=p.rn_graph, fused_loss=True, **common),
                                     progress=False)
    iterators = {name: iter(t.make_collector()) for name, t in runs.items()}
    collect: dict[str, list[float]] = {name: [] for name in runs}
    update: dict[str, list[float]] = {name: [] for name in runs}
    batches = {}
    for rep in range(p.reps + 1):  # the first round warms up
        for name, trainer in runs.items():
            start = time.perf_counter()
            batches[name] = next(iterators[name])
            collected = time.perf_counter()
            trainer.update(batches[name])
            if rep:
                collect[name].append(collected - start)
                update[name].append(time.perf_counter() - collected)
    # one collection step, split into the policy and the env (LevelEnv included for RN), interleaved
    policy: dict[str, list[float]] = {name: [] for name in runs}
    env_step: dict[str, list[float]] = {name: [] for name in runs}
    tds = {name: trainer.env.reset() for name, trainer in runs.items()}
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        for i in range(10 + p.steps):
            for name, trainer in runs.items():
                start = time.perf_counter()
                td = trainer.policy(tds[name])
                acted = time.perf_counter()
                _, tds[name] = trainer.env.step_and_maybe_reset(td)
                if i >= 10:
                    policy[name].append(acted - start)
                    env_step[name].append(time.perf_counter() - acted)
    # minibatches of the last batches (with their advantages, as update() computes them), interleaved
    minibatch = {}
    for name, trainer in runs.items():
        with torch.no_grad():
            trainer.loss.value_estimator(batches[name])
        minibatch[name] = batches[name].reshape(-1)[torch.randperm(batches[name].numel())[:p.minibatch_size]]
    timer = _GroupTimer(runs["rn"].loss)
    forward: dict[str, list[float]] = {name: [] for name in runs}
    backward: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(10 + p.minibatches):
        timer.recording = i >= 10
        for name, trainer in runs.items():
            start = time.perf_counter()
            total, _ = trainer._loss_value(minibatch[name])  # the loss the trainer's update backpropagates
            done_forward = time.perf_counter()
            total.backward()
            trainer.optimizer.zero_grad()
            if i >= 10:
                forward[name].append(done_forward - start)
                backward[name].append(time.perf_counter() - done_forward)
    per_group = {g: _ms(s) for g, s in timer.seconds.items()}
    # the same loss on a few frames: what a group costs whatever its size
    tiny = minibatch["rn"][: p.tiny_frames]
    timer.seconds = {g: [] for g in timer.seconds}
    for _ in range(10 + p.minibatches):
        runs["rn"].loss(tiny)
    tiny_per_group = {g: _ms(s[10:] or s) for g, s in timer.seconds.items()}
    iteration = {name: {"collection": statistics.median(collect[name]), "update": statistics.median(update[name])}
                 for name in runs}
    macs = {name: network_macs(trainer) for name, trainer in runs.items() if name in ("rn", "mappo")}
    steps = p.frames_per_batch / runs["mappo"].config.num_envs  # policy steps per iteration
    m, policy_ms = iteration["mappo"], 1e-3 * _ms(policy["mappo"])
    actor_ratio = macs["rn"]["actor"] / macs["mappo"]["actor"]
    total_ratio = (macs["rn"]["actor"] + macs["rn"]["critic"]) / (macs["mappo"]["actor"] + macs["mappo"]["critic"])
    # MAPPO's iteration with everything but the env scaled by RN's extra network arithmetic (pessimistic: all of it)
    floor_seconds = (m["collection"] - steps * policy_ms + steps * policy_ms * actor_ratio
                     + m["update"] * total_ratio)
    return {
        "macs_per_frame": macs,
        "mac_ratio": {"actor": actor_ratio, "total": total_ratio},
        "flop_floor": (m["collection"] + m["update"]) / floor_seconds,
        "iteration_seconds": iteration,
        "step_ms": {name: {"policy": _ms(policy[name]), "env": _ms(env_step[name])} for name in runs},
        "minibatch_ms": {name: {"forward": _ms(forward[name]), "backward": _ms(backward[name])} for name in runs},
        "rn_group_forward_ms": per_group,
        "rn_group_forward_ms_tiny": tiny_per_group,
        "groups": {g: {"vertices": len(runs["rn"].graph.groups[g]),
                       "parameters": sum(q.numel() for q in loss.parameters())}
                   for g, loss in runs["rn"].loss.group_losses.items()},
    }


def main(argv: list[str] | None = None) -> None:
    flags = {"--fused": "also break down RN with --fused-loss (RNLoss(fused=True)), as 'rn_fused'"}
    args, p, out = speed_cli.parse(__doc__, PRESETS, "default", "torchrl-rn-breakdown", argv, flags=flags)
    torch.manual_seed(0)
    result = {"preset": dataclasses.asdict(p), "threads": torch.get_num_threads(), **breakdown(p, fused=args.fused)}
    for name, t in result["iteration_seconds"].items():
        m, st = result["minibatch_ms"][name], result["step_ms"][name]
        print(f"{name}: collection {t['collection']:.2f} s, update {t['update']:.2f} s per iteration; "
              f"policy {st['policy']:.1f} ms, env {st['env']:.1f} ms per step; "
              f"loss forward {m['forward']:.1f} ms, backward {m['backward']:.1f} ms per minibatch", flush=True)
    for g, ms in result["rn_group_forward_ms"].items():
        print(f"rn group {g!r}: loss forward {ms:.1f} ms on {p.minibatch_size} frames, "
              f"{result['rn_group_forward_ms_tiny'][g]:.1f} ms on {p.tiny_frames}", flush=True)
    (out / "breakdown.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
