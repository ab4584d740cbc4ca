"""TorchRL's own MAPPO and IPPO, as in its multi-agent PPO tutorial, and CPPO (fully centralised PPO: MAPPO's recipe
with a centralised actor, each agent's action from every agent's observation, as in the VMAS paper); the actor head is
:class:`~torchrl_rn.modules.VertexGroup`'s, so every algorithm acts through the same distribution."""
from __future__ import annotations

import torch
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import MultiAgentMLP, PopArtValueNorm
from torchrl.objectives.multiagent import IPPOLoss, MAPPOLoss

from torchrl_rn.modules import DirectModule, actor_head
from torchrl_rn.train.algorithms.base import Models
from torchrl_rn.train.config import TrainConfig
from torchrl_rn.value_norm import Denormalize

__all__ = ["build"]


def build(config: TrainConfig, env: EnvBase, *, device: str | torch.device) -> Models:
    """``MultiAgentMLP`` actor and critic (the critic centralised for ``algo="mappo"``, actor and critic for
    ``"cppo"``, whose actor keeps one set of weights per agent) with TorchRL's
    :class:`~torchrl.objectives.multiagent.MAPPOLoss` (MAPPO, CPPO) / :class:`~torchrl.objectives.multiagent.IPPOLoss`
    and its multi-agent GAE.

    Examples:
        >>> from torchrl_rn.envs import MockMultiAgentEnv
        >>> from torchrl_rn.train.collection import wrap_env
        >>> models = build(TrainConfig(task="mock", algo="ippo", num_cells=8),
        ...                wrap_env(MockMultiAgentEnv(3, num_envs=2), None), device="cpu")
        >>> type(models.loss).__name__, models.unread_keys[:2]
        ('IPPOLoss', ['next', ('collector', 'traj_ids')])
    """
    cfg = config
    obs = env.full_observation_spec_unbatched["agents", "observation"].shape[-1]
    n = env.full_action_spec_unbatched["agents", "action"].shape[0]

    def mlp(n_out: int, centralized: bool, share_params: bool = cfg.share_params) -> MultiAgentMLP:
        return MultiAgentMLP(obs, n_out, n_agents=n, centralized=centralized, share_params=share_params,
                             depth=2, num_cells=cfg.num_cells, activation_class=nn.Tanh, device=device)

    central_actor = cfg.algo == "cppo"  # one agent acting for all: agent i's action from every observation
    policy = actor_head(env.full_action_spec_unbatched["agents", "action"],
                        lambda n_out, *head: nn.Sequential(mlp(n_out, central_actor, not central_actor and
                                                               cfg.share_params), *head),
                        [("agents", "observation")], "agents", device=device)
    value_norm = PopArtValueNorm(shape=1, device=device) if cfg.value_norm else None
    value_net = mlp(1, cfg.algo in ("mappo", "cppo"))
    if value_norm is not None:  # the network predicts normalised values; GAE sees them on the return scale
        value_net = Denormalize(value_net, value_norm)
    critic = DirectModule(value_net, [("agents", "observation")], [("agents", "state_value")])
    loss_cls = IPPOLoss if cfg.algo == "ippo" else MAPPOLoss
    loss = loss_cls(policy, critic, clip_epsilon=cfg.clip_epsilon, entropy_coeff=cfg.entropy_coeff,
                    normalize_advantage=cfg.normalize_advantage, value_norm=value_norm)
    # per-agent done flags where the env has them (PettingZoo), else the team's: MultiAgentGAE broadcasts those
    done_keys = {key: ("agents", key) if ("agents", key) in env.done_keys else key
                 for key in ("done", "terminated")}
    loss.set_keys(reward=("agents", "reward"), action=("agents", "action"),
                  sample_log_prob=("agents", "action_log_prob"), value=("agents", "state_value"), **done_keys)
    loss.make_value_estimator(gamma=cfg.gamma, lmbda=cfg.lmbda)
    # the next step (read by the value estimator only), the collector's trajectory ids, the distribution parameters
    unread = ["next", ("collector", "traj_ids"), *policy.module[0].out_keys]
    return Models(policy=policy, loss=loss, unread_keys=list(dict.fromkeys(unread)))
