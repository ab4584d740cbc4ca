"""``rn show``: the trained network as a picture, each vertex annotated with what it does.

Over a short deterministic rollout (``episodes`` envs seeded ``seed``), every vertex gets:

* ``return``: the reward routed to it (its own, or its subordinates' combined by ``psi``) summed to the first done,
  mean over episodes;
* ``entropy``: the entropy of its policy at the visited states (closed form when the distribution has one, else
  ``-log p(a)`` averaged over samples, as TorchRL's PPO losses do for ``TanhNormal``);
* ``influence`` (managers): how strongly its instructions move its subordinates: replace its deterministic action
  by another sample of its own policy, rerun the groups below it, and take the mean absolute change of its direct
  subordinates' action means (their deterministic actions), averaged over states and subordinates. 0 means its
  subordinates ignore it.

The picture is a ``networkx`` drawing by level (``nx.multipartite_layout`` with the level as subset, the top
manager at the top), vertices coloured by group; the numbers also go to ``network.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_rn.graph import RNGraph
from torchrl_rn.modules.influence import vertex_influence
from torchrl_rn.train.episodes import first_episode_mask
from torchrl_rn.graph.limits import over_limit
from torchrl_rn.train.run import check_output_file, run_folder
from torchrl_rn.train.trainer import RNTrainer

__all__ = ["vertex_stats", "draw_network", "show_run"]


def _entropy(actor, td: TensorDictBase, samples: int = 16) -> torch.Tensor:
    """Entropy per vertex ``[..., n]`` of ``actor``'s distribution at the states of ``td``."""
    dist = actor.get_dist(td)
    try:
        return dist.entropy()
    except NotImplementedError:  # TanhNormal: Monte Carlo, as ClipPPOLoss does
        sample = dist.rsample((samples,)) if dist.has_rsample else dist.sample((samples,))
        return -dist.log_prob(sample).mean(0)


@torch.no_grad()
def vertex_stats(trainer: RNTrainer, *, episodes: int = 8, seed: int = 12345) -> dict[str, dict[str, float]]:
    """Return, entropy and influence of every vertex of the trainer's graph (a flat one for MAPPO/IPPO)."""
    graph = trainer.graph or RNGraph.flat(trainer.n_agents)
    env = trainer._wrap(trainer._env_fn(episodes, seed))
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(trainer.config.max_steps, trainer.policy, break_when_any_done=False)
    mask = first_episode_mask(rollout).float()
    states = rollout.exclude("next").reshape(-1)
    composer = getattr(trainer, "composer", None) if trainer.graph is not None else None
    stats: dict[str, dict[str, float]] = {}
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        base = trainer.policy(states.clone())
    for g, members in graph.groups.items():
        reward = rollout.get(("next", g, "reward"), None)
        returns = (reward.squeeze(-1) * mask.unsqueeze(-1)).sum(1).mean(0) if reward is not None else None
        actor = composer.actor(g) if composer is not None else trainer.policy
        entropy = _entropy(actor, base).reshape(-1, len(members)).mean(0)
        for i, v in enumerate(members):
            stats[str(v)] = {"group": g, "level": graph.level(v),
                             "return": float(returns[i]) if returns is not None else float("nan"),
                             "entropy": float(entropy[i])}
    if composer is not None:
        for v in graph.nx.nodes:
            if graph.subordinates(v):
                stats[str(v)]["influence"] = vertex_influence(composer, base, v)
    return stats


def draw_network(graph: RNGraph, stats: dict[str, dict[str, float]], path: str | Path, *, title: str = "") -> Path:
    """Draws ``graph`` by level (top manager at the top), vertices coloured by group and labelled with ``stats``.

    Examples:
        >>> import tempfile
        >>> stats = {"l1_0": {"return": 2.0, "entropy": 1.0, "influence": 0.3}}  # vertices without stats show nan
        >>> draw_network(RNGraph.tree(4, branching=[2]), stats, Path(tempfile.mkdtemp()) / "net.png").name
        'net.png'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = graph.nx
    # subsets as ordered lists (a node attribute would give sets, in no stable order); first = top level
    layers = {graph.depth - level: [v for v in graph.vertex_order if graph.level(v) == level]
              for level in range(graph.depth + 1)}
    pos = nx.multipartite_layout(g, subset_key=layers, align="horizontal")
    pos = {v: (x, -y) for v, (x, y) in pos.items()}
    groups = list(graph.groups)
    cmap = plt.get_cmap("tab10")
    colour = {grp: cmap(k % 10) for k, grp in enumerate(groups)}
    widest = max(sum(1 for v in g.nodes if graph.level(v) == level) for level in range(graph.depth + 1))
    width = max(6.0, 1.6 * widest + 2)
    fig, ax = plt.subplots(figsize=(min(width, 24), 2.2 * (graph.depth + 1) + 1))
    nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowsize=14, node_size=1800, edge_color="0.5")
    nx.draw_networkx_nodes(g, pos, ax=ax, node_size=1800, node_color=[colour[graph.group_of(v)] for v in g.nodes],
                           alpha=0.85)
    labels = {}
    for v in g.nodes:
        s = stats.get(str(v), {})
        lines = [str(v), f"R {s.get('return', float('nan')):.2f}", f"H {s.get('entropy', float('nan')):.2f}"]
        if "influence" in s:
            lines.append(f"I {s['influence']:.2f}")
        labels[v] = "\n".join(lines)
    nx.draw_networkx_labels(g, pos, labels=labels, ax=ax, font_size=7)
    for grp in groups:
        ax.scatter([], [], color=colour[grp], label=f"{grp} (level {graph.group_level(grp)})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="group")
    ax.set_title(title + "\nR: return to first done, H: policy entropy, I: influence on subordinates' actions",
                 fontsize=9)
    ax.axis("off")
    ax.margins(0.15)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def show_run(run: str | Path, *, out: str | Path | None = None, episodes: int = 8, seed: int = 12345,
             device: str | None = None, env_fn=None) -> Path:
    """Draws the network of a run folder or checkpoint into ``out`` (default ``<run>/network.png``), with its
    per-vertex numbers in ``network.json`` beside it. ``device``: as
    :func:`~torchrl_rn.train.evaluate.evaluate_run`'s."""
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}.")
    if (problem := over_limit("episodes", episodes, label="--episodes")) is not None:
        raise ValueError(f"{problem}.")
    path = check_output_file(Path(out) if out else run_folder(run) / "network.png", "--out")
    check_output_file(path.with_suffix(".json"), "--out (its .json beside it)")  # both refused before the work
    trainer = RNTrainer.resume(run, progress=False, read_only=True, device=device,
                               **({"env_fn": env_fn} if env_fn else {}))
    stats = vertex_stats(trainer, episodes=episodes, seed=seed)
    cfg = trainer.config
    name = f"rn {cfg.graph_name}" if cfg.algo == "rn" else cfg.algo
    title = f"{cfg.task} {name}: {trainer.frames} frames trained, {episodes} deterministic episodes (seed {seed})"
    draw_network(trainer.graph or RNGraph.flat(trainer.n_agents), stats, path, title=title)
    path.with_suffix(".json").write_text(json.dumps(stats, indent=2))
    return path
