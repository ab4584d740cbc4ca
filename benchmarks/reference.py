"""Reference lines for the learning plots: the return of each task's hand-written heuristic policy.

VMAS ships a ``HeuristicPolicy`` beside several scenarios (balance, transport, discovery, ...). This script runs it
through the same pipeline the learning benchmark evaluates with (:func:`torchrl_rn.envs.make_env`, the preset's agent
count and episode length, truncated time limits, the mean agent reward summed to the first done:
:func:`torchrl_rn.train.evaluate.episode_returns`) and writes ``benchmarks/results/reference.json``; the learning
plots draw it as a dashed line and ``report.py`` lists it in docs/results.md.

    python benchmarks/reference.py            # every task of the learning presets that has a usable heuristic

simple_spread has no VMAS heuristic; its reference is this script's ``SpreadAssignment`` (least-distance landmark
assignment, steering to it). dropout has none either; its reference is ``ClosestGoes`` (only the agent nearest the
goal moves, straight to it: a centralised heuristic, since dropout's agents do not observe each other). PettingZoo's
``simple_spread_v3`` gets ``SpreadAssignment`` too, reading PettingZoo's observation layout and acting with MPE's
discrete actions. A task without a heuristic or whose heuristic needs a missing package (navigation's needs
``cvxpylayers``) is listed with the reason instead of a number. Every task also gets the return of a uniformly
random policy (``"random"``), the floor a learner must clear, evaluated the same way.
"""
from __future__ import annotations

import argparse
import importlib
import itertools
import json
import sys
from pathlib import Path

import torch
from tensordict.nn import TensorDictModule

from torchrl_rn.envs import make_env
from torchrl_rn.train.evaluate import episode_returns
from torchrl_rn.train.stats import mean_ci95

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import PRESETS  # (the learning benchmark's agent counts and episode length)

RESULTS = Path(__file__).resolve().parent / "results"


class Heuristic(torch.nn.Module):
    """A VMAS scenario's ``HeuristicPolicy``, applied to every agent of a TorchRL ``[..., agents, obs]`` batch."""

    def __init__(self, policy, u_range: float) -> None:
        super().__init__()
        self.policy, self.u_range = policy, u_range

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        flat = observation.reshape(-1, *observation.shape[-2:])
        actions = [self.policy.compute_action(flat[:, a], self.u_range) for a in range(flat.shape[1])]
        return torch.stack(actions, 1).reshape(*observation.shape[:-1], -1)


class SpreadAssignment(torch.nn.Module):
    """simple_spread's reference (VMAS has none): agents take the landmark assignment of least summed distance
    (every permutation; a handful of agents) and steer to their landmark, damping their velocity.

    An agent's observation holds its velocity at ``vel`` and ``landmark - pos`` (2 per landmark) from ``rel``:
    VMAS's layout is ``[pos(2), vel(2), landmark - pos, ...]`` (the defaults), PettingZoo's MPE
    ``[vel(2), pos(2), landmark - pos, ...]`` (``vel=0``). With ``discrete`` the force becomes MPE's discrete action
    nearest to it (0 no-op, 1 -x, 2 +x, 3 -y, 4 +y; no-op below ``u_range / 10``).
    """

    def __init__(self, n_agents: int, u_range: float, gain: float = 3.0, damping: float = 1.0, *, vel: int = 2,
                 rel: int = 4, discrete: bool = False) -> None:
        super().__init__()
        self.register_buffer("perms", torch.tensor(list(itertools.permutations(range(n_agents)))))
        self.n, self.u_range, self.gain, self.damping = n_agents, u_range, gain, damping
        self.vel, self.rel, self.discrete = vel, rel, discrete

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        vel = observation[..., self.vel:self.vel + 2]
        rel = observation[..., self.rel:self.rel + 2 * self.n].unflatten(-1, (self.n, 2))  # [..., agent, landmark, 2]
        dist = rel.norm(dim=-1)  # [..., agent, landmark]
        agents = torch.arange(self.n)
        cost = dist[..., agents, self.perms].sum(-1)  # [..., perm]: perm[a] is agent a's landmark
        best = self.perms[cost.argmin(-1)]  # [..., agent]
        target = rel.gather(-2, best[..., None, None].expand(*best.shape, 1, 2)).squeeze(-2)
        force = (self.gain * target - self.damping * vel).clamp(-self.u_range, self.u_range)
        if not self.discrete:
            return force
        axis = force.abs().argmax(-1, keepdim=True)  # 0: x, 1: y
        step = 1 + 2 * axis + (force.gather(-1, axis) > 0).long()
        return torch.where(force.abs().amax(-1, keepdim=True) < self.u_range / 10, 0, step).squeeze(-1)


class ClosestGoes(torch.nn.Module):
    """dropout's reference (VMAS has none): the agent nearest the goal steers to it, damping its velocity; the others
    stay still, spending no energy. It reads every agent's observation, which no dropout agent can: a centralised
    heuristic. An agent's observation is ``[pos(2), vel(2), goal - pos(2), eaten(1)]``.
    """

    def __init__(self, u_range: float, gain: float = 3.0, damping: float = 1.0) -> None:
        super().__init__()
        self.u_range, self.gain, self.damping = u_range, gain, damping

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        vel, rel = observation[..., 2:4], observation[..., 4:6]
        dist = rel.norm(dim=-1)  # [..., agent]
        nearest = torch.nn.functional.one_hot(dist.argmin(-1), dist.shape[-1]).unsqueeze(-1).to(rel)
        return (nearest * (self.gain * rel - self.damping * vel)).clamp(-self.u_range, self.u_range)


#: Tasks whose reference is a policy of this script (VMAS ships none): name -> (label, builder(n_agents, u_range))
OWN = {
    "simple_spread": ("SpreadAssignment (this script)", lambda n, u: SpreadAssignment(n, u)),
    "dropout": ("ClosestGoes (this script; centralised)", lambda n, u: ClosestGoes(u)),
}
#: The same for PettingZoo envs (discrete actions, as the MAPPO paper ran MPE; the joint assignment reads every
#: agent's observation)
PETTINGZOO_OWN = {
    "simple_spread_v3": ("SpreadAssignment (this script; centralised, discrete)",
                         lambda n, u: SpreadAssignment(n, u, vel=0, discrete=True)),
}


def heuristic_return(task: str, *, n_agents: int, max_steps: int, seeds: list[int], num_envs: int,
                     continuous_actions: bool = True) -> dict:
    """Mean and 95% CI of the heuristic's episode return over ``num_envs`` episodes per seed."""
    if task.startswith("pettingzoo/"):
        name = task.rpartition("/")[2]
        if name not in PETTINGZOO_OWN:
            return {"skipped": "this script has no reference policy for this PettingZoo env"}
        label, build = PETTINGZOO_OWN[name]
    else:
        name = task.removeprefix("vmas/")
        try:
            scenario = importlib.import_module(f"vmas.scenarios.{name}")
        except ModuleNotFoundError:  # MPE scenarios (simple_spread, ...) live in vmas.scenarios.mpe, without heuristics
            scenario = importlib.import_module(f"vmas.scenarios.mpe.{name}")
        if name in OWN:
            label, build = OWN[name]
        elif hasattr(scenario, "HeuristicPolicy"):
            policy = scenario.HeuristicPolicy(continuous_action=True)
            label, build = f"{scenario.__name__}.HeuristicPolicy", lambda n, u: Heuristic(policy, u)
        else:
            return {"skipped": "VMAS ships no heuristic policy for this scenario"}
    returns = []
    for seed in seeds:
        env = make_env(task, n_agents=n_agents, num_envs=num_envs, max_steps=max_steps, seed=seed,
                       continuous_actions=continuous_actions)
        space = getattr(env.full_action_spec["agents", "action"], "space", None)
        u_range = float(space.high.max()) if hasattr(space, "high") else 1.0  # discrete: no force bound
        actor = TensorDictModule(build(n_agents, u_range), [("agents", "observation")], [("agents", "action")])
        try:
            with torch.no_grad():
                td = env.rollout(max_steps, actor, break_when_any_done=False)
        except ImportError as err:  # e.g. navigation's heuristic imports cvxpylayers when first called
            return {"skipped": f"the heuristic needs a missing package: {err}"}
        returns += episode_returns(td).tolist()
    mean, ci = mean_ci95(returns)
    return {"policy": label, "mean": mean, "ci95": ci,
            "episodes": len(returns), "n_agents": n_agents, "max_steps": max_steps}


def random_return(task: str, *, n_agents: int, max_steps: int, seeds: list[int], num_envs: int,
                  continuous_actions: bool = True) -> dict:
    """Mean and 95% CI of a uniformly random policy's episode return (TorchRL's ``rollout`` without a policy samples
    the action spec), over ``num_envs`` episodes per seed: the floor a learner must clear."""
    returns = []
    for seed in seeds:
        torch.manual_seed(seed)
        env = make_env(task, n_agents=n_agents, num_envs=num_envs, max_steps=max_steps, seed=seed,
                       continuous_actions=continuous_actions)
        with torch.no_grad():
            td = env.rollout(max_steps, break_when_any_done=False)
        returns += episode_returns(td).tolist()
    mean, ci = mean_ci95(returns)
    return {"mean": mean, "ci95": ci, "episodes": len(returns)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", help="tasks (default: every task of the learning presets)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--envs", type=int, default=32, help="episodes per seed (vectorised envs)")
    parser.add_argument("--out", type=Path, default=RESULTS / "reference.json")
    args = parser.parse_args(argv)
    tasks = args.tasks or sorted({t for p in PRESETS.values() for t in p.tasks})
    # --tasks updates those tasks' lines and keeps the others'
    result = json.loads(args.out.read_text()) if args.tasks and args.out.exists() else {}
    for task in tasks:
        # the agents, steps and action space of the full preset, else of the first preset that runs the task
        runs_it = [p for p in PRESETS.values() if task in p.tasks]
        preset = PRESETS["full"] if task in PRESETS["full"].tasks or not runs_it else runs_it[0]
        setting = dict(n_agents=preset.n_agents.get(task, 4), max_steps=preset.max_steps, seeds=args.seeds,
                       num_envs=args.envs, continuous_actions=preset.continuous_actions)
        result[task] = {**heuristic_return(task, **setting), "random": random_return(task, **setting)}
        print(task, result[task])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(sorted(result.items())), indent=1) + "\n")


if __name__ == "__main__":
    main()
