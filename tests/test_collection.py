"""Collection in worker processes (TorchRL's MultiSyncCollector) and on Ray (TorchRL's RayCollector)."""
from __future__ import annotations

import csv
import doctest
import importlib.util

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
