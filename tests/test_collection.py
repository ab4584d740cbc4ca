"""Collection in worker processes (TorchRL's MultiSyncCollector) and on Ray (TorchRL's RayCollector)."""
from __future__ import annotations

import contextlib
import csv
import doctest
import importlib.util
import ipaddress
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from torchrl.modules import TanhNormal

from torchrl_rn import RNTrainer
from torchrl_rn.train import TrainConfig, collection, load_checkpoint, main

ARGS = ["train", "--task", "mock", "--n-agents", "4", "--frames", "400", "--frames-per-batch", "200", "--max-steps", "5",
        "--minibatch-size", "100", "--epochs", "1", "--num-cells", "16", "--manager-cells", "16", "--eval-envs", "4",
        "--eval-every", "1", "--no-progress"]


def _record_batches(monkeypatch) -> list[dict]:
    """Patches ``RNTrainer.update`` to record each batch and then zero the policy's parameters: a batch collected after
    the trainer's ``update_policy_weights_`` has every motor's ``loc`` exactly 0, one collected with stale weights not."""
    seen: list[dict] = []
    original = RNTrainer.update

    def update(self, data):
        seen.append({"shape": tuple(data.shape), "loc_zero": bool((data["agents", "loc"] == 0).all()),
                     "ray_node": _ray_node_ip()})
        loss = original(self, data)
        with torch.no_grad():
            for p in self.policy.parameters():
                p.zero_()
        return loss

    monkeypatch.setattr(RNTrainer, "update", update)
    return seen


def _ray_node_ip() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return None
    import ray

    return ray._private.worker._global_node.node_ip_address if ray.is_initialized() else None


def _check_results(run, seen):
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert [int(r["frames"]) for r in rows] == [200, 400] and all(r["eval_return"] for r in rows)
    assert load_checkpoint(run)["frames"] == 400
    assert (run / "curve.png").exists()
    # the workers' batches are merged into one process's [num_envs, max_steps] batch
    assert [s["shape"] for s in seen] == [(40, 5), (40, 5)]
    # the second batch was collected with the weights the trainer had after its first update
    assert [s["loc_zero"] for s in seen] == [False, True]


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
def test_workers_train_and_write_results_folder(tmp_path, monkeypatch):
    seen = _record_batches(monkeypatch)
    assert main([*ARGS, "--workers", "2", "--out", str(tmp_path / "run")]) == 0
    _check_results(tmp_path / "run", seen)


_NO_RAY = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed (extra 'distributed')")


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
@pytest.mark.parametrize("where", [pytest.param([], id="processes"),
                                   pytest.param(["--ray", "local"], marks=_NO_RAY, id="ray")])
def test_goal_warmup_reaches_the_workers(tmp_path, monkeypatch, where):
    """The warm-up flag travels with the weights: the workers' first batch holds random goals (not the managers' own
    samples, so the stored log-probability is not the actor's density at the action), the second the actor's. Also
    through TorchRL's Ray collector."""
    seen: list[bool] = []
    original = RNTrainer.update

    def update(self, data):
        loc, scale, action = (data["level1", k] for k in ("loc", "scale", "action"))
        density = TanhNormal(loc, scale, low=-1.0, high=1.0).log_prob(action)
        seen.append(bool(torch.allclose(density, data["level1", "action_log_prob"], atol=1e-3)))
        return original(self, data)

    monkeypatch.setattr(RNTrainer, "update", update)
    assert main([*ARGS, "--workers", "2", *where, "--vertex-reward", "goal:pos", "--goal-warmup", "200",
                 "--out", str(tmp_path / "run")]) == 0
    assert seen == [False, True]


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
@_NO_RAY
def test_ray_local_trains_on_loopback_and_shuts_down(tmp_path, monkeypatch):
    import ray

    assert not ray.is_initialized()
    seen = _record_batches(monkeypatch)
    assert main([*ARGS, "--workers", "2", "--ray", "local", "--out", str(tmp_path / "run")]) == 0
    _check_results(tmp_path / "run", seen)
    assert [s["ray_node"] for s in seen] == ["127.0.0.1", "127.0.0.1"]  # a loopback-only local instance
    assert not ray.is_initialized()  # the collector's shutdown stopped the instance it started


def test_workers_must_divide_envs():
    with pytest.raises(ValueError, match=r"workers \(3\) must divide the number of envs.*40"):
        TrainConfig(frames_per_batch=200, max_steps=5, workers=3)
    with pytest.raises(ValueError, match="workers"):
        TrainConfig(workers=0)


def test_worker_env_fns_split_envs_and_seeds():
    fns = collection.worker_env_fns(collection.task_env_fn("mock", n_agents=2, max_steps=5), None, num_envs=6,
                                    workers=3, seed=7)
    envs = [fn() for fn in fns]
    assert [e.batch_size for e in envs] == [torch.Size([2])] * 3
    # worker i is seeded with seed + i: worker 0 sees what a one-process env seeded 7 sees
    one = collection.wrap_env(collection.task_env_fn("mock", n_agents=2, max_steps=5)(2, 7), None)
    first = envs[0].reset()["agents", "observation"]
    torch.testing.assert_close(first, one.reset()["agents", "observation"])
    assert not torch.equal(first, envs[1].reset()["agents", "observation"])  # and worker 1 other episodes
    with pytest.raises(ValueError, match=r"num_envs \(6\) must be a positive multiple of workers \(4\)"):
        collection.worker_env_fns(collection.task_env_fn("mock"), None, num_envs=6, workers=4)


def test_ray_init_config_local_is_loopback_without_dashboard():
    cfg = collection.ray_init_config("local", num_cpus=2)
    assert cfg["include_dashboard"] is False and cfg["_node_ip_address"] == "127.0.0.1" and cfg["num_cpus"] == 2
    assert collection.ray_init_config("10.0.0.1:6379")["address"] == "10.0.0.1:6379"


@pytest.mark.slow  # a subprocess: seconds of interpreter start-up and imports
def test_module_example_runs():
    result = doctest.testmod(collection, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket the processes ``pids`` listen on (from /proc, Linux)."""
    inodes = set()
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        for fd in (fds.iterdir() if fds.exists() else []):
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == "0A" and fields[9] in inodes:
                raw = bytes.fromhex(address)
                ip = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4)))
                ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:127.0.0.1 is 127.0.0.1
                found.append((ip.compressed, int(port, 16)))
    return found


def _family(root: int) -> set[int]:
    """``root`` and its descendants (Ray's GCS, raylet and workers when this process started the instance)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    family, grew = {root}, True
    while grew:
        new = {pid for pid, parent in parents.items() if parent in family} - family
        family |= new
        grew = bool(new)
    return family


def test_loopback_weight_sync_binds_torchs_store_to_loopback():
    import torch.distributed as dist
    from torchrl.weight_update import _ray

    def store():
        return dist.TCPStore("0.0.0.0", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=5))

    plain = store()  # what TorchRL's RayWeightSyncScheme opens: every interface
    assert collection.listening_addresses(plain.port) in (["0.0.0.0"], ["::"])
    with collection.loopback_weight_sync():
        bound = store()
        told = _ray.socket.gethostbyname(_ray.socket.gethostname())  # the address the workers are given
        client = dist.TCPStore(told, bound.port, is_master=False, timeout=timedelta(seconds=5))
    assert collection.listening_addresses(bound.port) == ["127.0.0.1"] and told == "127.0.0.1"
    bound.set("weights", "v1")
    assert client.get("weights") == b"v1"
    assert dist.TCPStore is not None and _ray.socket is socket  # restored
    assert ("127.0.0.1", bound.port) in _listening({os.getpid()})


@pytest.mark.slow  # Ray's start-up
@_NO_RAY
def test_ray_local_listens_on_loopback_only(tmp_path, monkeypatch):
    """Every socket a ``--ray local`` run listens on, this process's (TorchRL's weight-sync store included) and its Ray
    instance's, is on the loopback interface."""
    seen: list[list[tuple[str, int]]] = []
    original = RNTrainer.update

    def update(self, data):
        seen.append(_listening(_family(os.getpid())))
        return original(self, data)

    monkeypatch.setattr(RNTrainer, "update", update)
    assert main([*ARGS, "--workers", "2", "--ray", "local", "--out", str(tmp_path / "run")]) == 0
    assert len(seen) == 2 and seen[0], seen
    outside = [(address, port) for sockets in seen for address, port in sockets
               if not ipaddress.ip_address(address).is_loopback]
    assert outside == [], outside
