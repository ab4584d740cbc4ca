"""``TrainConfig``: every knob of a training run, as one dataclass that documents itself.

Each field carries its meaning in ``field(metadata={"help": ...})`` (CleanRL's one docstring per field,
BenchMARL's one comment per field); ``rn train --help`` is generated from it, with ``choices`` where the set is
closed. A config reads from and writes to YAML (:meth:`TrainConfig.from_yaml`, :meth:`TrainConfig.to_yaml`): every
run writes the config it ran as ``config.yaml``, and ``rn train --config <run>/config.yaml`` runs it again.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchrl_rn.graph import INSTRUCT_OPTIONS, NEIGHBOURHOODS, PHI_OPTIONS
from torchrl_rn.rewards import REWARD_HELP, parse_reward

__all__ = ["TrainConfig", "ALGOS", "LOGGERS", "CRITICS", "GRAPH_SPEC_HELP", "field_help", "device_problem"]

ALGOS = ("rn", "mappo", "ippo")
CRITICS = ("local", "group")
#: TorchRL's loggers (``torchrl.record.loggers.get_logger``) and the package each needs ("" logs nothing)
LOGGERS = {"": None, "csv": None, "tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow",
           "trackio": "trackio"}

#: settings only RN uses; with ``--algo mappo/ippo`` they must keep their defaults
RN_ONLY = ("graph", "phi", "beta", "neighbourhood", "critic", "detach_messages", "manager_cells", "periods",
           "observe_clock", "vertex_reward", "goal_warmup", "level_critics", "instruct")

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
                RNGraph"""


def _opt(default: Any, text: str, *, choices: tuple | None = None, unit: str | None = None) -> Any:
    """A dataclass field with its help text, closed set of choices and unit, as metadata."""
    metadata = {"help": text, "choices": choices, "unit": unit}
    return field(default=default, metadata=metadata)


def field_help(f: dataclasses.Field) -> str:
    """The ``--help`` line of a field: meaning, unit and default (choices are shown by argparse)."""
    text = f.metadata.get("help", "")
    unit = f.metadata.get("unit")
    default = f.default
    shown = "the task's default" if default is None and f.name == "n_agents" else repr(default)
    return f"{text} [{unit}; default: {shown}]" if unit else f"{text} [default: {shown}]"


@dataclass
class TrainConfig:
    """Every knob of a run. Defaults follow TorchRL's MAPPO tutorial, with 10 epochs and a short budget.

    Read a field's meaning with ``TrainConfig.help("beta")`` (or ``rn train --help``).

    Examples:
        >>> TrainConfig(task="vmas/navigation", frames=12_000).frames_per_batch
        6000
        >>> TrainConfig.help("frames")
        'total environment steps to collect, summed over all vectorised envs (one step of one env = one frame; agents are not counted) [frames; default: 60000]'
    """

    # ---- task
    task: str = _opt("vmas/balance", "environment: 'vmas/<scenario>', 'pettingzoo/<family>/<env>', "
                     "'gym/<id>' (one agent) or 'mock' (a contextual bandit for tests)")
    n_agents: int | None = _opt(None, "number of agents (motors) for tasks that take it; omitted: the task's own "
                                "default (balance and simple_spread 4, navigation 3)")
    continuous_actions: bool = _opt(True, "the agents' (motors') action space, for tasks that offer both (VMAS, "
                                    "PettingZoo MPE, mock): continuous, or discrete (--no-continuous-actions; the MAPPO "
                                    "paper's MPE runs)")
    # ---- algorithm and graph
    algo: str = _opt("rn", "'rn' trains the graph given by --graph with RNLoss and GraphGAE; 'mappo'/'ippo' train "
                     "TorchRL's MAPPOLoss/IPPOLoss with a centralised/local critic (the RN-only options are unused)",
                     choices=ALGOS)
    graph: str = _opt("tree:2", "the agent graph of algo 'rn': flat, tree:B[,B2...] (B = branching factor, not a "
                      "level count), dag[:M][+root] or a .json file; see 'graph specs' below")
    # ---- budget and PPO
    frames: int = _opt(60_000, "total environment steps to collect, summed over all vectorised envs (one step of "
                       "one env = one frame; agents are not counted)", unit="frames")
    frames_per_batch: int = _opt(6_000, "frames collected per iteration (one PPO update per batch); runs "
                                 "frames_per_batch / max_steps vectorised envs", unit="frames")
    max_steps: int = _opt(100, "episode length: an env is reset after this many steps", unit="steps")
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
    manager_cells: int = _opt(64, "hidden width of the managers' (non-motor vertices') MLPs; rn only",
                              unit="units")
    share_params: bool = _opt(True, "share weights between the vertices (agents) of a group")
    # ---- RN-specific: message function of non-motor vertices, graph-advantage mixing, critic scope, gradient flow
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
    level_critics: str = _opt("", "critic scope per level from the motors up, overriding --critic (different "
                              "learners per level: 'group,local' gives the motors a MAPPO-style centralised critic "
                              "under managers with local, PPO-style critics); '' = --critic for every level; rn only")
    # ---- evaluation, bookkeeping
    eval_every: int = _opt(2, "evaluate the deterministic policy every this many iterations (and after the last)",
                           unit="iterations")
    eval_envs: int = _opt(16, "episodes per evaluation: one deterministic episode in each of this many envs, "
                          "seeded with seed + 1", unit="episodes")
    seed: int = _opt(0, "seed of torch and of the training envs (the eval envs use seed + 1)")
    device: str = _opt("cpu", "torch device of the envs and models ('cpu', 'cuda', 'cuda:1', ...)")
    # ---- collection
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


    # ------------------------------------------------------------------ help and YAML
    @classmethod
    def help(cls, name: str) -> str:
        """The help text of field ``name``: its meaning, unit and default."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if name not in fields:
            raise KeyError(f"TrainConfig has no field {name!r}; fields: {', '.join(fields)}.")
        return field_help(fields[name])

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """A config from a mapping of field values, with an error naming any unknown field and its source."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in values if k not in names]
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {unknown}; TrainConfig's fields: {', '.join(names)}.")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Reads a YAML experiment file (any subset of the fields); ``overrides`` win over the file.

        Examples:
            >>> import tempfile, pathlib
            >>> path = pathlib.Path(tempfile.mkdtemp()) / "exp.yaml"
            >>> _ = TrainConfig(task="mock", frames=400).to_yaml(path)
            >>> TrainConfig.from_yaml(path, seed=3) == TrainConfig(task="mock", frames=400, seed=3)
            True
        """
        import yaml

        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"cannot read config file {str(path)!r}: {err}") from None
        if not isinstance(values, dict):
            raise ValueError(f"config file {str(path)!r} must hold a mapping of TrainConfig fields.")
        return cls.from_dict({**values, **overrides}, source=str(path))

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The config as YAML, one commented line per field (the comment is the field's help); written to
        ``path`` if given. :meth:`from_yaml` reads it back to an equal config."""
        import yaml

        lines = ["# torchrl-rn TrainConfig: run it with `rn train --config THIS_FILE` (flags override the file)"]
        for f in dataclasses.fields(self):
            lines.append(f"# {field_help(f)}")
            lines.append(yaml.safe_dump({f.name: getattr(self, f.name)}, default_flow_style=False).rstrip())
        text = "\n".join(lines) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    def __post_init__(self) -> None:
        """Refuses a bad setting in one line naming the option, before anything is built or written."""
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; choose one of {ALGOS}.")
        if self.logger not in LOGGERS:
            raise ValueError(f"unknown logger {self.logger!r}; choose one of {[k for k in LOGGERS if k]} or ''.")
        package = LOGGERS[self.logger]
        if package and importlib.util.find_spec(package) is None:  # fail now, not after the first batch
            raise ValueError(f"logger {self.logger!r} needs the {package} package: pip install {package}")
        for name in ("frames", "frames_per_batch", "epochs", "minibatch_size", "max_steps", "eval_every", "eval_envs",
                     "num_cells", "manager_cells"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be >= 1, got {getattr(self, name)}.")
        if self.n_agents is not None and self.n_agents < 1:
            raise ValueError(f"--n-agents must be >= 1, got {self.n_agents}.")
        if self.frames_per_batch % self.max_steps:
            raise ValueError(
                f"--frames-per-batch ({self.frames_per_batch}) must be a multiple of --max-steps ({self.max_steps}): "
                "the collector runs frames_per_batch / max_steps vectorised envs."
            )
        if self.workers < 1 or self.num_envs % self.workers:
            raise ValueError(f"--workers ({self.workers}) must divide the number of envs, frames_per_batch / max_steps "
                             f"= {self.num_envs}: each worker runs the same share of envs.")
        if self.ray is not None and importlib.util.find_spec("ray") is None:
            raise ValueError(f"--ray {self.ray!r} needs Ray: pip install 'torchrl-rn[distributed]'")
        if self.minibatch_size > self.frames_per_batch:
            raise ValueError(f"--minibatch-size ({self.minibatch_size}) must be <= --frames-per-batch "
                             f"({self.frames_per_batch}): an epoch samples frames_per_batch // minibatch_size "
                             "minibatches.")
        for name, low, high, closed_low in (("lr", 0.0, float("inf"), False), ("gamma", 0.0, 1.0, False),
                                            ("lmbda", 0.0, 1.0, True), ("clip_epsilon", 0.0, float("inf"), False),
                                            ("max_grad_norm", 0.0, float("inf"), False),
                                            ("entropy_coeff", 0.0, float("inf"), True), ("beta", 0.0, 1.0, True)):
            value = getattr(self, name)
            if not (low <= value if closed_low else low < value) or not value <= high or math.isnan(value):
                if high < float("inf"):
                    interval = f"in {'[' if closed_low else '('}{low:g}, {high:g}]"
                else:
                    interval = f">= {low:g}" if closed_low else f"> {low:g}"
                raise ValueError(f"{_flag(name)} must be {interval}, got {value}.")
        if self.phi not in PHI_OPTIONS:
            raise ValueError(f"--phi must be one of {PHI_OPTIONS}, got {self.phi!r}.")
        if self.neighbourhood not in NEIGHBOURHOODS:
            raise ValueError(f"--neighbourhood must be one of {NEIGHBOURHOODS}, got {self.neighbourhood!r}.")
        if self.instruct not in INSTRUCT_OPTIONS:
            raise ValueError(f"--instruct must be one of {INSTRUCT_OPTIONS}, got {self.instruct!r}.")
        if self.critic not in CRITICS:
            raise ValueError(f"--critic must be one of {CRITICS}, got {self.critic!r}.")
        self.period_list  # noqa: B018 (parses --periods: refuses a bad value here)
        self.critic_setting  # noqa: B018 (parses --level-critics: refuses a bad value here)
        try:
            parse_reward(self.vertex_reward)
        except ValueError as err:
            raise ValueError(f"--vertex-reward: {err}") from None
        if self.goal_warmup < 0:
            raise ValueError(f"--goal-warmup must be >= 0 frames, got {self.goal_warmup}.")
        if self.algo != "rn":  # RN-only settings would be silently ignored by the baselines: refuse them
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            changed = [_flag(name) for name in RN_ONLY if getattr(self, name) != defaults[name]]
            if changed:
                verb = "applies" if len(changed) == 1 else "apply"
                raise ValueError(f"{', '.join(changed)} {verb} only to --algo rn, not to --algo {self.algo}.")
        if (problem := device_problem(self.device)) is not None:
            raise ValueError(problem)

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

    @property
    def num_envs(self) -> int:
        return self.frames_per_batch // self.max_steps

    @property
    def run_dir(self) -> Path:
        """The run's folder: ``out``, or ``results/<task>_<method>_seed<seed>`` (a name, never a path).

        :class:`RNTrainer` gives a run without ``out`` a fresh timestamped folder under this name instead, so that no
        run ever replaces another.
        """
        if self.out:
            return Path(self.out)
        return Path("results") / f"{_slug(self.task)}_{self.method_name}_seed{self.seed}"

    @property
    def method_name(self) -> str:
        """``mappo``, ``ippo`` or ``rn-<graph>``; a graph read from a file is ``rn-file`` (a path is no name)."""
        if self.algo != "rn":
            return self.algo
        graph = "file" if self.graph.endswith(".json") or os.sep in self.graph or "/" in self.graph else self.graph
        periods = f"-p{self.periods.replace(',', '-')}" if self.period_list else ""
        reward = "" if self.vertex_reward == "psi" else f"-r{self.vertex_reward.replace(':', '').replace(',', '-')}"
        critics = f"-c{self.level_critics.replace(',', '-')}" if self.level_critics.strip() else ""
        warmup = f"-w{self.goal_warmup}" if self.goal_warmup else ""
        addressed = "-addressed" if self.instruct == "addressed" else ""
        return f"rn-{_slug(graph.replace(':', '').replace(',', '-') + addressed + periods + reward + warmup + critics)}"


def device_problem(device: str) -> str | None:
    """Why this machine cannot run on ``device`` (not a torch device; CUDA or MPS missing; a CUDA index past the
    machine's devices), as ``--device``'s error line, or ``None`` where it can.

    Examples:
        >>> device_problem("cpu") is None
        True
        >>> device_problem("toaster")
        "--device 'toaster' is not a torch device (e.g. cpu, cuda, cuda:1)."
    """
    try:
        parsed = torch.device(device)
    except RuntimeError:
        return f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)."
    if parsed.type == "cuda" and not torch.cuda.is_available():
        return f"--device {device!r}: CUDA is not available in this torch build or machine."
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= (n := torch.cuda.device_count()):
        return f"--device {device!r}: this machine has {n} CUDA device(s) (cuda:0 to cuda:{n - 1})."
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        return f"--device {device!r}: MPS is not available on this machine."
    return None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _slug(text: str) -> str:
    """``text`` with everything but letters, digits, ``.``, ``+`` and ``-`` replaced by ``-``: a file name."""
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text).strip(".-") or "run"
