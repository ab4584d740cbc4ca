"""``LevelEnv``: the environment as seen by the vertices of a Reinforcement Network.

The graph transform (``LevelEnv(graph)``, a :class:`~torchrl.envs.Transform`): every vertex group gets ``reward``,
``done`` and ``terminated``
  entries (``truncated`` too where the env has it; rewards routed up the DAG with ``psi``/``share``) and an
  ``instruction`` state entry that carries a step's instructions into its ``"next"`` data, so that a critic can be
  evaluated there. With the composed policy and a stock collector, a batch holds every vertex's data. The env's own
  per-agent entries are kept: a team reward or flag is written into a group only where the group has none (the
  rule of TorchRL's ``MultiAgentGAE`` and of BenchMARL), so PettingZoo's per-agent done flags pass through.
  A group with a decision period ``k > 1`` (:meth:`RNGraph.period`) also gets two state entries (in the
  observation and state specs, like TorchRL's ``StepCounter``, so collectors and batched envs carry them):
  ``window_step`` (steps since its last decision, ``0`` where it decides, ``(step + 1) % k`` after a step and ``0``
  after a reset, so an episode that ends mid-window starts a fresh one) and ``held_action`` (its last action, the
  instruction a :class:`~torchrl_rn.GraphComposer` policy repeats until the next decision: the policy's
  :class:`~torchrl_rn.modules.DecisionHold` sets it, the env carries it and starts it afresh at a reset).
TAG's view of one level is its own transform, :class:`~torchrl_rn.LevelView`.

A group whose reward function the env applies (:meth:`~torchrl_rn.rewards.VertexReward.env_module`: a
:class:`~torchrl_rn.rewards.GoalReward` of the motors) also gets ``("next", group, "vertex_reward")`` (a reward spec
entry), computed at every step by that module (a :class:`~torchrl_rn.rewards.GoalRewardModule` from the step's
observation and instruction and the next observation); the group's ``reward`` stays the task's (what ``psi`` routes
up and what evaluation reads) and :class:`~torchrl_rn.GraphGAE` trains the group on ``vertex_reward``. It needs the
step's observation, so put ``LevelEnv`` outside a batched env (on a ``SerialEnv``/``ParallelEnv``, not inside its
workers) when goals are used.
"""
from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import Transform

from torchrl_rn.graph import GraphError, RNGraph
from torchrl_rn.graph.validate import check_env_agents
from torchrl_rn.keys import DONE_FIELDS, KEYS, group_signal
from torchrl_rn.periods import keep_unless_reset, next_window

__all__ = ["LevelEnv"]


class LevelEnv(Transform):
    """Turns an env into the environment of a Reinforcement Network.

    Args:
        graph (RNGraph): the agent graph. Its motors' group must be the env's agent group.

    Raises:
        TypeError: ``level`` or ``lower_policy`` given (TAG's view of one level is :class:`~torchrl_rn.LevelView`).

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
    """

    def __init__(self, graph: RNGraph, **tag_view: Any) -> None:
        if tag_view:
            raise TypeError(f"LevelEnv takes no {', '.join(sorted(tag_view))}: TAG's one-level view is its own "
                            "transform, LevelView(graph, level=l, lower_policy=composer).")
        super().__init__()
        self.graph = graph
        #: the groups this transform writes entries for (every group; a LevelView: one level)
        self.exposed = list(graph.groups)
        #: groups with a decision period > 1 and their periods
        self.periods = {g: graph.period(g) for g in self.exposed if graph.period(g) > 1}
        #: the module of each group whose reward function the env applies (it writes ("next", group, "vertex_reward"))
        self.goal_rewards = torch.nn.ModuleDict({g: r.env_module(graph, g) for g, r in graph.env_rewards.items()})
        self._dims: dict | None = None
        self._routing = {}
        for g in self.exposed:
            if g != graph.env_group and not any(callable(graph.attr(v, "psi")) for v in graph.groups[g]):
                self._routing[g] = graph.reward_weights(g)

    # ------------------------------------------------------------------ specs
    @property
    def dims(self) -> dict:
        """:meth:`RNGraph.dims` for the wrapped env's observation size."""
        if self._dims is None:
            self._set_dims(self.parent.full_observation_spec)  # the spec this transform receives
        return self._dims

    def _set_dims(self, observation_spec: Composite) -> dict:
        if self._dims is None:
            key = KEYS.of(self.graph.env_group, "observation")
            if key not in observation_spec.keys(True, True):
                raise KeyError(
                    f"LevelEnv: the env has no {key} observation; the graph's motors' group "
                    f"{self.graph.env_group!r} must be the env's agent group."
                )
            shape = observation_spec[key].shape
            check_env_agents(self.graph, shape[-2] if len(shape) > 1 else 1, self.parent)
            self._dims = self.graph.dims(shape[-1])
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
        for g in self.goal_rewards:
            try:
                self.graph.group_reward(g).check_observation(g, dims[g]["observation"])
            except ValueError as err:
                raise GraphError(str(err)) from None
        for g in self.exposed:
            make = self._observation_specs(g, observation_spec, dims, device)
            if dims[g]["instruction"]:
                make[KEYS.instruction] = lambda s, n=dims[g]["instruction"]: Bounded(-1.0, 1.0, shape=(*s, n),
                                                                                      device=device)
            make.update(self._period_specs(g, device))
            make.update(self._reward_state_specs(g, device))
            self._add_specs(observation_spec, g, make)
        return observation_spec

    def _observation_specs(self, group: str, observation_spec: Composite, dims: dict, device) -> dict:
        """Observation entries of ``group`` beyond its instruction and window state (none: the env's are kept)."""
        return {}

    def _period_specs(self, group: str, device, action_spec: Composite | None = None) -> dict:
        """The state entries of a group with a decision period (none for period 1).

        The motors' held action has the env's action spec: ``action_spec`` (the input spec's), else the parent env's;
        without either (a transform outside any env) it is left out.
        """
        k = self.periods.get(group)
        if k is None:
            return {}
        specs = {KEYS.window_step: lambda s: Categorical(k, shape=(*s, 1), dtype=torch.long, device=device)}
        if group == self.graph.env_group:
            if action_spec is None and self.parent is not None:
                action_spec = self.parent.full_action_spec
            if action_spec is not None:
                action = action_spec[group, KEYS.action]
                specs[KEYS.held_action] = lambda s: action.clone().expand(*s, *action.shape[len(s):]).to(device)
        else:
            n = self.graph.group_action_dim(group)
            specs[KEYS.held_action] = lambda s: Bounded(-1.0, 1.0, shape=(*s, n), device=device)
        return specs

    def _reward_state_specs(self, group: str, device) -> dict:
        """The state entries the group's env-applied reward carries between steps (a direction reward's window
        origins), if any."""
        module = self.goal_rewards[group] if group in self.goal_rewards else None
        return {field: lambda s, n=size: Unbounded(shape=(*s, n), device=device)
                for field, size in (module.state.items() if module is not None else ())}

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        device = reward_spec.device
        for g in self.exposed:
            make = {KEYS.reward: lambda s: Unbounded(shape=(*s, 1), device=device)}
            if g in self.goal_rewards:
                make[KEYS.vertex_reward] = make[KEYS.reward]
            self._add_specs(reward_spec, g, make)
        return reward_spec

    def transform_done_spec(self, done_spec: Composite) -> Composite:
        device = done_spec.device
        flags = [key for key in DONE_FIELDS if key in done_spec.keys()]  # the team flags the env has
        for g in self.exposed:
            self._add_specs(done_spec, g, {
                key: lambda s: Categorical(2, shape=(*s, 1), dtype=torch.bool, device=device) for key in flags
            })
        return done_spec

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        states = {g: self._reward_state_specs(g, input_spec.device) for g in self.goal_rewards}
        states = {g: make for g, make in states.items() if make}
        if self.periods or states:  # the window state is an input of the next step too (as StepCounter's step_count)
            if input_spec.get("full_state_spec", None) is None:
                input_spec["full_state_spec"] = Composite(shape=input_spec.shape, device=input_spec.device)
            for g in self.periods:
                self._add_specs(input_spec["full_state_spec"], g,
                                self._period_specs(g, input_spec.device, input_spec["full_action_spec"]))
            for g, make in states.items():
                self._add_specs(input_spec["full_state_spec"], g, make)
        return input_spec

    # ------------------------------------------------------------------ data
    def _observe(self, next_tensordict: TensorDictBase) -> None:
        """Observations of the exposed groups beyond the env's (none here)."""

    def _expand_done(self, next_tensordict: TensorDictBase) -> None:
        # a team flag reaches a group only where the group has none: per-agent flags the env gives (PettingZoo
        # keeps them in the group) pass through, as in TorchRL's MultiAgentGAE and BenchMARL ("only if missing")
        for key in DONE_FIELDS:
            if next_tensordict.get(key, None) is None:
                continue
            for g in self.exposed:
                if next_tensordict.get((g, key), None) is None:
                    # a copy, not an expanded view: a collector's reset writes into these flags in place
                    flags = group_signal(next_tensordict, g, key, len(self.graph.groups[g])).clone()
                    self._set(next_tensordict, g, key, flags)

    def _route_rewards(self, next_tensordict: TensorDictBase) -> None:
        graph, g0 = self.graph, self.graph.env_group
        if g0 in self.exposed and KEYS.of(g0, "reward") not in next_tensordict.keys(True, True):
            # a team reward: every motor gets it
            self._set(next_tensordict, g0, KEYS.reward, group_signal(next_tensordict, g0, KEYS.reward, graph.n_agents))
        for g in self.exposed:
            if g == g0:
                continue
            if g in self._routing:
                sources, w = self._routing[g]
                src = torch.cat([next_tensordict.get(KEYS.of(s, "reward"))[..., 0] for s in sources], -1)
                reward = src @ w.to(src).T
            else:
                reward = torch.stack([self._vertex_reward(v, next_tensordict) for v in graph.groups[g]], -1)
            self._set(next_tensordict, g, KEYS.reward, reward.unsqueeze(-1))

    def _goal_rewards(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> None:
        for g, module in self.goal_rewards.items():
            obs = tensordict.get(KEYS.of(g, "observation"), None)
            if obs is None:
                raise KeyError(f"LevelEnv: group {g!r}'s goal reward needs the step's ({g!r}, 'observation'), which "
                               "this step's input lacks (inside a batched env's worker?): put LevelEnv outside the "
                               "batched env.")
            instruction = tensordict.get(KEYS.of(g, "instruction"), None)
            if instruction is None:  # no policy wrote one: the zero instruction, as _step carries it
                instruction = self._zeros(next_tensordict, g, self.dims[g]["instruction"])
            module.env_step(tensordict, next_tensordict, obs, instruction)

    def _vertex_reward(self, v, next_tensordict: TensorDictBase) -> torch.Tensor:
        graph = self.graph
        subs = graph.subordinates(v)
        values = torch.stack([
            next_tensordict.get(KEYS.of(graph.group_of(s), "reward"))[..., graph.position(s)[1], 0] * share
            for s, share in zip(subs, graph.subordinate_shares(v))
        ], -1)
        psi = graph.attr(v, "psi")
        if psi == "sum":
            return values.sum(-1)
        if psi == "mean":
            return values.mean(-1)
        return psi(values)

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        self._observe(next_tensordict)
        self._route_rewards(next_tensordict)
        self._goal_rewards(tensordict, next_tensordict)
        self._expand_done(next_tensordict)
        dims = self.dims
        for g in self.exposed:
            if dims[g]["instruction"]:
                # a step's instruction rides into "next": the critic needs it there (the superior has not acted yet)
                instruction = tensordict.get(KEYS.of(g, "instruction"), None)
                if instruction is None:
                    instruction = self._zeros(next_tensordict, g, dims[g]["instruction"])
                self._set(next_tensordict, g, KEYS.instruction, instruction)
        for g, k in self.periods.items():
            window = tensordict.get(KEYS.of(g, "window_step"), None)
            if window is None:
                window = torch.zeros(*next_tensordict.batch_size, len(self.graph.groups[g]), 1, dtype=torch.long,
                                     device=next_tensordict.device)
            self._set(next_tensordict, g, KEYS.window_step, next_window(window, k))
            # the action in force, as the policy's DecisionHold set it (the state reaches a batched env's workers,
            # where a non-motor group's action does not): carried into the next step
            self._set(next_tensordict, g, KEYS.held_action, tensordict.get(KEYS.of(g, "held_action")))
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        dims = self.dims
        self._observe(tensordict_reset)
        self._expand_done(tensordict_reset)
        for g in self.exposed:
            if dims[g]["instruction"]:
                self._set(tensordict_reset, g, KEYS.instruction,
                          self._zeros(tensordict_reset, g, dims[g]["instruction"]))
        if self.periods:
            self._reset_windows(tensordict, tensordict_reset)
        self._reset_reward_states(tensordict, tensordict_reset)
        return tensordict_reset

    def _reset_reward_states(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> None:
        # zeros where the env resets ("_reset", or all), the running state elsewhere (as the windows)
        reset = self._reset_mask(tensordict, tensordict_reset)
        for g, module in self.goal_rewards.items():
            for field, size in module.state.items():
                old = tensordict.get((g, field), None) if tensordict is not None else None
                self._set(tensordict_reset, g, field, keep_unless_reset(reset, self._zeros(tensordict_reset, g, size),
                                                                        old))

    @staticmethod
    def _reset_mask(tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> torch.Tensor | None:
        """The envs that reset (``"_reset"`` as ``[*B, 1]``), or ``None`` (all of them)."""
        reset = tensordict.get("_reset", None) if tensordict is not None else None
        return None if reset is None else reset.reshape(*tensordict_reset.batch_size, 1).to(tensordict_reset.device)

    def _reset_windows(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> None:
        # as StepCounter: a fresh window where the env resets ("_reset", or all), the running one elsewhere
        reset = self._reset_mask(tensordict, tensordict_reset)
        specs = self.container.observation_spec if self.container is not None else None
        for g in self.periods:
            shape = (*tensordict_reset.batch_size, len(self.graph.groups[g]))
            zero_window = torch.zeros(*shape, 1, dtype=torch.long, device=tensordict_reset.device)
            held_spec = specs[g, KEYS.held_action] if specs is not None else None
            zero_held = (held_spec.zero() if held_spec is not None
                         else torch.zeros(*shape, self.graph.group_action_dim(g), device=tensordict_reset.device))
            old_window = tensordict.get(KEYS.of(g, "window_step"), None) if tensordict is not None else None
            old_held = tensordict.get(KEYS.of(g, "held_action"), None) if tensordict is not None else None
            if old_window is None or old_held is None:
                old_window = old_held = None  # without both, a fresh window
            self._set(tensordict_reset, g, KEYS.window_step, keep_unless_reset(reset, zero_window, old_window))
            self._set(tensordict_reset, g, KEYS.held_action, keep_unless_reset(reset, zero_held, old_held))

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
