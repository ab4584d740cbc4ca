"""``TrainConfig`` as nested option groups: the flat names, flags and YAML keys of the flat config it replaced still
work, and every old ``config.yaml`` and checkpoint configuration still loads."""
from __future__ import annotations

import dataclasses
import pickle

import pytest

from torchrl_rn.train import TrainConfig
from torchrl_rn.train.config import FLAT_ORDER, GROUPS, PPOConfig, RNConfig, RunConfig, TaskConfig
from torchrl_rn.train.run import resumed_config
from torchrl_rn.train.settings import RN_ONLY

#: a run's config.yaml as the flat TrainConfig wrote it (before the option groups), comments left out
#: settings added after these files were written, with their defaults (an old file loads them so)
ADDED_SINCE = {"freeze": "", "learn": "rl", "fused_loss": False}

OLD_YAML = """\
task: vmas/simple_spread
n_agents: null
continuous_actions: true
algo: rn
graph: tree:4
frames: 1200
frames_per_batch: 600
max_steps: 20
epochs: 2
minibatch_size: 200
lr: 0.0003
max_grad_norm: 1.0
gamma: 0.99
lmbda: 0.9
clip_epsilon: 0.2
entropy_coeff: 0.0001
normalize_advantage: true
value_norm: true
num_cells: 256
manager_cells: 64
share_params: true
phi: identity
beta: 0.0
neighbourhood: both
critic: group
detach_messages: false
periods: 1,5
observe_clock: false
vertex_reward: goal:pos
instruct: addressed
goal_warmup: 600
level_critics: ''
eval_every: 1
eval_envs: 2
seed: 3
device: cpu
workers: 1
ray: null
logger: ''
out: OUT
"""
#: the configuration a checkpoint of the flat TrainConfig stored (``dataclasses.asdict`` of it)
OLD_CHECKPOINT_CONFIG = {
    "task": "vmas/simple_spread", "n_agents": None, "continuous_actions": True, "algo": "rn", "graph": "tree:4",
    "frames": 1200, "frames_per_batch": 600, "max_steps": 20, "epochs": 2, "minibatch_size": 200, "lr": 0.0003,
    "max_grad_norm": 1.0, "gamma": 0.99, "lmbda": 0.9, "clip_epsilon": 0.2, "entropy_coeff": 0.0001,
    "normalize_advantage": True, "value_norm": True, "num_cells": 256, "manager_cells": 64, "share_params": True,
    "phi": "identity", "beta": 0.0, "neighbourhood": "both", "critic": "group", "detach_messages": False,
    "periods": "1,5", "observe_clock": False, "vertex_reward": "goal:pos", "instruct": "addressed", "goal_warmup": 600,
    "level_critics": "", "eval_every": 1, "eval_envs": 2, "seed": 3, "device": "cpu", "workers": 1, "ray": None,
    "logger": "", "out": "OUT",
}


def _expected(out: str) -> TrainConfig:
    return TrainConfig(env=TaskConfig(task="vmas/simple_spread", max_steps=20),
                       ppo=PPOConfig(frames=1200, frames_per_batch=600, epochs=2, minibatch_size=200,
                                     normalize_advantage=True, value_norm=True),
                       rn=RNConfig(graph="tree:4", periods="1,5", vertex_reward="goal:pos", instruct="addressed",
                                   goal_warmup=600),
                       run=RunConfig(eval_every=1, eval_envs=2, seed=3, out=out))


def test_an_old_flat_config_yaml_loads_and_is_written_back_with_the_same_keys(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(OLD_YAML.replace("OUT", str(tmp_path)))
    cfg = TrainConfig.from_yaml(path)
    assert cfg == _expected(str(tmp_path))
    assert (cfg.rn.instruct, cfg.env.max_steps, cfg.ppo.frames, cfg.run.seed) == ("addressed", 20, 1200, 3)
    keys = [line.split(":")[0] for line in cfg.to_yaml().splitlines() if not line.startswith("#")]
    assert keys == list(FLAT_ORDER)
    # the old keys, in their order; the settings added since (with their defaults) are the only others
    assert [k for k in keys if k not in ADDED_SINCE] == [line.split(":")[0] for line in OLD_YAML.splitlines()]


def test_an_old_checkpoint_configuration_loads(tmp_path):
    stored = {**OLD_CHECKPOINT_CONFIG, "out": "elsewhere"}  # a run folder copied since: it now lives in tmp_path
    cfg = resumed_config(tmp_path / "checkpoint.pt", state={"config": stored}, read_only=True)
    assert cfg == _expected(str(tmp_path))
    # and new checkpoints store the same, with the settings added since at their defaults
    assert cfg.to_flat() == {**OLD_CHECKPOINT_CONFIG, "out": str(tmp_path), **ADDED_SINCE}


def test_flat_names_read_write_and_build_through_the_groups():
    cfg = TrainConfig(task="mock", lr=1e-3, beta=0.5)
    assert (cfg.lr, cfg.ppo.lr, cfg.beta, cfg.rn.beta, cfg.task, cfg.env.task) == (1e-3, 1e-3, 0.5, 0.5, "mock", "mock")
    assert cfg == TrainConfig.from_flat(task="mock", lr=1e-3, beta=0.5) == TrainConfig(**cfg.to_flat())
    assert cfg == TrainConfig.from_dict({"task": "mock", "ppo": {"lr": 1e-3}, "rn": {"beta": 0.5}})
    cfg.lr = 2e-3
    assert cfg.ppo.lr == 2e-3
    other = dataclasses.replace(cfg, seed=4)  # a copy: its groups are its own
    other.lr = 5e-3
    assert (other.seed, other.task, cfg.seed, cfg.lr) == (4, "mock", 0, 2e-3)
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert TrainConfig(**{**cfg.__dict__, "seed": 5}).seed == 5
    assert TrainConfig.flatten(dataclasses.asdict(cfg)) == cfg.to_flat()


def test_groups_partition_the_flat_fields_and_rn_holds_the_rn_only_settings():
    assert sorted(FLAT_ORDER) == sorted(["algo", *(f.name for g in GROUPS.values() for f in dataclasses.fields(g))])
    assert {f.name for f in dataclasses.fields(RNConfig)} == set(RN_ONLY)
    assert [f.name for f in TrainConfig.flat_fields()] == list(FLAT_ORDER)
    assert all(f.metadata.get("help") for f in TrainConfig.flat_fields())


def test_bad_keywords_and_groups_are_refused_naming_them():
    with pytest.raises(TypeError, match="unexpected keyword argument 'learning_rate'"):
        TrainConfig(learning_rate=0.1)
    with pytest.raises(TypeError, match="TrainConfig's ppo must be a PPOConfig"):
        TrainConfig(ppo=3)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['ppo.graph'\]"):
        TrainConfig.from_dict({"ppo": {"graph": "flat"}})
    with pytest.raises(ValueError, match="--beta applies only to --algo rn"):
        TrainConfig(algo="mappo", rn=RNConfig(beta=0.5))
    with pytest.raises(ValueError, match="--frames must be >= 1"):
        TrainConfig(ppo={"frames": 0})


def test_an_old_checkpoint_resumes_with_the_settings_added_since_at_their_defaults(tmp_path):
    """The benchmark harness resumes with every setting spelled out: those added after the checkpoint was written
    are accepted at their defaults (what the run had) and refused at any other value."""
    stored = {**OLD_CHECKPOINT_CONFIG, "out": str(tmp_path)}
    settings = {**OLD_CHECKPOINT_CONFIG, "out": str(tmp_path), **ADDED_SINCE}
    cfg = resumed_config(tmp_path / "checkpoint.pt", state={"config": stored}, settings=settings)
    assert cfg == _expected(str(tmp_path))
    with pytest.raises(ValueError, match="--learn 'gradient' cannot be given with --resume: the checkpoint predates"):
        resumed_config(tmp_path / "checkpoint.pt", state={"config": stored}, settings={**settings, "learn": "gradient"})
