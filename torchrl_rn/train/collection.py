"""Collection: the collector of a run, in one process, in worker processes, or on a Ray cluster.

Every path is a stock TorchRL collector; only where the envs run changes:

* ``workers=1``: :class:`~torchrl.collectors.Collector` over one env batch of ``num_envs`` vectorised envs, in the
  training process;
* ``workers=N``: :class:`~torchrl.collectors.MultiSyncCollector` with ``N`` worker processes, each building its own
  env batch of ``num_envs // N`` envs in-process and collecting ``frames_per_batch // N`` frames of every batch; the
  worker batches are concatenated along the env dimension (``cat_results=0``), so the training loop gets the same
  ``[num_envs, max_steps]`` batch as from one process;
* ``ray=ADDRESS``: TorchRL's :class:`~torchrl.collectors.distributed.RayCollector` with ``N`` remote
  :class:`~torchrl.collectors.Collector` actors (one CPU each), the same split, synchronised (one batch from every
  actor per iteration), merged to the same ``[num_envs, max_steps]`` batch. ``ray="local"`` starts a Ray instance
  in this machine listening on the loopback interface only, with its dashboard off, and binds TorchRL's weight-sync
  store to the loopback interface too (:func:`loopback_weight_sync`); any other address joins a
  running cluster (``ray start --head`` on one machine, ``ray start --address=<head>:6379`` on the others).

Worker ``i`` seeds its envs with ``seed + i``, so one worker collects exactly what one process collects. Workers get
the policy's weights after every :meth:`~torchrl.collectors.BaseCollector.update_policy_weights_`, as in TorchRL.

Worker processes are started with ``spawn`` (TorchRL's default), so the env constructor must be picklable: a
module-level function, or a :func:`functools.partial` of one (never a lambda). :func:`task_env_fn` and
:func:`worker_env_fns` build such constructors.

Examples:
    Your own training loop, collecting with two worker processes (two envs each) on the mock task:

    >>> from torchrl_rn import GraphComposer, RNGraph
    >>> from torchrl_rn.train.collection import make_collector, task_env_fn, worker_env_fns
    >>> graph = RNGraph.from_spec("tree:2", 4)
    >>> env_fn = task_env_fn("mock", n_agents=4, max_steps=5)
    >>> env = worker_env_fns(env_fn, graph, num_envs=4)[0]()  # specs for the models
    >>> composer = GraphComposer(graph, env, num_cells=16)
    >>> collector = make_collector(env_fn, composer.policy, graph=graph, num_envs=4, frames_per_batch=20,
    ...                            total_frames=40, workers=2)
    >>> for data in collector:
    ...     # ... compute advantages and update composer's modules here, then:
    ...     collector.update_policy_weights_()
    >>> data.batch_size
    torch.Size([4, 5])
    >>> collector.shutdown()
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import ipaddress
import os
import socket
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import BaseCollector, Collector, MultiSyncCollector
from torchrl.envs import EnvBase, RewardSum, TransformedEnv

from torchrl_rn.envs import LevelEnv, make_env
from torchrl_rn.graph import RNGraph

__all__ = ["make_collector", "ray_init_config", "task_env_fn", "worker_env_fns", "wrap_env", "loopback_weight_sync",
           "listening_addresses"]

EnvFn = Callable[[int, int], EnvBase]


def _task_env(task: str, n_agents: int | None, max_steps: int, device: str, continuous_actions: bool, num_envs: int,
              seed: int) -> EnvBase:
    return make_env(task, n_agents=n_agents, num_envs=num_envs, max_steps=max_steps, device=device, seed=seed,
                    continuous_actions=continuous_actions)


def task_env_fn(task: str, *, n_agents: int | None = None, max_steps: int = 100, device: str = "cpu",
                continuous_actions: bool = True) -> EnvFn:
    """A picklable ``env_fn(num_envs, seed) -> EnvBase`` of :func:`~torchrl_rn.envs.make_env`'s task
    (``continuous_actions=False``: discrete actions, for tasks that offer both)."""
    return functools.partial(_task_env, task, n_agents, max_steps, str(device), continuous_actions)


def wrap_env(env: EnvBase, graph: RNGraph | None) -> TransformedEnv:
    """The training env of a run: ``env`` under :class:`LevelEnv` (``graph`` given) and a ``RewardSum`` of the agents'
    rewards into ``("agents", "episode_reward")``."""
    if not isinstance(env, TransformedEnv):  # appended, not nested: TorchRL warns when it unwraps nested ones
        env = TransformedEnv(env)
    if graph is not None:
        env.append_transform(LevelEnv(graph))
    env.append_transform(RewardSum(in_keys=[("agents", "reward")], out_keys=[("agents", "episode_reward")]))
    return env


def _worker_env(env_fn: EnvFn, graph: RNGraph | None, num_envs: int, seed: int) -> TransformedEnv:
    return wrap_env(env_fn(num_envs, seed), graph)


def worker_env_fns(env_fn: EnvFn, graph: RNGraph | None, *, num_envs: int, workers: int = 1,
                   seed: int = 0) -> list[Callable[[], TransformedEnv]]:
    """One picklable env constructor per worker: worker ``i`` builds ``wrap_env(env_fn(num_envs // workers, seed + i),
    graph)``.

    Raises:
        ValueError: ``num_envs`` is not a multiple of ``workers``.
    """
    if workers < 1 or num_envs % workers:
        raise ValueError(f"num_envs ({num_envs}) must be a positive multiple of workers ({workers}).")
    return [functools.partial(_worker_env, env_fn, graph, num_envs // workers, seed + i) for i in range(workers)]


def ray_init_config(address: str, *, num_cpus: int | None = None) -> dict:
    """``ray.init`` keyword arguments for ``address``: ``"local"`` starts a Ray instance on this machine (``num_cpus``
    CPUs, all by default) with its dashboard off; any other address joins that cluster (``"auto"``: the one
    ``ray start`` began on this machine; ``"<head>:6379"``: a remote head)."""
    if address == "local":
        return {"address": "local", "num_cpus": num_cpus, "include_dashboard": False,
                "_node_ip_address": "127.0.0.1", "log_to_driver": False}
    return {"address": address, "log_to_driver": False}


@contextlib.contextmanager
def _loopback_only():
    """Ray binds its servers to the node's address, which it resolves to a routable one even when given 127.0.0.1,
    except where clusters are disabled (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, Ray's own switch): then the node is
    127.0.0.1 and every Ray server of the local instance listens on the loopback interface only."""
    from ray._private import ray_constants

    var, before = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", (os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"),
                                                        ray_constants.ENABLE_RAY_CLUSTER)
    os.environ[var], ray_constants.ENABLE_RAY_CLUSTER = "0", False  # the env var reaches Ray's own processes
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before[1]
        if before[0] is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = before[0]


@contextlib.contextmanager
def loopback_weight_sync() -> Iterator[None]:
    """TorchRL's Ray weight sync (``RayWeightSyncScheme``) opens an unauthenticated ``torch.distributed.TCPStore`` that
    listens on every interface, and tells the workers the address of this machine's hostname. Inside this context
    (``--ray local``: every worker runs here) such a store listens on 127.0.0.1 only (a socket bound there, handed to
    it as ``master_listen_fd``), and the workers are told 127.0.0.1.

    Examples:
        >>> import datetime, torch.distributed as dist
        >>> with loopback_weight_sync():
        ...     store = dist.TCPStore("0.0.0.0", 0, is_master=True, wait_for_workers=False,
        ...                           timeout=datetime.timedelta(seconds=5))
        >>> listening_addresses(store.port)
        ['127.0.0.1']
    """
    from torchrl.weight_update import _ray

    real_store, real_socket = torch.distributed.TCPStore, _ray.socket

    def loopback_store(host_name: str, port: int, *args: Any, is_master: bool = False, **kwargs: Any):
        if not is_master or port != 0 or kwargs.get("master_listen_fd") is not None:
            return real_store(host_name, port, *args, is_master=is_master, **kwargs)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        kwargs["master_listen_fd"] = sock.detach()  # the store's server owns the socket from now on
        return real_store("127.0.0.1", port, *args, is_master=True, **kwargs)

    torch.distributed.TCPStore = loopback_store
    _ray.socket = types.SimpleNamespace(gethostname=socket.gethostname, gethostbyname=lambda host: "127.0.0.1",
                                        gaierror=socket.gaierror)
    try:
        yield
    finally:
        torch.distributed.TCPStore, _ray.socket = real_store, real_socket


def listening_addresses(port: int) -> list[str]:
    """The local addresses a TCP socket of this machine listens on at ``port`` (Linux: ``/proc/net/tcp*``), e.g.
    ``["127.0.0.1"]``, or ``["0.0.0.0"]``/``["::"]`` for every interface."""
    found = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))  # each 32-bit word is little-endian
                    found.append(ipaddress.ip_address(raw).compressed)
    return found


def _merge_workers(data: TensorDictBase) -> TensorDictBase:
    # RayCollector stacks the workers' [E/N, T] batches into [N, E/N, T]; the trainer wants one process's [E, T]
    return data.reshape(-1, data.shape[-1])


def make_collector(env_fn: EnvFn, policy: TensorDictModuleBase, *, graph: RNGraph | None, num_envs: int,
                   frames_per_batch: int, total_frames: int = -1, workers: int = 1, ray: str | None = None,
                   seed: int = 0, device: str | torch.device = "cpu", env: EnvBase | None = None) -> BaseCollector:
    """A TorchRL collector of ``frames_per_batch`` frames per batch from ``num_envs`` envs split over ``workers``.

    Args:
        env_fn (callable): ``env_fn(num_envs, seed) -> EnvBase``, the base env (without :class:`LevelEnv`); picklable
            when ``workers > 1`` or ``ray`` is given.
        policy (TensorDictModuleBase): the policy, e.g. :attr:`GraphComposer.policy`; workers get a copy.

    Keyword Args:
        graph (RNGraph or None): the env is wrapped by :func:`wrap_env` (``None``: no :class:`LevelEnv`).
        num_envs (int): vectorised envs in all, ``num_envs // workers`` per worker.
        frames_per_batch (int): frames of every batch, all workers together.
        total_frames (int): frames before the collector stops (-1: never).
        workers (int): 1 collects in this process; more start :class:`~torchrl.collectors.MultiSyncCollector`
            worker processes (or Ray actors with ``ray``).
        ray (str, optional): a Ray address (``"local"``: a loopback-only instance on this machine) for TorchRL's
            :class:`~torchrl.collectors.distributed.RayCollector`; needs the ``distributed`` extra.
        seed (int): worker ``i`` seeds its envs with ``seed + i``.
        device: where the policy runs and the batch is stored.
        env (EnvBase, optional): an already built env for the one-process collector (``workers=1``, no ``ray``).

    Raises:
        ValueError: ``num_envs`` or ``frames_per_batch`` not a multiple of ``workers``.
        ImportError: ``ray`` given without Ray installed.
    """
    if frames_per_batch % workers:
        raise ValueError(f"frames_per_batch ({frames_per_batch}) must be a multiple of workers ({workers}).")
    env_fns = worker_env_fns(env_fn, graph, num_envs=num_envs, workers=workers, seed=seed)
    # our policies are not recurrent: no InitTracker/primer for torchrl to add (and no FutureWarning about it)
    common = {"device": device, "auto_register_policy_transforms": False}
    if ray is not None:
        return _ray_collector(env_fns, policy, ray=ray, frames_per_batch=frames_per_batch, total_frames=total_frames,
                              device=device)
    if workers == 1:
        return Collector(env if env is not None else env_fns[0](), policy, frames_per_batch=frames_per_batch,
                         total_frames=total_frames, **common)
    # one thread per worker: N workers of vectorised envs already use N cores
    return MultiSyncCollector(env_fns, policy, frames_per_batch=frames_per_batch, total_frames=total_frames,
                              cat_results=0, num_sub_threads=1, **common)


def _ray_collector(env_fns: Sequence[Callable], policy, *, ray: str, frames_per_batch: int, total_frames: int,
                   device) -> BaseCollector:
    if importlib.util.find_spec("ray") is None:
        raise ImportError("--ray needs Ray: pip install 'torchrl-rn[distributed]'")
    from torchrl.collectors.distributed import RayCollector

    # the collector starts Ray (and shuts it down in its shutdown()) unless this process is already connected
    local = ray == "local"
    with _loopback_only() if local else contextlib.nullcontext(), \
            loopback_weight_sync() if local else contextlib.nullcontext():
        collector = RayCollector(
            list(env_fns), policy, collector_class=Collector, num_collectors=len(env_fns), sync=True,
            frames_per_batch=frames_per_batch, total_frames=total_frames, device=device, postproc=_merge_workers,
            collector_kwargs={"auto_register_policy_transforms": False},
            ray_init_config=ray_init_config(ray, num_cpus=len(env_fns) if local else None),
            remote_configs={"num_cpus": 1, "num_gpus": 0.2 if torch.cuda.is_available() else None},
        )
        collector.update_policy_weights_(policy)  # connects TorchRL's weight sync now, not lazily at the first update
    return collector
