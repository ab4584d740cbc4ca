"""``GraphGAE``: the graph-aware advantage estimator of a Reinforcement Network.

Per-vertex GAE from per-vertex rewards, values and dones, then mixed along the DAG so that a vertex's advantage
also credits the vertices it collaborates with::

    A_i <- (1 - beta) * A_i + beta * mean_{j in N(i)} A_j

``beta = 0`` is TorchRL's GAE for every vertex. The critics' targets stay the unmixed returns ``A_i + V_i``: mixing
changes what each policy is credited with, not what each critic predicts.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.objectives.value import ValueEstimatorBase
from torchrl.objectives.value.functional import vec_generalized_advantage_estimate

from torchrl_rn.graph import RNGraph

__all__ = ["GraphGAE"]


class GraphGAE(ValueEstimatorBase):
    """Per-vertex GAE mixed along the agent graph.

    Reads, for every group ``g`` of the graph, ``("next", g, "reward")`` and ``("next", g, "done" | "terminated")``
    (falling back to the root ``done``/``terminated``, broadcast over the group, as VMAS writes them), and writes
    ``(g, "state_value")``, ``(g, "advantage")`` and ``(g, "value_target")``. The field names are the estimator's
    ``tensor_keys`` (``set_keys(advantage="adv")`` renames the field in every group).

    Args:
        graph (RNGraph): the agent graph.

    Keyword Args:
        gamma (float): discount. lmbda (float): GAE lambda.
        value_network (TensorDictModule): the graph critic, e.g. :attr:`GraphComposer.critic`; it must write
            every group's ``state_value`` from a step's data and from its ``"next"`` data.
        beta (float): mixing weight in ``[0, 1]``; ``0`` (default) is plain per-vertex GAE.
        neighbourhood (str or Tensor): ``"both"`` (superiors and subordinates, default), ``"up"``, ``"down"``, or an
            ``[N, N]`` weight matrix in :attr:`RNGraph.vertex_order` whose row ``i`` weights ``A_j`` in ``i``'s mix
            (rows are used as given; a zero row leaves that vertex unmixed).
        differentiable (bool): keep gradients through the value network. Defaults to ``False``.
        device: where the mixing matrix lives.

    The ``params``/``target_params`` that TorchRL losses pass are ignored: values come from ``value_network``
    itself (a per-group loss only holds its own group's value head, not the graph critic).

    Examples:
        >>> import torch
        >>> from torchrl.envs import TransformedEnv
        >>> from torchrl_rn import GraphComposer, GraphGAE, LevelEnv, RNGraph
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> graph = RNGraph.tree(4, branching=[2])
        >>> env = TransformedEnv(MockMultiAgentEnv(4, num_envs=2), LevelEnv(graph))
        >>> composer = GraphComposer(graph, env, num_cells=16)
        >>> data = env.rollout(5, composer.policy)
        >>> gae = GraphGAE(graph, gamma=0.99, lmbda=0.95, value_network=composer.critic, beta=0.5)
        >>> gae(data)["level1", "advantage"].shape
        torch.Size([2, 5, 2, 1])
    """

    def __init__(
        self,
        graph: RNGraph,
        *,
        gamma: float,
        lmbda: float,
        value_network: TensorDictModuleBase,
        beta: float = 0.0,
        neighbourhood: str | torch.Tensor = "both",
        differentiable: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(value_network=value_network, differentiable=differentiable, device=device)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}.")
        self.graph = graph
        self.gamma, self.lmbda, self.beta = gamma, lmbda, beta
        n = len(graph.vertex_order)
        if isinstance(neighbourhood, torch.Tensor):
            if neighbourhood.shape != (n, n):
                raise ValueError(f"neighbourhood matrix must be [{n}, {n}] (graph.vertex_order), got {tuple(neighbourhood.shape)}.")
            weights = neighbourhood.float()
        else:
            adj = graph.adjacency(neighbourhood)
            weights = adj / adj.sum(-1, keepdim=True).clamp_min(1.0)
        isolated = weights.sum(-1) == 0
        mixing = (1 - beta) * torch.eye(n) + beta * weights
        mixing[isolated] = torch.eye(n)[isolated]  # nobody to collaborate with: keep A_i
        self.register_buffer("mixing", mixing.to(device) if device is not None else mixing)
        self._sizes = [len(vs) for vs in graph.groups.values()]

    @property
    def in_keys(self) -> list:
        return [*self.value_network.in_keys, *(("next", g, self._field("reward")) for g in self.graph.groups)]

    @property
    def out_keys(self) -> list:
        return [(g, self._field(k)) for g in self.graph.groups for k in ("advantage", "value_target", "value")]

    def _field(self, name: str) -> str:
        key = getattr(self.tensor_keys, name)
        return key[-1] if isinstance(key, tuple) else key

    def _done(self, next_td: TensorDictBase, group: str, name: str, like: torch.Tensor) -> torch.Tensor:
        flag = next_td.get((group, self._field(name)), None)
        if flag is None:
            flag = next_td.get(self._field(name)).unsqueeze(-2)
        return flag.expand_as(like)

    def forward(
        self,
        tensordict: TensorDictBase,
        *,
        params: TensorDictBase | None = None,
        target_params: TensorDictBase | None = None,
    ) -> TensorDictBase:
        """Writes every group's ``state_value``, ``advantage`` and ``value_target`` into ``tensordict``.

        ``tensordict`` has shape ``[*B, T]`` with time last, as a collector returns it.
        """
        if tensordict.ndim < 1:
            raise ValueError("GraphGAE expects data with a time dimension, shaped [*B, T].")
        value_field = self._field("value")
        with torch.set_grad_enabled(self.differentiable):
            self.value_network(tensordict)
            next_td = tensordict.get("next")
            self.value_network(next_td)
        time_dim = tensordict.ndim - 1
        advantages, targets = [], []
        for g in self.graph.groups:
            value = tensordict.get((g, value_field))
            next_value = next_td.get((g, value_field))
            reward = next_td.get((g, self._field("reward")))
            done = self._done(next_td, g, "done", reward)
            terminated = self._done(next_td, g, "terminated", reward)
            if not self.differentiable:
                value, next_value = value.detach(), next_value.detach()
            adv, target = vec_generalized_advantage_estimate(
                self.gamma, self.lmbda, value, next_value, reward, done, terminated, time_dim=time_dim
            )
            advantages.append(adv)
            targets.append(target)
        if self.beta:
            stacked = torch.cat(advantages, -2)  # [*B, T, N, 1] in graph.vertex_order
            mixed = torch.einsum("ij,...jk->...ik", self.mixing.to(stacked), stacked)
            advantages = list(mixed.split(self._sizes, -2))
        for g, adv, target in zip(self.graph.groups, advantages, targets):
            tensordict.set((g, self._field("advantage")), adv)
            tensordict.set((g, self._field("value_target")), target)
        return tensordict

    def value_estimate(self, tensordict: TensorDictBase, **kwargs) -> TensorDictBase:
        """The unmixed value targets of every group, as a ``{group: value_target}`` tensordict."""
        out = self.forward(tensordict.copy())
        return out.select(*((g, self._field("value_target")) for g in self.graph.groups))
