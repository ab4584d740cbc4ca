"""Episode returns of a rollout or a collected batch ``[E, T]``: the one definition of "first episode" that training's
evaluation, ``rn eval`` and ``rn show`` share."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase

__all__ = ["first_episode_mask", "episode_returns", "ended_episode_return"]


def first_episode_mask(td: TensorDictBase) -> torch.Tensor:
    """``[E, T]`` booleans: the steps of each env's first episode, up to and including its first done.

    Examples:
        >>> from tensordict import TensorDict
        >>> done = torch.tensor([[False, True, False], [False, False, False]]).unsqueeze(-1)
        >>> first_episode_mask(TensorDict({"next": {"done": done}}, [2, 3])).tolist()
        [[True, True, False], [True, True, True]]
    """
    done = td.get(("next", "done")).squeeze(-1).int()
    return (done.cumsum(-1) - done) == 0


def episode_returns(td: TensorDictBase) -> torch.Tensor:
    """Return of each env's first episode in a rollout ``[E, T]``: the agents' mean reward summed to the first done.

    Examples:
        >>> from tensordict import TensorDict
        >>> reward = torch.ones(2, 3, 2, 1)  # 2 envs, 3 steps, 2 agents
        >>> done = torch.tensor([[False, True, False], [False, False, False]]).unsqueeze(-1)
        >>> episode_returns(TensorDict({"next": {"agents": {"reward": reward}, "done": done}}, [2, 3])).tolist()
        [2.0, 3.0]
    """
    reward = td.get(("next", "agents", "reward")).mean(-2).squeeze(-1)  # [E, T]
    return (reward * first_episode_mask(td)).sum(-1)


def ended_episode_return(data: TensorDictBase) -> float:
    """Mean (over agents) return of the episodes that ended in a collected batch (its ``("agents",
    "episode_reward")`` at their done, from TorchRL's ``RewardSum``); NaN if none did.

    Examples:
        >>> from tensordict import TensorDict
        >>> done = torch.tensor([[False, True], [False, False]]).unsqueeze(-1)
        >>> total = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1).expand(2, 2, 2, 1)
        >>> ended_episode_return(TensorDict({"next": {"agents": {"episode_reward": total}, "done": done}}, [2, 2]))
        2.0
    """
    done = data.get(("next", "done")).squeeze(-1)
    if not done.any():
        return float("nan")
    returns = data.get(("next", "agents", "episode_reward")).mean(-2).squeeze(-1)
    return returns[done].mean().item()
