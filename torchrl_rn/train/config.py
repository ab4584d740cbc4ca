"""``TrainConfig``: every knob of a training run, as nested dataclasses that document themselves.

A config is ``algo`` plus four option groups (:mod:`~torchrl_rn.train.settings`): ``env`` (:class:`TaskConfig`),
``ppo`` (:class:`PPOConfig`), ``rn`` (:class:`RNConfig`, the settings only ``algo="rn"`` reads) and ``run``
(:class:`RunConfig`). Each field carries its meaning in ``field(metadata={"help": ...})`` (CleanRL's one docstring per
field, BenchMARL's one comment per field); ``rn train --help`` is generated from it, with ``choices`` where the set is
closed.

The flat names stay the interface: every field is also read, written and given by its own name
(``config.lr`` is ``config.ppo.lr``; ``TrainConfig(task="mock", lr=1e-3)`` and :meth:`TrainConfig.from_flat` build a
config from flat keywords), ``rn train``'s flags are ``--<name>``, and a config reads from and writes to YAML with one
flat key per field (:meth:`TrainConfig.from_yaml`, :meth:`TrainConfig.to_yaml`; a file may also nest a group, e.g.
``ppo: {lr: 0.001}``): every run writes the config it ran as ``config.yaml``, and ``rn train --config
<run>/config.yaml`` runs it again. Checkpoints store the flat mapping (:meth:`TrainConfig.to_flat`), as before.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchrl_rn.envs.tasks import default_max_steps
from torchrl_rn.graph import INSTRUCT_OPTIONS, LEARN_OPTIONS, NEIGHBOURHOODS, PHI_OPTIONS
from torchrl_rn.graph.limits import LIMITS, over_limit
from torchrl_rn.rewards import parse_reward
from torchrl_rn.train.paths import path_problem
from torchrl_rn.train.settings import (ALGOS, CRITICS, GRAPH_SPEC_HELP, LOGGERS, RN_ONLY, PPOConfig, RNConfig,
                                       RunConfig, TaskConfig, _opt, field_help, typed_value)

__all__ = ["TrainConfig", "TaskConfig", "PPOConfig", "RNConfig", "RunConfig", "ALGOS", "LOGGERS", "CRITICS",
           "GRAPH_SPEC_HELP", "field_help", "device_problem", "is_stored_graph", "is_file_graph"]

#: the option groups of a config: attribute name and dataclass
GROUPS = {"env": TaskConfig, "ppo": PPOConfig, "rn": RNConfig, "run": RunConfig}
#: the group that holds each flat field
_OWNER = {f.name: group for group, cls in GROUPS.items() for f in dataclasses.fields(cls)}
#: the flat fields in the order of ``rn train --help`` and of ``config.yaml`` (the order of the flat TrainConfig)
FLAT_ORDER = ("task", "n_agents", "continuous_actions", "algo", "graph", "frames", "frames_per_batch", "max_steps",
              "epochs", "minibatch_size", "lr", "max_grad_norm", "gamma", "lmbda", "clip_epsilon", "entropy_coeff",
              "normalize_advantage", "value_norm", "num_cells", "manager_cells", "share_params", "phi", "beta",
              "neighbourhood", "critic", "detach_messages", "periods", "observe_clock", "vertex_reward", "instruct",
              "goal_warmup", "level_critics", "learn", "freeze", "fused_loss", "eval_every", "eval_envs", "seed",
              "device", "workers", "ray", "logger", "out")


def _group(name: str) -> Any:
    return field(default_factory=GROUPS[name], metadata={"help": GROUPS[name].__doc__.splitlines()[0]})


@dataclass(init=False)
class TrainConfig:
    """Every knob of a run. Defaults follow TorchRL's MAPPO tutorial, with 10 epochs and a short budget.

    Read a field's meaning with ``TrainConfig.help("beta")`` (or ``rn train --help``).

    Keyword Args:
        algo (str): the algorithm (see ``TrainConfig.help("algo")``).
        env, ppo, rn, run: the option groups (:class:`TaskConfig`, :class:`PPOConfig`, :class:`RNConfig`,
            :class:`RunConfig`), each as its dataclass or a mapping of its fields; default: the group's defaults.
        **flat: any field by its flat name (``lr=1e-3``, ``graph="tree:4"``); they win over the groups.

    Raises:
        ValueError: a bad setting, in one line naming its flag.
        TypeError: an unknown keyword.

    Examples:
        >>> TrainConfig(task="vmas/navigation", frames=12_000).frames_per_batch
        6000
        >>> TrainConfig.help("frames")
        'total environment steps to collect, summed over all vectorised envs (one step of one env = one frame; agents are not counted) [frames; default: 60000]'
        >>> cfg = TrainConfig(ppo=PPOConfig(lr=1e-3), beta=0.5)
        >>> cfg.lr, cfg.ppo.lr, cfg.rn.beta, cfg == TrainConfig.from_flat(lr=1e-3, beta=0.5)
        (0.001, 0.001, 0.5, True)
    """

    algo: str = _opt("rn", "'rn' trains the graph given by --graph with RNLoss and GraphGAE; 'mappo'/'ippo' train "
                     "TorchRL's MAPPOLoss/IPPOLoss with a centralised/local critic; 'cppo' is fully centralised PPO "
                     "(MAPPO with a centralised actor: each agent acts on every agent's observation; the RN-only "
                     "options are unused by the three)", choices=ALGOS)
    env: TaskConfig = _group("env")
    ppo: PPOConfig = _group("ppo")
    rn: RNConfig = _group("rn")
    run: RunConfig = _group("run")

    def __init__(self, *, algo: str = "rn", env: TaskConfig | Mapping | None = None,
                 ppo: PPOConfig | Mapping | None = None, rn: RNConfig | Mapping | None = None,
                 run: RunConfig | Mapping | None = None, **flat: Any) -> None:
        given = {"env": env, "ppo": ppo, "rn": rn, "run": run}
        for name, cls in GROUPS.items():  # each group copied, never shared with another config
            value = given[name]
            if value is None:
                value = cls()
            elif isinstance(value, cls):
                value = dataclasses.replace(value)
            elif isinstance(value, Mapping):
                value = cls(**value)
            else:
                raise TypeError(f"TrainConfig's {name} must be a {cls.__name__} or a mapping of its fields, got "
                                f"{type(value).__name__}.")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "algo", algo)
        for name, value in flat.items():
            if name not in _OWNER:
                raise TypeError(f"TrainConfig.__init__() got an unexpected keyword argument {name!r}")
            setattr(self.__dict__[_OWNER[name]], name, value)
        if self.max_steps is None:  # the task's own episode length (PettingZoo's max_cycles), else 100
            self.env.max_steps = default_max_steps(self.task)
        self._check()

    def __getattr__(self, name: str) -> Any:  # a flat field: read from its group
        owner = _OWNER.get(name)
        if owner is None or owner not in self.__dict__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.__dict__[owner], name)

    def __setattr__(self, name: str, value: Any) -> None:  # a flat field: written to its group
        if name in _OWNER:
            setattr(self.__dict__[_OWNER[name]], name, value)
        else:
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ flat view
    @classmethod
    def flat_fields(cls) -> list[dataclasses.Field]:
        """Every field by its flat name, in the order of ``rn train --help`` and ``config.yaml``: ``algo`` and the
        groups' fields (each with its help text, choices and unit)."""
        fields = {f.name: f for group in GROUPS.values() for f in dataclasses.fields(group)}
        fields["algo"] = next(f for f in dataclasses.fields(cls) if f.name == "algo")
        return [fields[name] for name in FLAT_ORDER]

    @classmethod
    def from_flat(cls, **values: Any) -> TrainConfig:
        """A config from flat keywords (as :meth:`from_dict`: an unknown one is refused naming it).

        Examples:
            >>> TrainConfig.from_flat(task="mock", graph="tree:4").rn.graph
            'tree:4'
        """
        return cls.from_dict(values)

    def to_flat(self) -> dict[str, Any]:
        """The config as one flat mapping of field values (what checkpoints and ``config.json`` hold).

        Examples:
            >>> flat = TrainConfig(seed=3).to_flat()
            >>> flat["seed"], len(flat), TrainConfig(**flat) == TrainConfig(seed=3)
            (3, 43, True)
        """
        return {name: getattr(self, name) for name in FLAT_ORDER}

    @staticmethod
    def flatten(values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` with every group given as a mapping or dataclass (``{"ppo": {"lr": 0.1}}``) spread into its
        flat fields (``{"lr": 0.1}``); other keys are kept as they are."""
        flat: dict[str, Any] = {}
        for key, value in values.items():
            if key in GROUPS and dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            if key in GROUPS and isinstance(value, Mapping):
                flat.update(value)
            else:
                flat[key] = value
        return flat

    # ------------------------------------------------------------------ help and YAML
    @classmethod
    def help(cls, name: str) -> str:
        """The help text of field ``name``: its meaning, unit and default."""
        fields = {f.name: f for f in cls.flat_fields()}
        if name not in fields:
            raise KeyError(f"TrainConfig has no field {name!r}; fields: {', '.join(fields)}.")
        return field_help(fields[name])

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """A config from a mapping of field values (flat, or a group nested under its name), with an error naming
        any unknown field and its source."""
        names = list(FLAT_ORDER)
        unknown = [k for k in values if k not in names and k not in GROUPS]
        for group in GROUPS:
            if isinstance(values.get(group), Mapping):
                unknown += [f"{group}.{k}" for k in values[group] if _OWNER.get(k) != group]
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {unknown}; TrainConfig's fields: {', '.join(names)}.")
        return cls(**cls.flatten(values))

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
        fields = {f.name: f for f in cls.flat_fields()}
        typed = {k: typed_value(fields[k], v, str(path)) if k in fields else v for k, v in cls.flatten(values).items()}
        return cls.from_dict({**typed, **overrides}, source=str(path))

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The config as YAML, one commented line per field (the comment is the field's help); written to
        ``path`` if given. :meth:`from_yaml` reads it back to an equal config."""
        import yaml

        lines = ["# torchrl-rn TrainConfig: run it with `rn train --config THIS_FILE` (flags override the file)"]
        for f in self.flat_fields():
            lines.append(f"# {field_help(f)}")
            lines.append(yaml.safe_dump({f.name: getattr(self, f.name)}, default_flow_style=False).rstrip())
        text = "\n".join(lines) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    def _check(self) -> None:
        """Refuses a bad setting in one line naming the option, before anything is built or written."""
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; choose one of {ALGOS}.")
        if self.logger not in LOGGERS:
            raise ValueError(f"unknown logger {self.logger!r}; choose one of {[k for k in LOGGERS if k]} or ''.")
        package = LOGGERS[self.logger]
        if package and importlib.util.find_spec(package) is None:  # fail now, not after the first batch
            raise ValueError(f"logger {self.logger!r} needs the {package} package: pip install {package}")
        for f in self.flat_fields():  # inf or nan passes every range check below: refused first
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{_flag(f.name)} must be a finite number, got {value}.")
        for name in ("frames", "frames_per_batch", "epochs", "minibatch_size", "max_steps", "eval_every", "eval_envs",
                     "num_cells", "manager_cells"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be >= 1, got {getattr(self, name)}.")
        if self.n_agents is not None and self.n_agents < 1:
            raise ValueError(f"--n-agents must be >= 1, got {self.n_agents}.")
        for name in LIMITS:  # sizes that would allocate gigabytes (from a flag, a file or a checkpoint): refused
            if name in _OWNER and (problem := over_limit(name, getattr(self, name), label=_flag(name))) is not None:
                raise ValueError(f"{problem}.")
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
        if self.learn not in LEARN_OPTIONS:
            raise ValueError(f"--learn must be one of {LEARN_OPTIONS}, got {self.learn!r}.")
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
            defaults = RNConfig()
            changed = [_flag(name) for name in RN_ONLY if getattr(self, name) != getattr(defaults, name)]
            if changed:
                verb = "applies" if len(changed) == 1 else "apply"
                raise ValueError(f"{', '.join(changed)} {verb} only to --algo rn, not to --algo {self.algo}.")
        if (problem := device_problem(self.device)) is not None:
            raise ValueError(problem)
        if self.out is not None and (problem := path_problem(self.out, "--out")) is not None:
            raise ValueError(problem)

    @property
    def period_list(self) -> list[int] | None:
        """``periods`` as one int per level from the motors up: :attr:`RNConfig.period_list`."""
        return self.rn.period_list

    @property
    def critic_setting(self) -> str | list[str]:
        """The ``critic`` of :class:`~torchrl_rn.GraphComposer`: :attr:`RNConfig.critic_setting`."""
        return self.rn.critic_setting

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
    def graph_name(self) -> str:
        """``graph`` for titles: the spec, or ``"stored graph"`` for a graph stored in the config (one read from a
        file)."""
        return "stored graph" if is_stored_graph(self.graph) else self.graph

    @property
    def method_name(self) -> str:
        """``mappo``, ``ippo``, ``cppo`` or ``rn-<graph>``; a graph read from a file is ``rn-file`` (a path is no name)."""
        if self.algo != "rn":
            return self.algo
        graph = "file" if is_file_graph(self.graph) else self.graph
        periods = f"-p{self.periods.replace(',', '-')}" if self.period_list else ""
        reward = "" if self.vertex_reward == "psi" else f"-r{self.vertex_reward.replace(':', '').replace(',', '-')}"
        critics = f"-c{self.level_critics.replace(',', '-')}" if self.level_critics.strip() else ""
        warmup = f"-w{self.goal_warmup}" if self.goal_warmup else ""
        addressed = "-addressed" if self.instruct == "addressed" else ""
        frozen = f"-frozen-{self.freeze.replace(',', '-')}" if self.freeze.strip() else ""
        e2e = "-e2e" if self.learn == "gradient" else ""
        name = (graph.replace(':', '').replace(',', '-') + addressed + periods + reward + warmup + critics + e2e
                + frozen)
        return f"rn-{_slug(name)}"


def is_stored_graph(spec: str) -> bool:
    """Whether ``--graph`` holds the graph itself (node-link JSON, as a run stores a graph read from a file)."""
    return spec.lstrip().startswith("{")


def is_file_graph(spec: str) -> bool:
    """Whether ``--graph`` names a file, or holds a graph read from one."""
    return is_stored_graph(spec) or spec.endswith(".json") or os.sep in spec or "/" in spec


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

