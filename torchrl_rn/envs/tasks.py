"""Task factories: TorchRL envs whose agents form the group ``"agents"``, ready for an RN graph.

* ``"vmas/<scenario>"``: :class:`~torchrl.envs.VmasEnv` (balance, simple_spread, navigation, transport, ...);
* ``"mock"``: :class:`MockMultiAgentEnv`, a tiny deterministic env for tests and quick tutorials;
* ``"gym/<id>"``: a single-agent Gymnasium env as a one-agent group (:class:`SingleAgentGroup`);
* ``"pettingzoo/<name>"`` or ``"pettingzoo/<family>/<name>"``: a PettingZoo parallel env (``simple_spread_v3``,
  ``mpe/simple_spread_v3``, ``sisl/multiwalker_v9``, ...; the name TorchRL's
  :class:`~torchrl.envs.PettingZooEnv` takes as ``task``) wrapped by :class:`~torchrl.envs.PettingZooWrapper` with
  all its agents in one group, vectorised by :class:`~torchrl.envs.SerialEnv`. Needs ``pip install pettingzoo mpe2``
  (the ``pettingzoo`` extra); MPE lives in ``mpe2`` since PettingZoo 1.25.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
import warnings

import torch
from torchrl.data import Composite
from torchrl.envs import EnvBase, TransformedEnv

from torchrl_rn.envs.mock import MockMultiAgentEnv, SingleAgentGroup
from torchrl_rn.keys import ENV_GROUP

__all__ = ["make_env", "default_max_steps", "DEFAULT_MAX_STEPS", "DEFAULT_N_AGENTS", "vmas_scenarios",
           "pettingzoo_tasks", "PETTINGZOO_FAMILIES"]

#: Agent counts used when ``n_agents`` is not given (balance and simple_spread as in TAG/BenchMARL, navigation as
#: in TorchRL's multi-agent PPO tutorial).
DEFAULT_N_AGENTS = {"balance": 4, "simple_spread": 4, "navigation": 3}
_MIN_AGENTS = {"balance": 2}
#: PettingZoo env families and the package each lives in (MPE left PettingZoo for ``mpe2`` in PettingZoo 1.25).
#: ``pettingzoo/<name>`` searches them in this order.
PETTINGZOO_FAMILIES = {"mpe": "mpe2", "sisl": "pettingzoo.sisl", "butterfly": "pettingzoo.butterfly",
                       "classic": "pettingzoo.classic", "atari": "pettingzoo.atari"}
#: Keyword arguments by which PettingZoo envs take their agent count (MPE's ``N``, SISL's, pistonball's).
_PZ_AGENT_KWARGS = ("N", "n_agents", "num_agents", "n_pistons", "n_walkers", "n_pursuers")
_PZ_INSTALL = "pip install pettingzoo mpe2 (torchrl-rn's 'pettingzoo' extra)"


def vmas_scenarios() -> list[str]:
    """Names of the VMAS scenarios installed (``vmas/<name>`` tasks)."""
    import vmas

    return sorted(set(vmas.scenarios) | set(vmas.mpe_scenarios) | set(vmas.debug_scenarios))


def pettingzoo_tasks() -> list[str]:
    """Names of the PettingZoo envs the installed packages ship, as ``"<family>/<name>"`` (``pettingzoo/...`` tasks).

    Lists the modules without importing them: an env whose family's own dependencies are missing is listed, and
    :func:`make_env` says which pip package it needs.

    Examples:
        >>> "mpe/simple_spread_v3" in pettingzoo_tasks()
        True
    """
    if importlib.util.find_spec("pettingzoo") is None:
        raise ImportError(f"PettingZoo is not installed: {_PZ_INSTALL}.")
    tasks = []
    for family, package in PETTINGZOO_FAMILIES.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        tasks += [f"{family}/{m.name}" for m in pkgutil.iter_modules(spec.submodule_search_locations)
                  if re.fullmatch(r"\w+_v\d+", m.name)]
    return sorted(tasks)


def make_env(
    task: str,
    *,
    n_agents: int | None = None,
    num_envs: int = 32,
    max_steps: int = 100,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    continuous_actions: bool = True,
    **scenario_kwargs,
) -> EnvBase:
    """Builds the TorchRL env of ``task``, its agents in the group ``"agents"``.

    Args:
        task (str): ``"vmas/<scenario>"``, ``"mock"``, ``"gym/<id>"`` (e.g. ``"gym/Pendulum-v1"``) or
            ``"pettingzoo/<name>"`` / ``"pettingzoo/<family>/<name>"`` (e.g. ``"pettingzoo/simple_spread_v3"``;
            see :func:`pettingzoo_tasks`). A PettingZoo env must be a parallel env whose agents all have the same
            observation and action spaces; root ``done``/``terminated``/``truncated`` are set when any agent is done
            (TorchRL's ``PettingZooWrapper`` also keeps its per-agent flags in the group).

    Keyword Args:
        n_agents (int, optional): number of agents (VMAS, mock and PettingZoo envs that take an agent count, such
            as MPE's ``N``; gym takes only 1); defaults to :data:`DEFAULT_N_AGENTS` or the scenario's own default.
        num_envs (int): vectorised environments (the env's batch size).
        max_steps (int): episode length limit (PettingZoo's ``max_cycles``). Reaching it is a *truncation*
            (``truncated=True``, ``terminated=False``) for every task, so advantage estimators bootstrap there;
            VMAS envs get it from TorchRL's :class:`~torchrl.envs.StepCounter`.
        device: where the env runs; CPU by default.
        seed (int, optional): seeds the env.
        continuous_actions (bool): continuous (default) or discrete actions, for VMAS, mock and PettingZoo envs
            that offer both (a Gymnasium or other PettingZoo env keeps its own action space; a discrete one is a
            ``Categorical`` index).
        **scenario_kwargs: passed to the VMAS scenario, to :class:`MockMultiAgentEnv` (``obs_dim``, ``action_dim``,
            ``n_actions``), to ``gymnasium.make_vec`` or to the PettingZoo env's ``parallel_env``.

    Raises:
        ValueError: an unknown task or scenario, an agent count the task cannot take, or PettingZoo agents that
            cannot form one group; the message names the task.
        ImportError: a PettingZoo task whose packages are not installed; the message says what to pip install.

    Examples:
        >>> env = make_env("vmas/balance", n_agents=4, num_envs=2)
        >>> env.full_action_spec["agents", "action"].shape
        torch.Size([2, 4, 2])
        >>> env = make_env("pettingzoo/simple_spread_v3", n_agents=3, num_envs=2, max_steps=25, seed=0)
        >>> env.full_observation_spec["agents", "observation"].shape, env.full_action_spec["agents", "action"].shape
        (torch.Size([2, 3, 18]), torch.Size([2, 3, 5]))
    """
    prefix, _, name = task.partition("/")
    if n_agents is not None and (not isinstance(n_agents, int) or n_agents < _MIN_AGENTS.get(name, 1)):
        raise ValueError(
            f"task {task!r} cannot take n_agents={n_agents!r}: it needs at least {_MIN_AGENTS.get(name, 1)} agent(s)."
        )
    if task == "mock":
        return MockMultiAgentEnv(n_agents or 3, num_envs=num_envs, max_steps=max_steps, device=device, seed=seed,
                                 discrete=not continuous_actions, **scenario_kwargs)
    if prefix == "gym" and name:
        import gymnasium as gym
        from torchrl.envs import GymWrapper

        if name not in gym.registry:
            raise ValueError(f"unknown task {task!r}: no Gymnasium env {name!r}.")
        if n_agents not in (None, 1):
            raise ValueError(f"task {task!r} cannot take n_agents={n_agents!r}: a Gymnasium env has 1 agent.")
        vec = gym.make_vec(name, num_envs=num_envs, vectorization_mode="sync", max_episode_steps=max_steps,
                           vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED}, **scenario_kwargs)
        env = TransformedEnv(GymWrapper(vec, device=device, categorical_action_encoding=True), SingleAgentGroup())
        if seed is not None:
            env.set_seed(seed)
        return env
    if prefix == "vmas" and name:
        known = vmas_scenarios()
        if name not in known:
            raise ValueError(f"unknown task {task!r}: no VMAS scenario {name!r}. Known: {', '.join(known)}.")
        from torchrl.envs import VmasEnv

        if n_agents is not None:
            scenario_kwargs["n_agents"] = n_agents
        elif name in DEFAULT_N_AGENTS:
            scenario_kwargs["n_agents"] = DEFAULT_N_AGENTS[name]
        from torchrl.envs import StepCounter

        # VmasEnv(max_steps=...) marks the horizon as *terminated* (TorchRL's VmasEnv docs), so GAE would never
        # bootstrap at the time limit; TorchRL's StepCounter marks it as *truncated* instead.
        env = VmasEnv(name, num_envs=num_envs, continuous_actions=continuous_actions, max_steps=None,
                      device=device, seed=seed, **scenario_kwargs)
        if list(env.group_map) != [ENV_GROUP]:
            raise ValueError(f"task {task!r} has agent groups {list(env.group_map)}; torchrl-rn needs one group.")
        return TransformedEnv(env, StepCounter(max_steps))
    if prefix == "pettingzoo" and name:
        return _make_pettingzoo(task, name, n_agents=n_agents, num_envs=num_envs, max_steps=max_steps, device=device,
                                seed=seed, continuous_actions=continuous_actions, **scenario_kwargs)
    raise ValueError(
        f"unknown task {task!r}; use 'vmas/<scenario>' (e.g. vmas/balance), 'gym/<id>' (e.g. gym/Pendulum-v1), "
        "'pettingzoo/<name>' (e.g. pettingzoo/simple_spread_v3) or 'mock'."
    )


#: the episode length of a task that sets none of its own (VMAS, gym, mock), and of ``make_env``
DEFAULT_MAX_STEPS = 100


def default_max_steps(task: str) -> int:
    """The episode length of ``task`` when none is asked for: a PettingZoo env's own ``max_cycles`` default (25 for
    ``simple_spread_v3``), else :data:`DEFAULT_MAX_STEPS`. A task that cannot be found gets the latter (building it
    then names the problem).

    Examples:
        >>> default_max_steps("vmas/balance"), default_max_steps("mock")
        (100, 100)
    """
    prefix, _, name = task.partition("/")
    if prefix != "pettingzoo" or not name:
        return DEFAULT_MAX_STEPS
    try:
        module = _pettingzoo_module(task, name)
        param = inspect.signature(getattr(module, "raw_env", module.parallel_env)).parameters.get("max_cycles")
    except (ImportError, ValueError, AttributeError, TypeError):
        return DEFAULT_MAX_STEPS
    default = getattr(param, "default", None)
    return default if isinstance(default, int) and not isinstance(default, bool) and default > 0 else DEFAULT_MAX_STEPS


def _pettingzoo_module(task: str, name: str):
    """The module of PettingZoo env ``name`` (``<name>`` or ``<family>/<name>``), imported."""
    if importlib.util.find_spec("pettingzoo") is None:
        raise ImportError(f"task {task!r} needs PettingZoo, which is not installed: {_PZ_INSTALL}.")
    known = pettingzoo_tasks()
    found = [t for t in known if name in (t, t.partition("/")[2])]
    if not found:
        hint = "" if importlib.util.find_spec("mpe2") else " (MPE envs such as simple_spread_v3 need pip install mpe2)"
        raise ValueError(f"unknown task {task!r}: no PettingZoo env {name!r}{hint}. Known: {', '.join(known)}.")
    family, _, env_name = found[0].partition("/")
    try:
        return importlib.import_module(f"{PETTINGZOO_FAMILIES[family]}.{env_name}")
    except ImportError as err:
        package = "mpe2" if family == "mpe" else f"'pettingzoo[{family}]'"
        raise ImportError(f"task {task!r} needs PettingZoo's {family} dependencies: pip install {package} ({err}).") \
            from err


def _make_pettingzoo(task: str, name: str, *, n_agents, num_envs, max_steps, device, seed, continuous_actions,
                     **kwargs) -> EnvBase:
    from torchrl.envs import PettingZooWrapper, SerialEnv, StepCounter
    from torchrl.envs.utils import MarlGroupMapType

    # TorchRL's PettingZooEnv(task=...) cannot find MPE: torchrl 0.14.1 looks tasks up in PettingZoo's own modules,
    # which lost MPE to mpe2 in PettingZoo 1.25 (and, unless every family's dependencies are installed, its fallback
    # import crashes on PettingZoo's MPE stub). So we find the module and use TorchRL's PettingZooWrapper.
    module = _pettingzoo_module(task, name)
    if not hasattr(module, "parallel_env"):
        raise ValueError(f"task {task!r} has no parallel API (its agents take turns); torchrl-rn needs every agent "
                         "to act at every step.")
    creator = getattr(module, "raw_env", module.parallel_env)
    params = inspect.signature(creator).parameters
    count = next((k for k in _PZ_AGENT_KWARGS if k in params), None)
    if n_agents is not None and count is not None:
        kwargs.setdefault(count, n_agents)
    for flag in ("continuous_actions", "continuous"):
        if flag in params:
            kwargs.setdefault(flag, continuous_actions)
            break
    max_cycles = "max_cycles" in params
    if max_cycles:
        kwargs.setdefault("max_cycles", max_steps)

    probe = module.parallel_env(**kwargs)
    agents = list(probe.possible_agents)
    spaces = [(probe.observation_space(a), probe.action_space(a)) for a in agents]
    probe.close()
    if n_agents is not None and n_agents != len(agents):
        raise ValueError(f"task {task!r} cannot take n_agents={n_agents!r}: it has {len(agents)} agent(s).")
    odd = next((k for k, sp in enumerate(spaces) if sp != spaces[0]), None)
    if odd is not None:
        raise ValueError(
            f"task {task!r}: its agents cannot form one group: {agents[odd]!r} has (observation, action) spaces "
            f"{spaces[odd]} but {agents[0]!r} has {spaces[0]}; torchrl-rn needs agents with identical spaces."
        )

    def make_one():
        with warnings.catch_warnings():  # TorchRL warns on any PettingZoo but 1.24.3; we test 1.25 to 1.27
            warnings.filterwarnings("ignore", message="PettingZoo in TorchRL is tested")
            return PettingZooWrapper(module.parallel_env(**kwargs), group_map=MarlGroupMapType.ALL_IN_ONE_GROUP,
                                     categorical_actions=True, device=device)

    env = SerialEnv(num_envs, make_one, device=device)
    observation = env.full_observation_spec[ENV_GROUP, "observation"]
    if isinstance(observation, Composite) or observation.ndim != 3 or not observation.dtype.is_floating_point:
        raise ValueError(
            f"task {task!r} has {type(observation).__name__} observations of shape {tuple(observation.shape[2:])} "
            f"({getattr(observation, 'dtype', 'nested')}) per agent; torchrl-rn needs one flat float vector per agent."
        )
    if not max_cycles:  # an env without PettingZoo's episode limit: TorchRL's step counter truncates it
        env = TransformedEnv(env, StepCounter(max_steps))
    if seed is not None:
        env.set_seed(seed)
    return env
