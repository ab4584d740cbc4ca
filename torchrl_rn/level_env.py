"""``LevelEnv``: the environment as seen by the vertices of a Reinforcement Network.

Two uses of one :class:`~torchrl.envs.Transform`:

* **graph transform** (``LevelEnv(graph)``): every vertex group gets ``reward``, ``done`` and ``terminated``
  entries (``truncated`` too where the env has it; rewards routed up the DAG with ``psi``/``share``) and an
  ``instruction`` state entry that carries a step's instructions into its ``"next"`` data, so that a critic can be
  evaluated there. With the composed policy and a stock collector, a batch holds every vertex's data. The env's own
  per-agent entries are kept: a team reward or flag is written into a group only where the group has none (the
  rule of TorchRL's ``MultiAgentGAE`` and of BenchMARL), so PettingZoo's per-agent done flags pass through.
  A group with a decision period ``k > 1`` (:meth:`RNGraph.period`) also gets two state entries (in the
  observation and state specs, like TorchRL's ``StepCounter``, so collectors and batched envs carry them):
  ``window_step`` (steps since its last decision, ``0`` where it decides, ``(step + 1) % k`` after a step and ``0``
  after a reset, so an episode that ends mid-window starts a fresh one) and ``held_action`` (its last action, the
  instruction a :class:`~torchrl_rn.GraphComposer` policy repeats until the next decision).
* **TAG view** (``LevelEnv(graph, level=l, lower_policy=composer)``): the vertices below level ``l`` become part of
  the environment. Its actions are level ``l``'s instructions, its observations their messages from below and its
  rewards ``psi`` of the level below's rewards: an ordinary TorchRL env that any stock policy and loss can train.
  Stack views (``l = 1`` on the raw env, ``l = 2`` on that) for a 3-level hierarchy, as TAG does.

A motors' group whose reward function is a :class:`~torchrl_rn.rewards.GoalReward` (graph attribute ``reward``)
also gets ``("next", group, "vertex_reward")`` (a reward spec entry), computed at every step by a
:class:`~torchrl_rn.rewards.GoalRewardModule` from the step's observation and instruction and the next observation;
the group's ``reward`` stays the task's (what ``psi`` routes up and what evaluation reads) and
:class:`~torchrl_rn.GraphGAE` trains the group on ``vertex_reward``. It needs the step's observation, so put
``LevelEnv`` outside a batched env (on a ``SerialEnv``/``ParallelEnv``, not inside its workers) when goals are used.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import Transform

from torchrl_rn.graph import GraphError, RNGraph
from torchrl_rn.rewards import GoalRewardModule

if TYPE_CHECKING:
    from torchrl_rn.composer import GraphComposer

__all__ = ["LevelEnv"]

_DONE_KEYS = ("done", "terminated", "truncated")


class LevelEnv(Transform):
    """Turns an env into the environment of a Reinforcement Network, or of one level of it.

    Args:
        graph (RNGraph): the agent graph. Its motors' group must be the env's agent group.

    Keyword Args:
        level (int, optional): ``None`` (default) for the graph transform; ``l >= 1`` for the TAG view of level
            ``l``, whose wrapped env must expose level ``l - 1`` (the raw env for ``l = 1``, a ``LevelEnv`` view of
            level ``l - 1`` otherwise). The TAG view needs a layered graph (edges join consecutive levels).
        lower_policy (GraphComposer, optional): with ``level``: the composer whose level ``l - 1`` policy and
            messages run inside the env. It acts in the current exploration mode, without gradients. The view
            keeps a reference to it and does not own it: it is not a submodule, so the env's ``parameters()`` and
            ``state_dict()`` hold none of its weights (save and load the composer itself) and ``env.to(device)``
            does not move it. Updates to its weights reach the view at once in the same process (and in
            ``SerialEnv`` workers); each ``ParallelEnv`` worker acts with the copy it received at start.

    Raises:
        ValueError: a bad ``level``, or ``lower_policy`` without ``level`` or composed for another graph.
        TypeError: a TAG view without a :class:`~torchrl_rn.GraphComposer` as ``lower_policy``.
        GraphError: a TAG view of a graph that is not layered (the message names an edge that skips a level).

    Examples:
        Graph transform:

        >>> from torchrl.envs import TransformedEnv
        >>> from torchrl.envs.utils import check_env_specs
        >>> from torchrl_rn import GraphComposer, LevelEnv, RNGraph
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> graph = RNGraph.tree(4, branching=[2, 2])
        >>> env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph))
        >>> check_env_specs(env)
        >>> env.full_reward_spec["level2", "reward"].shape
        torch.Size([2, 1, 1])

        Like any TorchRL transform, it also runs inside the workers of a batched env (or on top of one):

        >>> from torchrl.envs import SerialEnv
        >>> batched = SerialEnv(2, lambda: TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph)))
        >>> check_env_specs(batched)

        Decision periods: the managers decide every 3 steps and hold their instruction in between.

        >>> slow = RNGraph.tree(4, branching=[2], periods=[1, 3])
        >>> env3 = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(slow))
        >>> data = env3.rollout(4, GraphComposer(slow, env3, num_cells=16).policy)
        >>> data["level1", "window_step"][0, :, 0, 0], data["level1", "decided"][0, :, 0, 0]
        (tensor([0, 1, 2, 0]), tensor([ True, False, False,  True]))

        TAG view: level 1 acts in an env that embeds the motors.

        >>> composer = GraphComposer(graph, env, num_cells=16)
        >>> level1 = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph, level=1, lower_policy=composer))
        >>> check_env_specs(level1)
        >>> level1.full_action_spec["level1", "action"].shape
        torch.Size([2, 2, 4])
    """

    def __init__(self, graph: RNGraph, *, level: int | None = None, lower_policy: GraphComposer | None = None) -> None:
        from torchrl_rn.composer import GraphComposer  # lazily: composer.py imports the vertex and graph modules

        super().__init__()
        self.graph = graph
        self.level = level
        g0 = graph.env_group
        if level is None:
            if lower_policy is not None:
                raise ValueError("lower_policy is only used by the TAG view: pass level=l too.")
            self.exposed = list(graph.groups)
            self.lower: list[str] = []
        else:
            if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= graph.depth:
                raise ValueError(f"level must be an int in [1, {graph.depth}] for this graph, got {level!r}.")
            if not graph.is_layered():
                u, v = graph.skipping_edges()[0]
                raise GraphError(
                    f"the TAG view needs a layered graph, but edge {u!r} -> {v!r} skips a level "
                    f"({graph.level(u)} -> {graph.level(v)})."
                )
            if not isinstance(lower_policy, GraphComposer):
                raise TypeError(
                    "the TAG view needs lower_policy=GraphComposer(graph, ...) for the levels below, got "
                    f"{type(lower_policy).__name__}."
                )
            if lower_policy.graph is not graph:
                raise ValueError("lower_policy was composed for another RNGraph than this LevelEnv's.")
            self.exposed = graph.groups_at(level)
            self.lower = graph.groups_at(level - 1)
        # a reference, not a submodule: the policy is the user's (trained, saved and moved by them), so the env's
        # parameters() and state_dict() do not hold its weights
        self.__dict__["composer"] = lower_policy
        #: groups with a decision period > 1 (graph transform only) and their periods
        self.periods = {g: graph.period(g) for g in self.exposed if graph.period(g) > 1}
        if level is not None:
            slow = {g: graph.period(g) for g in graph.groups if graph.period(g) > 1}
            if slow:
                g, k = next(iter(slow.items()))
                raise GraphError(f"the TAG view does not support decision periods yet: group {g!r} has period {k}; "
                                 "use the graph transform (LevelEnv(graph)) with a GraphComposer policy.")
        goals = graph.goal_rewards
        if level is not None and goals:
            g = next(iter(goals))
            raise GraphError(f"the TAG view does not support goal rewards: group {g!r} has reward "
                             f"{str(goals[g])!r}; use the graph transform (LevelEnv(graph)).")
        #: the goal reward of each motors' group that has one (it writes ("next", group, "vertex_reward"))
        self.goal_rewards = torch.nn.ModuleDict({g: GoalRewardModule(graph, g, r) for g, r in goals.items()})
        self._dims: dict | None = None
        self._routing = {}
        for g in self.exposed:
            if g != g0 and not any(callable(graph.attr(v, "psi")) for v in graph.groups[g]):
                sources, w = graph.reward_weights(g)
                self._routing[g] = (sources, w)

    # ------------------------------------------------------------------ specs
    @property
    def dims(self) -> dict:
        """:meth:`RNGraph.dims` for the wrapped env's observation size."""
        if self._dims is None:
            self._set_dims(self.parent.full_observation_spec)  # the spec this transform receives
        return self._dims

    def _set_dims(self, observation_spec: Composite) -> dict:
        if self._dims is None:
            key = (self.graph.env_group, "observation")
            if self.composer is not None:
                self._dims = self.composer.dims
                expected = self._dims[self.graph.env_group]["observation"]
                if key in observation_spec.keys(True, True) and observation_spec[key].shape[-1] != expected:
                    raise ValueError(
                        f"spec mismatch: the env's {key} has size {observation_spec[key].shape[-1]} but lower_policy "
                        f"was composed for {expected}."
                    )
            elif key in observation_spec.keys(True, True):
                self._dims = self.graph.dims(observation_spec[key].shape[-1])
            else:
                raise KeyError(
                    f"LevelEnv: the env has no {key} observation; the graph's motors' group "
                    f"{self.graph.env_group!r} must be the env's agent group."
                )
        return self._dims

    def _add_specs(self, spec: Composite, group: str, make: dict) -> None:
        """Adds ``make``'s entries (``field -> (trailing shape -> leaf spec)``) missing from ``spec[group]``.

        The group's Composite is created only when an entry is added: an empty one is rejected by TorchRL's
        batched envs (``SerialEnv``/``ParallelEnv``: "has empty specs").
        """
        shape = (*spec.shape, len(self.graph.groups[group]))
        present = spec[group].keys() if group in spec.keys() else ()
        missing = {field: build for field, build in make.items() if field not in present}
        if not missing:
            return
        if group not in spec.keys():
            spec[group] = Composite(shape=shape, device=spec.device)
        for field, build in missing.items():
            spec[group, field] = build(shape)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        dims = self._set_dims(observation_spec)
        device = observation_spec.device
        for g, module in self.goal_rewards.items():
            if module.reward.stop > dims[g]["observation"]:
                raise GraphError(f"group {g!r}: goal reward {str(module.reward)!r} reads observation entries "
                                 f"{module.reward.start}-{module.reward.stop}, but the observation has "
                                 f"{dims[g]['observation']}.")
        for g in self.exposed:
            make = {}
            if self.level is not None:
                make["observation"] = lambda s, n=dims[g]["observation"]: Unbounded(shape=(*s, n), device=device)
            if dims[g]["instruction"]:
                make["instruction"] = lambda s, n=dims[g]["instruction"]: Bounded(-1.0, 1.0, shape=(*s, n),
                                                                                   device=device)
            if self.level is not None and (g, "observation") in observation_spec.keys(True, True):
                del observation_spec[g, "observation"]  # the view's observation replaces the one below
            make.update(self._period_specs(g, device))
            self._add_specs(observation_spec, g, make)
        return observation_spec

    def _period_specs(self, group: str, device, action_spec: Composite | None = None) -> dict:
        """The state entries of a group with a decision period (none for period 1).

        The motors' held action has the env's action spec: ``action_spec`` (the input spec's), else the parent env's;
        without either (a transform outside any env) it is left out.
        """
        k = self.periods.get(group)
        if k is None:
            return {}
        specs = {"window_step": lambda s: Categorical(k, shape=(*s, 1), dtype=torch.long, device=device)}
        if group == self.graph.env_group:
            if action_spec is None and self.parent is not None:
                action_spec = self.parent.full_action_spec
            if action_spec is not None:
                action = action_spec[group, "action"]
                specs["held_action"] = lambda s: action.clone().expand(*s, *action.shape[len(s):]).to(device)
        else:
            n = self.graph.group_action_dim(group)
            specs["held_action"] = lambda s: Bounded(-1.0, 1.0, shape=(*s, n), device=device)
        return specs

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        device = reward_spec.device
        for g in self.exposed:
            make = {"reward": lambda s: Unbounded(shape=(*s, 1), device=device)}
            if g in self.goal_rewards:
                make["vertex_reward"] = make["reward"]
            self._add_specs(reward_spec, g, make)
        return reward_spec

    def transform_done_spec(self, done_spec: Composite) -> Composite:
        device = done_spec.device
        flags = [key for key in _DONE_KEYS if key in done_spec.keys()]  # the team flags the env has
        for g in self.exposed:
            self._add_specs(done_spec, g, {
                key: lambda s: Categorical(2, shape=(*s, 1), dtype=torch.bool, device=device) for key in flags
            })
        return done_spec

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        if self.periods:  # the window state is an input of the next step too (as StepCounter's step_count)
            if input_spec.get("full_state_spec", None) is None:
                input_spec["full_state_spec"] = Composite(shape=input_spec.shape, device=input_spec.device)
            for g in self.periods:
                self._add_specs(input_spec["full_state_spec"], g,
                                self._period_specs(g, input_spec.device, input_spec["full_action_spec"]))
        if self.level is None:
            return input_spec
        actions = input_spec["full_action_spec"]
        for g in self.lower:
            if (g, "action") not in actions.keys(True, True):
                raise KeyError(f"the env below this level-{self.level} view has no {(g, 'action')} action to drive.")
            expected = self.composer.vertex_groups[g].action_spec.shape
            if actions[g, "action"].shape[-len(expected):] != expected:
                raise ValueError(
                    f"spec mismatch: the env's {(g, 'action')} has shape {tuple(actions[g, 'action'].shape)} but "
                    f"lower_policy's group {g!r} acts with {tuple(expected)}."
                )
            del actions[g, "action"]
            if not actions[g].keys():
                del actions[g]
        for g in self.exposed:
            n = self.graph.group_action_dim(g)
            self._add_specs(actions, g, {"action": lambda s, n=n: Bounded(-1.0, 1.0, shape=(*s, n),
                                                                          device=actions.device)})
        return input_spec

    # ------------------------------------------------------------------ data
    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        # TAG view: the levels below act inside the env on the exposed level's instructions
        if self.level is not None:
            with torch.no_grad():
                for g in self.lower:
                    vg = self.composer.vertex_groups[g]
                    if vg.instruction_gather is not None:
                        vg.instruction_gather(tensordict)
                    vg.actor(tensordict)
        return tensordict

    def _observe(self, next_tensordict: TensorDictBase) -> None:
        # TAG view: the exposed level observes the messages of the level below
        with torch.no_grad():
            for g in self.lower:
                encoder = self.composer.vertex_groups[g].encoder
                if encoder is not None:
                    encoder(next_tensordict)
            for g in self.exposed:
                self._ensure_group(next_tensordict, g)
                self.composer.vertex_groups[g].observation_gather(next_tensordict)

    def _expand_done(self, next_tensordict: TensorDictBase) -> None:
        # a team flag reaches a group only where the group has none: per-agent flags the env gives (PettingZoo
        # keeps them in the group) pass through, as in TorchRL's MultiAgentGAE and BenchMARL ("only if missing")
        for key in _DONE_KEYS:
            root = next_tensordict.get(key, None)
            if root is None:
                continue
            for g in self.exposed:
                if next_tensordict.get((g, key), None) is None:
                    n = len(self.graph.groups[g])
                    # a copy, not an expanded view: a collector's reset writes into these flags in place
                    flags = root.unsqueeze(-2).expand(*root.shape[:-1], n, root.shape[-1]).clone()
                    self._set(next_tensordict, g, key, flags)

    def _route_rewards(self, next_tensordict: TensorDictBase) -> None:
        graph, g0 = self.graph, self.graph.env_group
        if g0 in self.exposed and (g0, "reward") not in next_tensordict.keys(True, True):
            root = next_tensordict.get("reward")  # a team reward: every motor gets it
            self._set(next_tensordict, g0, "reward", root.unsqueeze(-2).expand(*root.shape[:-1], graph.n_agents, 1))
        for g in self.exposed:
            if g == g0:
                continue
            if g in self._routing:
                sources, w = self._routing[g]
                src = torch.cat([next_tensordict.get((s, "reward"))[..., 0] for s in sources], -1)
                reward = src @ w.to(src).T
            else:
                reward = torch.stack([self._vertex_reward(v, next_tensordict) for v in graph.groups[g]], -1)
            self._set(next_tensordict, g, "reward", reward.unsqueeze(-1))

    def _goal_rewards(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> None:
        for g, module in self.goal_rewards.items():
            obs = tensordict.get((g, "observation"), None)
            if obs is None:
                raise KeyError(f"LevelEnv: group {g!r}'s goal reward needs the step's ({g!r}, 'observation'), which "
                               "this step's input lacks (inside a batched env's worker?): put LevelEnv outside the "
                               "batched env.")
            instruction = tensordict.get((g, "instruction"), None)
            if instruction is None:  # no policy wrote one: the zero instruction, as _step carries it
                instruction = self._zeros(next_tensordict, g, self.dims[g]["instruction"])
            reward = module.compute(obs, instruction, next_tensordict.get((g, "observation")),
                                    next_tensordict.get((g, "reward")))
            self._set(next_tensordict, g, "vertex_reward", reward)

    def _vertex_reward(self, v, next_tensordict: TensorDictBase) -> torch.Tensor:
        graph = self.graph
        subs = graph.subordinates(v)
        values = torch.stack([
            next_tensordict.get((graph.group_of(s), "reward"))[..., graph.position(s)[1], 0] * share
            for s, share in zip(subs, graph.subordinate_shares(v))
        ], -1)
        psi = graph.attr(v, "psi")
        if psi == "sum":
            return values.sum(-1)
        if psi == "mean":
            return values.mean(-1)
        return psi(values)

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        if self.level is not None:
            self._observe(next_tensordict)
        self._route_rewards(next_tensordict)
        self._goal_rewards(tensordict, next_tensordict)
        self._expand_done(next_tensordict)
        dims = self.dims
        for g in self.exposed:
            if dims[g]["instruction"]:
                # a step's instruction rides into "next": the critic needs it there (the superior has not acted yet)
                instruction = tensordict.get((g, "instruction"), None)
                if instruction is None:
                    instruction = self._zeros(next_tensordict, g, dims[g]["instruction"])
                self._set(next_tensordict, g, "instruction", instruction)
        for g, k in self.periods.items():
            window = tensordict.get((g, "window_step"), None)
            if window is None:
                window = torch.zeros(*next_tensordict.batch_size, len(self.graph.groups[g]), 1, dtype=torch.long,
                                     device=next_tensordict.device)
            self._set(next_tensordict, g, "window_step", (window + 1) % k)
            # the action in force: the group's action where it is at hand; in a batched env's worker (which gets the
            # action and state specs' entries only) or under another policy, the state the composer's hold updated
            held = tensordict.get((g, "action"), None)
            if held is None:
                held = tensordict.get((g, "held_action"))
            self._set(next_tensordict, g, "held_action", held)
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        dims = self.dims
        if self.level is not None:
            self._observe(tensordict_reset)
        self._expand_done(tensordict_reset)
        for g in self.exposed:
            if dims[g]["instruction"]:
                self._set(tensordict_reset, g, "instruction", self._zeros(tensordict_reset, g, dims[g]["instruction"]))
        if self.periods:
            self._reset_windows(tensordict, tensordict_reset)
        return tensordict_reset

    def _reset_windows(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> None:
        # as StepCounter: a fresh window where the env resets ("_reset", or all), the running one elsewhere
        reset = tensordict.get("_reset", None) if tensordict is not None else None
        specs = self.container.observation_spec if self.container is not None else None
        for g in self.periods:
            shape = (*tensordict_reset.batch_size, len(self.graph.groups[g]))
            zero_window = torch.zeros(*shape, 1, dtype=torch.long, device=tensordict_reset.device)
            held_spec = specs[g, "held_action"] if specs is not None else None
            zero_held = (held_spec.zero() if held_spec is not None
                         else torch.zeros(*shape, self.graph.group_action_dim(g), device=tensordict_reset.device))
            window, held = zero_window, zero_held
            old_window = tensordict.get((g, "window_step"), None) if tensordict is not None else None
            old_held = tensordict.get((g, "held_action"), None) if tensordict is not None else None
            if reset is not None and old_window is not None and old_held is not None:
                fresh = reset.reshape(*tensordict_reset.batch_size, 1).to(tensordict_reset.device)
                window = torch.where(fresh.unsqueeze(-1), zero_window, old_window)
                mask = fresh.reshape(*fresh.shape, *([1] * (held.ndim - fresh.ndim)))
                held = torch.where(mask, zero_held, old_held)
            self._set(tensordict_reset, g, "window_step", window)
            self._set(tensordict_reset, g, "held_action", held)

    def _ensure_group(self, td: TensorDictBase, group: str) -> None:
        # a group's sub-tensordict carries the agent dimension, as the specs say
        if group not in td.keys():
            td.set(group, TensorDict(batch_size=(*td.batch_size, len(self.graph.groups[group])), device=td.device))

    def _set(self, td: TensorDictBase, group: str, field: str, value: torch.Tensor) -> None:
        self._ensure_group(td, group)
        td.set((group, field), value)

    def _zeros(self, td: TensorDictBase, group: str, dim: int) -> torch.Tensor:
        return torch.zeros(*td.batch_size, len(self.graph.groups[group]), dim, device=td.device)

    def clone(self) -> LevelEnv:
        """A copy without a parent env; its sizes are read again from the env it is put in."""
        out = super().clone()
        out._dims = None
        return out

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        # as TorchRL's env-only transforms (FORWARD_NOT_IMPLEMENTED): a replay buffer or a model cannot run it
        raise RuntimeError(
            "LevelEnv cannot be executed without a parent environment: it routes rewards and done flags of an env "
            "step, so use it inside a TransformedEnv (a replay buffer or a model cannot run it)."
        )
