"""The option groups of a training run, each a dataclass with one help text per field (BenchMARL's one comment per
field, CleanRL's one docstring per field): :class:`TaskConfig`, :class:`PPOConfig`, :class:`RNConfig` and
:class:`RunConfig`. :class:`~torchrl_rn.train.config.TrainConfig` is made of them (plus ``algo``); ``rn train``'s
flags and the YAML keys of a run's ``config.yaml`` are their field names, flat.

Examples:
    >>> RNConfig(periods="1,5").period_list
    [1, 5]
    >>> [f.name for f in dataclasses.fields(TaskConfig)]
    ['task', 'n_agents', 'continuous_actions', 'max_steps']
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torchrl_rn.graph import INSTRUCT_OPTIONS, LEARN_OPTIONS, NEIGHBOURHOODS, PHI_OPTIONS
from torchrl_rn.rewards import REWARD_HELP

__all__ = ["TaskConfig", "PPOConfig", "RNConfig", "RunConfig", "ALGOS", "CRITICS", "LOGGERS", "RN_ONLY", "typed_value",
           "GRAPH_SPEC_HELP", "field_help"]

ALGOS = ("rn", "mappo", "ippo", "cppo")
CRITICS = ("local", "group")
#: TorchRL's loggers (``torchrl.record.loggers.get_logger``) and the package each needs ("" logs nothing)
LOGGERS = {"": None, "csv": None, "tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow",
           "trackio": "trackio"}

#: settings only RN uses; with ``--algo mappo/ippo`` they must keep their defaults
RN_ONLY = ("graph", "phi", "beta", "neighbourhood", "critic", "detach_messages", "manager_cells", "periods",
           "observe_clock", "vertex_reward", "goal_warmup", "level_critics", "instruct", "freeze", "learn",
           "fused_loss")

#: The grammar of ``--graph`` (read by :meth:`torchrl_rn.RNGraph.from_spec`), documented once, here.
GRAPH_SPEC_HELP = """\
graph specs (--graph; the numbers are BRANCHING FACTORS, not levels):
  flat          no managers: every agent is a motor on its own (RN's IPPO)
  tree:B        one manager level; each manager commands B vertices below it (tree:2 over 4 agents = 2
                managers of 2 agents each; a last manager takes the remainder)
  tree:B1,B2    two manager levels: B1 agents per level-1 manager, B2 level-1 managers per level-2 manager
                (tree:2,2 over 4 agents = 2 managers and 1 root); add numbers for more levels
  dag / dag:M   M overlapping managers (default 2) whose agent blocks share one agent at each border
  dag:M+root    the same with one root above the M managers
  FILE.json     any DAG in networkx's node-link format: nx.node_link_data(g, edges="edges"); vertex
                attributes (phi, psi, share, action_dim, message_dim, agent, period, reward, instruct) as in
                RNGraph; the run stores the graph itself in its config and checkpoint"""


#: integer settings whose default (``None``) is the task's own
_TASK_DEFAULTS = ("n_agents", "max_steps")


def _opt(default: Any, text: str, *, choices: tuple | None = None, unit: str | None = None) -> Any:
    """A dataclass field with its help text, closed set of choices and unit, as metadata."""
    metadata = {"help": text, "choices": choices, "unit": unit}
    return field(default=default, metadata=metadata)


def field_help(f: dataclasses.Field) -> str:
    """The ``--help`` line of a field: meaning, unit and default (choices are shown by argparse)."""
    text = f.metadata.get("help", "")
    unit = f.metadata.get("unit")
    default = f.default
    shown = "the task's default" if default is None and f.name in _TASK_DEFAULTS else repr(default)
    return f"{text} [{unit}; default: {shown}]" if unit else f"{text} [default: {shown}]"


@dataclass
class TaskConfig:
    """The task: which environment, how many agents, which action space, how long an episode."""

    task: str = _opt("vmas/balance", "environment: 'vmas/<scenario>', 'pettingzoo/<family>/<env>', "
                     "'gym/<id>' (one agent) or 'mock' (a contextual bandit for tests)")
    n_agents: int | None = _opt(None, "number of agents (motors) for tasks that take it; omitted: the task's own "
                                "default (balance and simple_spread 4, navigation 3)")
    continuous_actions: bool = _opt(True, "the agents' (motors') action space, for tasks that offer both (VMAS, "
                                    "PettingZoo MPE, mock): continuous, or discrete (--no-continuous-actions; the "
                                    "MAPPO paper's MPE runs)")
    max_steps: int | None = _opt(None, "episode length: an env is reset after this many steps; omitted: the task's "
                                 "own (PettingZoo's max_cycles, 25 for simple_spread_v3), else 100", unit="steps")


@dataclass
class PPOConfig:
    """The PPO recipe every algorithm shares: frame budget, batches, optimiser, losses and network width."""

    frames: int = _opt(60_000, "total environment steps to collect, summed over all vectorised envs (one step of "
                       "one env = one frame; agents are not counted)", unit="frames")
    frames_per_batch: int = _opt(6_000, "frames collected per iteration (one PPO update per batch); runs "
                                 "frames_per_batch / max_steps vectorised envs", unit="frames")
    epochs: int = _opt(10, "passes of PPO over each collected batch", unit="passes")
    minibatch_size: int = _opt(400, "frames per gradient step; each epoch takes frames_per_batch // "
                               "minibatch_size steps, sampled without replacement", unit="frames")
    lr: float = _opt(3e-4, "Adam learning rate of every actor, critic and message encoder")
    max_grad_norm: float = _opt(1.0, "gradients are clipped to this global L2 norm before each Adam step")
    gamma: float = _opt(0.99, "per-step discount factor of the returns")
    lmbda: float = _opt(0.9, "GAE lambda: 0 is one-step TD, 1 is Monte Carlo")
    clip_epsilon: float = _opt(0.2, "PPO's clipping range of the probability ratio (1 +- clip_epsilon)")
    entropy_coeff: float = _opt(1e-4, "weight of the entropy bonus in each PPO loss")
    normalize_advantage: bool = _opt(False, "standardise advantages over each minibatch (over batch and time, "
                                     "not across a group's agents)")
    value_norm: bool = _opt(False, "normalise value targets with TorchRL's PopArtValueNorm and let the critic predict "
                            "normalised values (the MAPPO paper's value normalisation, on by default in its code)")
    num_cells: int = _opt(256, "hidden width of the agents' (motors') policy and critic MLPs (2 hidden layers)",
                          unit="units")
    share_params: bool = _opt(True, "share weights between the vertices (agents) of a group")


@dataclass
class RNConfig:
    """The settings only ``algo="rn"`` reads (with ``algo="mappo"``/``"ippo"`` they must keep their defaults): the
    graph, its messages, instructions, decision periods, vertex rewards, critics and GraphGAE's mixing ``beta``."""

    graph: str = _opt("tree:2", "the agent graph of algo 'rn': flat, tree:B[,B2...] (B = branching factor, not a "
                      "level count), dag[:M][+root] or a .json file; see 'graph specs' below")
    manager_cells: int = _opt(64, "hidden width of the managers' (non-motor vertices') MLPs; rn only",
                              unit="units")
    phi: str = _opt("identity", "message a manager receives from below: 'identity' (its subordinates' "
                    "observations), 'mean' (their mean) or 'learned' (an MLP encoder trained end to end); rn only",
                    choices=PHI_OPTIONS)
    beta: float = _opt(0.0, "GraphGAE mixing: each vertex's advantage is (1 - beta) * its own + beta * the mean "
                       "of its graph neighbours' (0 = independent per vertex); rn only")
    neighbourhood: str = _opt("both", "whose advantages beta mixes in: 'up' (superiors), 'down' (subordinates) or "
                              "'both'; rn only", choices=NEIGHBOURHOODS)
    critic: str = _opt("group", "value function scope of each RN group: 'local' (a vertex values its own inputs, "
                       "IPPO-like) or 'group' (centralised over the group's vertices, MAPPO-like); rn only",
                       choices=CRITICS)
    detach_messages: bool = _opt(False, "stop superiors' losses from training their subordinates' learned "
                                 "message encoders (TAG's decentralised training); rn with phi=learned only")
    periods: str = _opt("", "decision period of each level, from the motors up ('1,5': the managers decide every 5 "
                        "steps and hold their instruction in between, trained as semi-Markov decisions); '' = every "
                        "vertex decides every step; rn only")
    observe_clock: bool = _opt(False, "subordinates also observe the steps left until their superiors' next "
                               "decisions (with --periods); rn only")
    vertex_reward: str = _opt("psi", "reward function of every vertex that has superiors (roots keep psi; a goal "
                              "reward goes to the motors): " + REWARD_HELP + "; rn only")
    instruct: str = _opt("broadcast", "how a manager's action reaches its subordinates: 'broadcast' (each reads all "
                         "of it) or 'addressed' (cut into one block per subordinate, each reads its own, so a manager "
                         "can tell apart subordinates that share weights); rn only", choices=INSTRUCT_OPTIONS)
    goal_warmup: int = _opt(0, "frames at the start of training in which the superiors of goal-rewarded motors give "
                            "uniformly random goals and are not trained, so the motors first learn to reach goals "
                            "(the feudal warm-up on random goals); needs a goal --vertex-reward; rn only",
                            unit="frames")
    learn: str = _opt("rl", "how the managers learn: 'rl' (they sample their instructions and are trained by their own "
                      "PPO loss) or 'gradient' (end to end: a manager's instruction is the tanh of its actor's mean, "
                      "and its subordinates' policy and critic losses train it by back-propagation through the "
                      "instruction; it has no loss of its own; needs decision period 1); rn only",
                      choices=LEARN_OPTIONS)
    freeze: str = _opt("", "groups whose parameters are never updated, comma-separated (e.g. 'level1': managers "
                       "left at their random initialisation, a control); '' = every group learns; rn only")
    level_critics: str = _opt("", "critic scope per level from the motors up, overriding --critic (different "
                              "learners per level: 'group,local' gives the motors a MAPPO-style centralised critic "
                              "under managers with local, PPO-style critics); '' = --critic for every level; rn only")
    fused_loss: bool = _opt(False, "evaluate every group's policy and value directly on its networks' parameters and "
                            "hand them to the group's TorchRL PPO loss (RNLoss(fused=True)): the same losses and "
                            "gradients as the per-group path, in less time; rn only")

    @property
    def period_list(self) -> list[int] | None:
        """``periods`` as one int per level from the motors up (``None`` when empty: every vertex decides each step)."""
        if not self.periods.strip():
            return None
        try:
            values = [int(p) for p in self.periods.split(",")]
        except ValueError:
            values = []
        if not values or any(p < 1 for p in values):
            raise ValueError(f"--periods must be positive ints, one per level from the motors up (e.g. 1,5), "
                             f"got {self.periods!r}.")
        return values

    @property
    def critic_setting(self) -> str | list[str]:
        """The ``critic`` of :class:`~torchrl_rn.GraphComposer`: ``critic``, or ``level_critics`` as one scope per
        level from the motors up."""
        if not self.level_critics.strip():
            return self.critic
        scopes = [c.strip() for c in self.level_critics.split(",")]
        if any(c not in CRITICS for c in scopes):
            raise ValueError(f"--level-critics takes one of {CRITICS} per level from the motors up (e.g. group,local), "
                             f"got {self.level_critics!r}.")
        return scopes


@dataclass
class RunConfig:
    """The run itself: evaluation, seed, device, collection workers, logger and output folder."""

    eval_every: int = _opt(2, "evaluate the deterministic policy every this many iterations (and after the last)",
                           unit="iterations")
    eval_envs: int = _opt(16, "episodes per evaluation: one deterministic episode in each of this many envs, "
                          "seeded with seed + 1", unit="episodes")
    seed: int = _opt(0, "seed of torch and of the training envs (the eval envs use seed + 1)")
    device: str = _opt("cpu", "torch device of the envs and models ('cpu', 'cuda', 'cuda:1', ...)")
    workers: int = _opt(1, "collector processes (TorchRL's MultiSyncCollector, or Ray actors with --ray); each runs "
                        "num_envs / workers envs and collects frames_per_batch / workers frames of every batch",
                        unit="processes")
    ray: str | None = _opt(None, "Ray address for collection: 'local' starts a loopback-only instance here (no "
                           "dashboard), '<head>:6379' joins a cluster; needs pip install 'torchrl-rn[distributed]'")
    logger: str = _opt("", "TorchRL logger that also receives every metrics.csv scalar: 'tensorboard' (event "
                       "files in <out>/logs), 'wandb', 'mlflow', 'trackio', 'csv' (TorchRL's CSVLogger, one file per "
                       "scalar in <out>/logs: a copy of metrics.csv in another layout), or '' for none (metrics.csv "
                       "is always written)", choices=tuple(LOGGERS))
    out: str | None = _opt(None, "output folder of the run; omitted: results/<task>_<algo or rn-graph>_seed<seed>, "
                           "or a fresh timestamped folder beside it when that one already holds a run")


def typed_value(f: dataclasses.Field, value: Any, source: str) -> Any:
    """A YAML value of field ``f`` as the flag would take it, or a one-line error naming the field and the file.

    YAML 1.1 reads ``3e-4`` as a string and ``true`` as a boolean: a number field takes a number or a number's text
    (``lr: 3e-4``), an integer field only a whole number (``frames: 200.7`` is refused, ``frames: 1.5e3`` is 1500), a
    switch only ``true``/``false`` (``value_norm: "false"`` is refused), a text field text or a number.

    Examples:
        >>> fields = PPOConfig.__dataclass_fields__
        >>> typed_value(fields["lr"], "3e-4", "exp.yaml"), typed_value(fields["frames"], "1.5e3", "exp.yaml")
        (0.0003, 1500)
        >>> typed_value(fields["lr"], True, "exp.yaml")
        Traceback (most recent call last):
        ValueError: exp.yaml: lr must be a number, got True.
    """
    default, name = f.default, f.name
    if value is None and default is None:
        return None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"{source}: {name} must be true or false, got {value!r}.")
    kind = int if name in _TASK_DEFAULTS else {int: int, float: float}.get(type(default), str)
    if kind is str:
        if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return str(value) if not isinstance(value, str) else value
        raise ValueError(f"{source}: {name} must be text, got {value!r}.")
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if kind is float and number is not None:
        return float(number)
    if kind is int and number is not None and float(number).is_integer():
        return int(number)
    what = "a whole number" if kind is int else "a number"
    raise ValueError(f"{source}: {name} must be {what}, got {value!r}.")
