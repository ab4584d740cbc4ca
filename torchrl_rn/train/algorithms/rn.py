"""An RN graph: :class:`~torchrl_rn.GraphComposer`'s policy and critics, trained by :class:`~torchrl_rn.RNLoss`
with :class:`~torchrl_rn.GraphGAE`."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase

from torchrl_rn.graph import GraphError, RNGraph
from torchrl_rn.modules import FusedPolicy, GraphComposer
from torchrl_rn.objectives import RNLoss
from torchrl_rn.train.algorithms.base import Models
from torchrl_rn.train.config import TrainConfig

__all__ = ["RNModels", "make_graph", "build", "freeze"]


def make_graph(config: TrainConfig, n_agents: int) -> RNGraph:
    """The graph of ``--graph`` over ``n_agents`` motors, with the run's vertex defaults, periods and vertex reward;
    a :class:`~torchrl_rn.graph.GraphError` names the spec and the agent count.

    Examples:
        >>> make_graph(TrainConfig(graph="tree:2", periods="1,5"), 4).period("level1")
        5
    """
    cfg = config
    try:
        return RNGraph.from_spec(cfg.graph, n_agents, defaults={"phi": cfg.phi, "instruct": cfg.instruct,
                                                               "learn": cfg.learn},
                                 periods=cfg.period_list, vertex_reward=cfg.vertex_reward)
    except GraphError as err:
        raise GraphError(f"--graph {cfg.graph_name!r} with {n_agents} agents: {err}") from None


@dataclass
class RNModels(Models):
    """:class:`Models` of an RN graph: per-group losses, RN's own estimator call and the goal warm-up."""

    def advantage(self, data: TensorDictBase) -> None:
        self.loss.value_estimator(data)

    def group_parameters(self) -> dict[str, list[torch.Tensor]]:
        """Each RN group's own parameters (its actor and value head; all of a group that learns by gradient)."""
        own = {g: [p for p in loss.parameters() if p.requires_grad] for g, loss in self.loss.group_losses.items()}
        for g in self.loss.gradient_groups:
            own[g] = [p for p in self.composer.vertex_groups[g].parameters() if p.requires_grad]
        return own

    def goal_warmup(self, warm: bool) -> bool:
        if bool(self.composer.warming_up) == warm:
            return False
        self.composer.goal_warmup(warm)
        return True


def freeze(composer: GraphComposer, groups: list[str]) -> None:
    """Stops ``groups``' parameters (actor, critic, message encoder) from ever being updated (``requires_grad``
    off: they get no gradient, so the optimiser leaves them at their initialisation).

    Raises:
        ValueError: a group the graph lacks, naming the graph's groups.

    Examples:
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> from torchrl_rn.train.collection import wrap_env
        >>> graph = make_graph(TrainConfig(task="mock"), 4)
        >>> composer = GraphComposer(graph, wrap_env(MockMultiAgentEnv(4), graph), num_cells=8)
        >>> freeze(composer, ["level1"])
        >>> any(p.requires_grad for p in composer.vertex_groups["level1"].parameters())
        False
    """
    for g in groups:
        if g not in composer.vertex_groups:
            raise ValueError(f"--freeze {g!r}: the graph has no such group; its groups are "
                             f"{list(composer.vertex_groups)}.")
        composer.vertex_groups[g].requires_grad_(False)


def build(config: TrainConfig, env: EnvBase, graph: RNGraph, *, device: str | torch.device) -> RNModels:
    """The composer of ``graph`` over the :class:`~torchrl_rn.LevelEnv`-wrapped ``env`` and its :class:`RNLoss`.

    Raises:
        ValueError: ``goal_warmup`` is set but no vertex of the graph is trained on a goal reward; ``freeze`` names
            a group the graph lacks.

    Examples:
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> from torchrl_rn.train.collection import wrap_env
        >>> cfg = TrainConfig(task="mock", num_cells=8, manager_cells=8)
        >>> graph = make_graph(cfg, 4)
        >>> models = build(cfg, wrap_env(MockMultiAgentEnv(4, num_envs=2), graph), graph, device="cpu")
        >>> sorted(models.group_parameters()), models.agent_group
        (['agents', 'level1'], 'agents')
    """
    cfg = config
    composer = GraphComposer(
        graph, env, num_cells=cfg.num_cells, manager_cells=cfg.manager_cells,
        share_params=cfg.share_params, critic=cfg.critic_setting,
        detach_messages=cfg.detach_messages, observe_clock=cfg.observe_clock, value_norm=cfg.value_norm,
        device=device,
    )
    loss = RNLoss(
        composer, clip_epsilon=cfg.clip_epsilon, entropy_coeff=cfg.entropy_coeff,
        normalize_advantage=cfg.normalize_advantage, gamma=cfg.gamma, lmbda=cfg.lmbda, beta=cfg.beta,
        neighbourhood=cfg.neighbourhood, fused=cfg.fused_loss,
    )
    if cfg.goal_warmup and not composer.goal_warmup(False):
        raise ValueError(f"--goal-warmup {cfg.goal_warmup}: no vertex of --graph {cfg.graph_name!r} is trained on a "
                         "goal reward (give one with --vertex-reward goal:... or direction:...).")
    freeze(composer, [g.strip() for g in cfg.freeze.split(",") if g.strip()])
    # the next step (read by the estimator only), the collector's trajectory ids, the distribution parameters and
    # the bottom-up pass's outputs (the loss recomputes both with gradients), the groups' own step flags (the
    # estimator reads the next step's) and the task's info and episode sums (read from the batch, not the buffer)
    actors = [composer.actor(g) for g in graph.groups]
    unread = ["next", ("collector", "traj_ids"), *(k for a in actors for k in a.module[0].out_keys),
              *composer.messages.out_keys, *((g, k) for g in graph.groups for k in ("done", "terminated", "truncated")),
              (graph.env_group, "info"), (graph.env_group, "episode_reward")]
    # the collector runs the composed policy's step on tensors: the same actions and draws (FusedPolicy's tests)
    return RNModels(policy=FusedPolicy(composer.policy), loss=loss, unread_keys=list(dict.fromkeys(unread)),
                    agent_group=graph.env_group, graph=graph, composer=composer)
