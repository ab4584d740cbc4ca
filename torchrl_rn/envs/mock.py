"""Envs for tests and quick tutorials: a tiny deterministic multi-agent env, and a single-agent env's entries put in a
one-agent group."""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase, Transform

from torchrl_rn.keys import ENV_GROUP

__all__ = ["MockMultiAgentEnv", "SingleAgentGroup"]


class SingleAgentGroup(Transform):
    """Puts a single-agent env's ``observation``, ``reward`` and ``action`` in a one-agent group ``"agents"``.

    ``observation`` ``[*B, obs]`` becomes ``("agents", "observation")`` ``[*B, 1, obs]``, ``reward`` ``[*B, 1]``
    becomes ``("agents", "reward")`` ``[*B, 1, 1]``, and the policy writes ``("agents", "action")`` ``[*B, 1, ...]``,
    which the env receives as ``action`` ``[*B, ...]``. Done flags stay at the root.

    Args:
        group (str): the group's name.

    Examples:
        >>> import gymnasium as gym
        >>> from torchrl.envs import GymWrapper, TransformedEnv
        >>> env = TransformedEnv(GymWrapper(gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync",
        ...     vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED})), SingleAgentGroup())
        >>> env.rollout(3)["next", "agents", "reward"].shape
        torch.Size([2, 3, 1, 1])
    """

    def __init__(self, group: str = ENV_GROUP) -> None:
        super().__init__(in_keys=["observation", "reward"], out_keys=[(group, "observation"), (group, "reward")],
                         in_keys_inv=["action"], out_keys_inv=[(group, "action")])
        self.group = group

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        group = tensordict.get(self.group, None)
        if group is None:
            group = tensordict.empty(batch_size=(*tensordict.batch_size, 1))
        for key, out_key in zip(self.in_keys, self.out_keys):
            if key in tensordict.keys():
                group.set(out_key[-1], tensordict.pop(key).unsqueeze(tensordict.batch_dims))
        return tensordict.set(self.group, group)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.pop((self.group, "action")).squeeze(tensordict.batch_dims)
        return tensordict.set("action", action)

    def _grouped(self, spec: Composite, key: str) -> Composite:
        leaf = spec.pop(key)
        return Composite({key: leaf.unsqueeze(spec.ndim)}, shape=(*spec.shape, 1), device=leaf.device)

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        for parent, key in (("full_observation_spec", "observation"), ("full_reward_spec", "reward")):
            output_spec[parent][self.group] = self._grouped(output_spec[parent], key)
        return output_spec

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        input_spec["full_action_spec"][self.group] = self._grouped(input_spec["full_action_spec"], "action")
        return input_spec


class MockMultiAgentEnv(EnvBase):
    """A tiny deterministic multi-agent env, laid out like VMAS, for tests and quick runs.

    Each episode, agent ``k`` gets a target (drawn from the env's own seeded generator) that it sees in its
    observation and should play:

    * continuous: target ``t_k`` in ``[-1, 1]^action_dim``; reward ``(k + 1) * (1 - mean|a_k - t_k|)``;
    * discrete: target class ``c_k`` in ``[0, n_actions)``; reward ``(k + 1) * [a_k == c_k]``.

    The observation of agent ``k`` holds the target (scaled to ``[-1, 1]`` for a class) then ``k / n_agents``,
    zero-padded or truncated to ``obs_dim``. So an agent playing its target earns exactly ``k + 1`` per step, and the
    task is a contextual bandit a policy learns in a few thousand frames. Episodes end (``done = terminated``) after
    ``max_steps`` steps.

    Keys: ``("agents", "observation")`` ``[B, n, obs_dim]``, ``("agents", "action")`` ``[B, n, action_dim]``
    (``Bounded(-1, 1)``) or ``[B, n]`` (``Categorical``), ``("agents", "reward")`` ``[B, n, 1]``, root ``done`` and
    ``terminated`` ``[B, 1]``.

    Args:
        n_agents (int): number of agents.

    Keyword Args:
        num_envs (int): batch size. obs_dim (int): observation size (>= action_dim to see the whole target).
        action_dim (int): continuous action size. discrete (bool): discrete actions. n_actions (int): their number.
        max_steps (int): episode length. device: where tensors live. seed (int, optional): seeds the targets.

    Examples:
        >>> env = MockMultiAgentEnv(3, num_envs=2, seed=0)
        >>> td = env.reset()
        >>> td["agents", "action"] = td["agents", "observation"][..., :2]
        >>> env.step(td)["next", "agents", "reward"][0, :, 0]
        tensor([1., 2., 3.])
    """

    batch_locked = True

    def __init__(self, n_agents: int = 3, *, num_envs: int = 8, obs_dim: int = 3, action_dim: int = 2,
                 discrete: bool = False, n_actions: int = 3, max_steps: int = 5, device="cpu",
                 seed: int | None = None) -> None:
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        if n_agents < 1:
            raise ValueError(f"MockMultiAgentEnv needs n_agents >= 1, got {n_agents}.")
        self.n_agents, self.obs_dim, self.action_dim = n_agents, obs_dim, action_dim
        self.discrete, self.n_actions, self.max_steps = discrete, n_actions, max_steps
        shape = (num_envs, n_agents)
        self.full_observation_spec = Composite(
            agents=Composite(observation=Unbounded((*shape, obs_dim), device=device), shape=shape, device=device),
            shape=(num_envs,), device=device,
        )
        action = (Categorical(n_actions, shape, device=device) if discrete
                  else Bounded(-1.0, 1.0, (*shape, action_dim), device=device))
        self.full_action_spec = Composite(agents=Composite(action=action, shape=shape, device=device),
                                          shape=(num_envs,), device=device)
        self.full_reward_spec = Composite(agents=Composite(reward=Unbounded((*shape, 1), device=device), shape=shape,
                                                           device=device), shape=(num_envs,), device=device)
        self.full_done_spec = Composite(
            done=Categorical(2, (num_envs, 1), dtype=torch.bool, device=device),
            terminated=Categorical(2, (num_envs, 1), dtype=torch.bool, device=device),
            shape=(num_envs,), device=device,
        )
        self.rng = torch.Generator(device="cpu")
        self._set_seed(seed)
        self.target = torch.zeros(num_envs, n_agents, 1 if discrete else action_dim)
        self.count = torch.zeros(num_envs, dtype=torch.long)
        self._agent_batch = torch.Size(shape)

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:  # one draw from the global generator: reproducible under torch.manual_seed, never reseeds it
            seed = int(torch.randint(2**62, ()).item())
        self.rng.manual_seed(int(seed))

    def _draw(self, n: int) -> torch.Tensor:
        if self.discrete:
            return torch.randint(self.n_actions, (n, self.n_agents, 1), generator=self.rng).float()
        return torch.rand(n, self.n_agents, self.action_dim, generator=self.rng) * 2 - 1

    def _observation(self) -> torch.Tensor:
        seen = self.target * 2 / max(self.n_actions - 1, 1) - 1 if self.discrete else self.target
        index = (torch.arange(self.n_agents) / self.n_agents).expand(self.batch_size[0], -1).unsqueeze(-1)
        obs = torch.cat([seen, index], -1)
        obs = torch.nn.functional.pad(obs, (0, max(self.obs_dim - obs.shape[-1], 0)))[..., : self.obs_dim]
        return obs.to(self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        mask = torch.ones(self.batch_size, dtype=torch.bool)
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict.get("_reset").reshape(self.batch_size).cpu()
        self.target[mask] = self._draw(int(mask.sum()))
        self.count[mask] = 0
        flag = torch.zeros(*self.batch_size, 1, dtype=torch.bool, device=self.device)
        agents = TensorDict({"observation": self._observation()}, batch_size=self._agent_batch, device=self.device)
        return TensorDict({"agents": agents, "done": flag, "terminated": flag.clone()},
                          batch_size=self.batch_size, device=self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(("agents", "action")).cpu()
        weight = torch.arange(1, self.n_agents + 1, dtype=torch.float32)
        if self.discrete:
            hit = (action.reshape(self.target.shape[:-1]) == self.target[..., 0]).float()
            reward = weight * hit
        else:
            reward = weight * (1 - (action - self.target).abs().mean(-1))
        self.count += 1
        done = (self.count >= self.max_steps).unsqueeze(-1).to(self.device)
        agents = TensorDict({"observation": self._observation(), "reward": reward.unsqueeze(-1).to(self.device)},
                            batch_size=self._agent_batch, device=self.device)
        return TensorDict({"agents": agents, "done": done, "terminated": done.clone()},
                          batch_size=self.batch_size, device=self.device)
