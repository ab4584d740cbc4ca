"""Modules of a group's decisions: a goal warm-up (:class:`RandomGoals`), a decision period's hold
(:class:`DecisionHold`) and the superiors' clock (:class:`SuperiorClock`)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn

from torchrl_rn.keys import KEYS, NestedKey, _expand_right
from torchrl_rn.periods import decided_at, hold, steps_left

__all__ = ["RandomGoals", "DecisionHold", "SuperiorClock"]


class RandomGoals(TensorDictModuleBase):
    """A goal warm-up: while :attr:`active`, a group's action is replaced by a uniform sample of its action space.

    Feudal hierarchies pre-train their workers on random goals before the manager learns to set them (Ahilan and
    Dayan, arXiv 1901.08492). Placed after a superior group's actor and before its :class:`DecisionHold` (so a random
    goal is held over the decision window like a sampled one), it lets goal-rewarded subordinates learn to reach
    goals before their superiors' goals mean anything. The replaced actions are not the group's policy's, so
    :class:`~torchrl_rn.RNLoss` does not train the group while it is active (its loss terms are 0). Inactive (the
    default) it changes nothing and draws no random numbers. ``active`` is a buffer, so it travels with the policy's
    weights to collector workers.

    Args:
        group (str): the group whose action is replaced.
        low, high (tensor): bounds of the group's action space (``[-1, 1]`` for a manager).

    Examples:
        >>> from tensordict import TensorDict
        >>> warmup = RandomGoals("boss", torch.full((2,), -1.0), torch.full((2,), 1.0))
        >>> td = TensorDict({"boss": TensorDict({"action": torch.full((3, 1, 2), 5.0)}, [3, 1])}, [3])
        >>> bool((warmup(td.clone())["boss", "action"] == 5).all())  # inactive: unchanged
        True
        >>> warmup.active.fill_(True)
        tensor(True)
        >>> bool((warmup(td.clone())["boss", "action"].abs() <= 1).all())
        True
    """

    def __init__(self, group: str, low: torch.Tensor, high: torch.Tensor) -> None:
        super().__init__()
        self.group = group
        self.in_keys = [KEYS.of(group, "action")]
        self.out_keys = [KEYS.of(group, "action")]
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float), persistent=False)
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float), persistent=False)
        self.register_buffer("active", torch.zeros((), dtype=torch.bool), persistent=False)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if bool(self.active):
            key = self.out_keys[0]
            action = tensordict.get(key)
            noise = torch.rand(action.shape, dtype=action.dtype, device=action.device)
            tensordict.set(key, self.low.to(action) + (self.high - self.low).to(action) * noise)
        return tensordict


class DecisionHold(TensorDictModuleBase):
    """Holds a group's action between its decisions (a decision period ``k > 1``).

    Placed after the group's actor: where ``(group, "window_step")`` (a state entry of
    :class:`~torchrl_rn.LevelEnv`) is 0 the group decides and its fresh sample is kept; elsewhere its action is
    the ``(group, "held_action")`` in force and its log-probability 0 (a held action is deterministic). Writes
    ``(group, "decided")`` (bool, ``[*B, n, 1]``) and sets ``(group, "held_action")`` to the action in force: the one
    writer of that state, which LevelEnv carries to the next step (a state entry reaches the workers of batched envs,
    where an action of a non-motor group does not). Data without a ``window_step`` decide everywhere.

    Args:
        group (str): the group.
        log_prob_key (nested key): where the actor writes its log-probability.

    Examples:
        >>> from tensordict import TensorDict
        >>> hold = DecisionHold("boss", ("boss", "action_log_prob"))
        >>> td = TensorDict({"boss": TensorDict({
        ...     "window_step": torch.tensor([[[0]], [[3]]]), "held_action": torch.full((2, 1, 2), 0.5),
        ...     "action": torch.zeros(2, 1, 2), "action_log_prob": torch.ones(2, 1)}, [2, 1])}, [2])
        >>> out = hold(td)
        >>> out["boss", "action"][:, 0], out["boss", "action_log_prob"][:, 0], out["boss", "decided"].flatten()
        (tensor([[0.0000, 0.0000],
                [0.5000, 0.5000]]), tensor([1., 0.]), tensor([ True, False]))
    """

    def __init__(self, group: str, log_prob_key: NestedKey) -> None:
        super().__init__()
        self.group = group
        self.log_prob_key = log_prob_key
        window, held, action, decided = (KEYS.of(group, name) for name in ("window_step", "held_action", "action",
                                                                             "decided"))
        self.in_keys = [window, held, action, log_prob_key]
        self.out_keys = [action, log_prob_key, decided, held]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        window_key, held_key, action_key, _ = self.in_keys
        action = tensordict.get(action_key)
        window = tensordict.get(window_key, None)
        if window is None:
            decided = torch.ones(*tensordict.get(self.group).batch_size, 1, dtype=torch.bool, device=action.device)
        else:
            decided = decided_at(window)
        tensordict.set(self.out_keys[2], decided)
        if window is None:
            return tensordict
        held = tensordict.get(held_key)
        keep = decided[..., 0]  # [*B, n]
        action = hold(action, held, keep)
        tensordict.set(action_key, action)
        tensordict.set(held_key, action.to(held.dtype))
        log_prob = tensordict.get(self.log_prob_key, None)
        if log_prob is not None:
            tensordict.set(self.log_prob_key, torch.where(_expand_right(keep, log_prob), log_prob,
                                                          torch.zeros_like(log_prob)))
        return tensordict


class SuperiorClock(nn.Module):
    """The steps left until each superior group's next decision, as a fraction of its period, for every vertex.

    Reads each superior group's ``window_step`` (``[*B, n_s, 1]``; a group's vertices decide together) and returns
    ``(k - window_step) / k`` per superior group (1 on the step it decides, ``1 / k`` on the last step of its window),
    broadcast over the ``n`` vertices of the subordinate group: ``[*B, n, len(periods)]``.

    Examples:
        >>> clock = SuperiorClock([5], n=2)
        >>> clock(torch.tensor([[[0]], [[4]]]))[..., 0]
        tensor([[1.0000, 1.0000],
                [0.2000, 0.2000]])
    """

    def __init__(self, periods: Sequence[int], n: int) -> None:
        super().__init__()
        self.register_buffer("periods", torch.tensor(list(periods), dtype=torch.float), persistent=False)
        self.n = n

    def forward(self, *windows: torch.Tensor) -> torch.Tensor:
        steps = torch.cat([w[..., 0, :] for w in windows], -1).to(self.periods)  # [*B, S]
        left = steps_left(steps, self.periods)
        return left.unsqueeze(-2).expand(*left.shape[:-1], self.n, left.shape[-1])
