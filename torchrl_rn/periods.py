"""Decision periods, in one place: a vertex group with period ``k > 1`` decides every ``k`` steps and holds its action
in between.

What each part of the library does with a period, and the maths it uses from here:

* the graph: the vertex attribute ``period`` (:meth:`~torchrl_rn.RNGraph.period`), per vertex or per level;
* :class:`~torchrl_rn.LevelEnv`: carries the window state ``window_step`` (:func:`next_window`, :func:`keep_unless_reset`)
  and the ``held_action`` as state entries;
* the policy: :class:`~torchrl_rn.modules.DecisionHold` keeps a fresh sample where the group decides
  (:func:`decided_at`, :func:`hold`), and :class:`~torchrl_rn.modules.SuperiorClock` tells subordinates the steps
  left (:func:`steps_left`);
* :class:`~torchrl_rn.GraphGAE` and :class:`~torchrl_rn.RNLoss`: semi-Markov credit over a decision's window
  (:func:`semi_markov_gae`, :func:`hold_decisions`), a group trained on its decision rows only
  (:func:`decision_rows`).
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase

from torchrl_rn.keys import KEYS, _expand_right

__all__ = ["next_window", "keep_unless_reset", "decided_at", "hold", "steps_left", "semi_markov_gae",
           "hold_decisions", "decided", "decision_rows"]


def next_window(window: torch.Tensor, period: int) -> torch.Tensor:
    """The window state after a step: steps since the last decision, ``0`` where the group decides next.

    Examples:
        >>> next_window(torch.tensor([0, 1, 2]), 3)
        tensor([1, 2, 0])
    """
    return (window + 1) % period


def keep_unless_reset(reset: torch.Tensor | None, fresh: torch.Tensor, old: torch.Tensor | None) -> torch.Tensor:
    """A state at a reset: ``fresh`` where the env resets (``reset``, ``[*B, 1]``, or everywhere without it), ``old``
    elsewhere (as TorchRL's ``StepCounter`` treats its count).

    Examples:
        >>> keep_unless_reset(torch.tensor([[True], [False]]), torch.zeros(2, 3, 1), torch.ones(2, 3, 1))[..., 0]
        tensor([[0., 0., 0.],
                [1., 1., 1.]])
    """
    if reset is None or old is None:
        return fresh
    mask = reset.reshape(*reset.shape[:-1], *([1] * (fresh.ndim - reset.ndim + 1))).to(fresh.device)
    return torch.where(mask, fresh, old)


def decided_at(window: torch.Tensor) -> torch.Tensor:
    """Where a group decides: its window state is 0."""
    return window == 0


def hold(action: torch.Tensor, held: torch.Tensor, decided: torch.Tensor) -> torch.Tensor:
    """The action in force: ``action`` where the group decides (``decided`` ``[*B, n]``), else the ``held`` one.

    Examples:
        >>> hold(torch.zeros(2, 1, 2), torch.ones(2, 1, 2), torch.tensor([[True], [False]]))[:, 0]
        tensor([[0., 0.],
                [1., 1.]])
    """
    return torch.where(_expand_right(decided, action), action, held.to(action.dtype))


def steps_left(steps: torch.Tensor, periods: torch.Tensor) -> torch.Tensor:
    """The steps left until the next decision as a fraction of the period: 1 on a decision step, ``1 / k`` on the
    window's last step (``steps``: window states, ``periods`` broadcast to them).

    Examples:
        >>> steps_left(torch.tensor([0.0, 4.0]), torch.tensor(5.0))
        tensor([1.0000, 0.2000])
    """
    return (periods - steps) / periods


def decided(tensordict: TensorDictBase, group: str) -> torch.Tensor:
    """Where ``group`` decided (``[*B, n, 1]``, bool): its ``decided`` entry, else its window state's zeros.

    Examples:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"boss": {"window_step": torch.tensor([[[0]], [[2]]])}}, [2])
        >>> decided(td, "boss").flatten()
        tensor([ True, False])
    """
    found = tensordict.get(KEYS.of(group, "decided"), None)
    if found is None:  # the env's window state says it too
        window = tensordict.get(KEYS.of(group, "window_step"), None)
        if window is None:
            raise KeyError(f"GraphGAE: group {group!r} has a decision period but the data has no ({group!r}, "
                           "'decided') (written by GraphComposer's policy) nor its ('window_step') state.")
        found = decided_at(window)
    return found.bool()


def decision_rows(tensordict: TensorDictBase, group: str) -> torch.Tensor:
    """The rows of ``tensordict`` (over its batch dimensions) where ``group`` decided: its vertices decide together.

    Examples:
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"boss": TensorDict({"decided": torch.tensor([[[True]], [[False]]])}, [2, 1])}, [2])
        >>> decision_rows(td, "boss")
        tensor([ True, False])
    """
    return decided(tensordict, group).reshape(*tensordict.batch_size, -1).any(-1)


def semi_markov_gae(gamma: float, lmbda: float, value: torch.Tensor, next_value: torch.Tensor, reward: torch.Tensor,
                    done: torch.Tensor, terminated: torch.Tensor, decided: torch.Tensor, *,
                    time_dim: int = -2) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the decision steps of a vertex that holds its decisions (see the module docstring).

    All tensors share one shape with time at ``time_dim``; ``decided`` marks the steps where a decision was taken.
    A window ends where the episode ends (``done``), before the next decision, or at the batch's last step. Each
    step ``t`` gets ``Z_t = r_t + gamma * Z_{t+1}`` inside a window and, at a window's last step ``e``,
    ``Z_e = r_e + gamma * (1 - terminated_e) * V'_e + gamma * lmbda * (1 - done_e) * A_{e+1}`` with ``A_{e+1}`` the
    next decision's advantage (0 after the batch's last step), so that a decision step ``t`` gets
    ``A_t = Z_t - V_t``. With a decision every step this is TorchRL's GAE (``vec_generalized_advantage_estimate``).

    Returns:
        ``(advantage, value_target)``: ``Z_t - V_t`` and ``Z_t`` at decision steps, ``0`` and ``V_t`` elsewhere.

    Examples:
        >>> t = lambda *x: torch.tensor(x, dtype=torch.float).view(-1, 1)
        >>> f = lambda *x: torch.tensor(x, dtype=torch.bool).view(-1, 1)
        >>> adv, target = semi_markov_gae(0.5, 1.0, t(0, 0, 0), t(0, 0, 4), t(1, 1, 1), f(0, 0, 0), f(0, 0, 0),
        ...                               f(1, 0, 0), time_dim=0)
        >>> adv.flatten(), target.flatten()  # 1 + 0.5 + 0.25 + 0.125 * 4
        (tensor([2.2500, 0.0000, 0.0000]), tensor([2.2500, 0.0000, 0.0000]))
    """
    time_dim = time_dim % value.ndim
    steps = value.shape[time_dim]
    values, next_values, rewards = value.unbind(time_dim), next_value.unbind(time_dim), reward.unbind(time_dim)
    dones, terms = done.bool().unbind(time_dim), terminated.bool().unbind(time_dim)
    decided = decided.bool().expand_as(value)
    decisions = decided.unbind(time_dim)
    out: list[torch.Tensor] = [None] * steps  # type: ignore[list-item]
    for t in reversed(range(steps)):
        if t == steps - 1:
            ends, following, next_adv = torch.ones_like(dones[t]), next_values[t], torch.zeros_like(values[t])
        else:
            ends, following, next_adv = dones[t] | decisions[t + 1], out[t + 1], out[t + 1] - values[t + 1]
        at_end = ((~terms[t]).to(value.dtype) * next_values[t]
                  + lmbda * (~dones[t]).to(value.dtype) * next_adv)
        out[t] = rewards[t] + gamma * torch.where(ends, at_end, following)
    returns = torch.stack(out, time_dim)
    target = torch.where(decided, returns, value)
    return target - value, target


def hold_decisions(value: torch.Tensor, decided: torch.Tensor, done: torch.Tensor, *, time_dim: int) -> torch.Tensor:
    """Each step's value of the decision in force: ``value`` at the last decision step at or before it, in the same
    episode; 0 where no decision of the episode lies in the data (a batch that starts mid-window).

    ``decided`` and ``done`` broadcast to ``value``; an episode starts after a ``done`` step.

    Examples:
        >>> v = torch.tensor([1.0, 9.0, 2.0, 9.0, 9.0])
        >>> hold_decisions(v, torch.tensor([True, False, True, False, False]),
        ...                torch.tensor([False, False, False, True, False]), time_dim=0)
        tensor([1., 1., 2., 2., 0.])
    """
    time_dim = time_dim % value.ndim
    decided = decided.bool().expand_as(value)
    done = done.bool().expand_as(value)
    steps = value.shape[time_dim]
    starts = torch.zeros_like(done)
    starts.narrow(time_dim, 1, steps - 1).copy_(done.narrow(time_dim, 0, steps - 1))  # the step after a done
    marker = decided | starts
    shape = [1] * value.ndim
    shape[time_dim] = steps
    index = torch.arange(steps, device=value.device).view(shape).expand_as(value)
    last = torch.where(marker, index, torch.full_like(index, -1)).cummax(time_dim).values
    picked = last.clamp_min(0)
    held = value.gather(time_dim, picked)
    valid = (last >= 0) & decided.gather(time_dim, picked)
    return torch.where(valid, held, torch.zeros_like(held))
