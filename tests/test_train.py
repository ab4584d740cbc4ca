from __future__ import annotations

import csv
import dataclasses
import json

import networkx as nx
import pytest
import torch

from torchrl_rn import RNTrainer
from torchrl_rn.envs import MockMultiAgentEnv
from torchrl_rn.train import TrainConfig, load_checkpoint, main


def mock_env_fn(n_agents=3):
    return lambda num_envs, seed: MockMultiAgentEnv(n_agents, num_envs=num_envs, seed=seed, max_steps=5)


def tiny_config(tmp_path, **overrides):
    kwargs = dict(task="mock", frames=600, frames_per_batch=200, max_steps=5, minibatch_size=100,
                  epochs=2, num_cells=16, eval_every=1, eval_envs=8, logger="csv", out=str(tmp_path / "run"))
    if overrides.get("algo", "rn") == "rn":
        kwargs.update(graph="tree:2", manager_cells=16)
    kwargs.update(overrides)
    return TrainConfig(**kwargs)


def test_run_writes_results_folder(tmp_path):
    trainer = RNTrainer(tiny_config(tmp_path), env_fn=mock_env_fn(), progress=False)
    history = trainer.train()
    run = tmp_path / "run"
    assert [r["frames"] for r in history] == [200, 400, 600]
    assert json.loads((run / "config.json").read_text())["graph"] == "tree:2"
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert [int(r["frames"]) for r in rows] == [200, 400, 600] and all(r["eval_return"] for r in rows)
    assert (run / "curve.png").stat().st_size > 1000
    assert load_checkpoint(run)["frames"] == 600
    assert not list(run.glob("*.tmp"))  # the atomic write left no temporary file
    logged = (run / "logs" / "run" / "scalars" / "eval_return.csv").read_text().strip().splitlines()
    assert len(logged) == 3  # TorchRL's CSVLogger got every evaluation


def test_every_evaluation_logs_each_manager_groups_influence_without_touching_training(tmp_path):
    history = RNTrainer(tiny_config(tmp_path, eval_every=2), env_fn=mock_env_fn(), progress=False).train()
    assert ["level1/influence" in r for r in history] == ["eval_return" in r for r in history] == [False, True, True]
    assert all(r["level1/influence"] > 0 for r in history if "eval_return" in r)  # untrained motors follow
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    assert [bool(r["level1/influence"]) for r in rows] == [False, True, True]
    # measured on the evaluation's own states, with the random generators left as they were: training the same run
    # without measuring it gives the same metrics
    trainer = RNTrainer(tiny_config(tmp_path / "b", eval_every=2), env_fn=mock_env_fn(), progress=False)
    trainer._evaluate = lambda influence=True: RNTrainer._evaluate(trainer, influence=False)
    plain = trainer.train()
    strip = [{k: v for k, v in r.items() if "influence" not in k and "seconds" not in k} for r in history]
    assert strip == [{k: v for k, v in r.items() if "seconds" not in k} for r in plain]
    mappo = RNTrainer(tiny_config(tmp_path / "m", algo="mappo"), env_fn=mock_env_fn(), progress=False).train()
    assert not any(k.endswith("/influence") for r in mappo for k in r)


def test_close_closes_the_training_and_evaluation_envs(tmp_path):
    closed = []

    class Recording(MockMultiAgentEnv):
        def close(self, *, raise_if_closed: bool = True):
            closed.append(self.batch_size[0])
            return super().close(raise_if_closed=raise_if_closed)

    trainer = RNTrainer(tiny_config(tmp_path, eval_envs=8), progress=False,
                        env_fn=lambda num_envs, seed: Recording(3, num_envs=num_envs, seed=seed, max_steps=5))
    trainer.close()
    assert sorted(closed) == [8, 40]  # the evaluation env (8 envs) and the training env (200 frames / 5 steps)


def test_short_training_clearly_improves_return(tmp_path):
    # the mock env is a contextual bandit: play the target shown in the observation, earn up to k + 1 per agent
    cfg = tiny_config(tmp_path, frames=12_000, frames_per_batch=1_000, minibatch_size=250, epochs=4, num_cells=32,
                      lr=3e-3, eval_every=12, entropy_coeff=0.0)
    trainer = RNTrainer(cfg, env_fn=mock_env_fn(), progress=False)
    first = trainer.evaluate()
    history = trainer.train()
    last = history[-1]["eval_return"]
    assert last > first + 1.5, (first, last)  # max 10 (2 per step for 5 steps); the untrained mean action gets ~5


def test_resume_continues_step_counter_and_parameters(tmp_path):
    cfg = tiny_config(tmp_path, frames=400)
    trainer = RNTrainer(cfg, env_fn=mock_env_fn(), progress=False)
    trainer.train()
    ckpt = tmp_path / "run" / "checkpoint.pt"
    resumed = RNTrainer.resume(ckpt, frames=600, env_fn=mock_env_fn(), progress=False)
    assert (resumed.iteration, resumed.frames) == (2, 400)
    for (name, a), b in zip(trainer.loss.state_dict().items(), resumed.loss.state_dict().values()):
        assert torch.equal(a, b), name
    history = resumed.train()
    assert [r["iteration"] for r in history] == [1, 2, 3] and resumed.frames == 600
    assert load_checkpoint(ckpt)["iteration"] == 3
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]


def test_same_seed_reproduces_a_run(tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = tiny_config(tmp_path, frames=400, out=str(tmp_path / name), seed=7)
        runs.append(RNTrainer(cfg, env_fn=mock_env_fn(), progress=False).train())
    assert [r["train_return"] for r in runs[0]] == [r["train_return"] for r in runs[1]]
    assert [r["eval_return"] for r in runs[0]] == [r["eval_return"] for r in runs[1]]


@pytest.mark.parametrize("algo", ["mappo", "ippo"])
def test_baselines_run_through_the_same_trainer(tmp_path, algo):
    trainer = RNTrainer(tiny_config(tmp_path, algo=algo, frames=200), env_fn=mock_env_fn(), progress=False)
    assert type(trainer.loss).__name__ == {"mappo": "MAPPOLoss", "ippo": "IPPOLoss"}[algo]
    # MAPPO's critic is centralised (each agent's value sees every agent's observation), IPPO's is not
    critic = trainer.loss.critic_network
    assert critic.module.centralized is (algo == "mappo")
    obs = torch.randn(4, 3, 3)
    other = obs.clone()
    other[:, 1:] += 1.0  # change the other agents' observations only
    with torch.no_grad():
        v, w = (critic.module(o)[:, 0] for o in (obs, other))
    assert (not torch.allclose(v, w)) is (algo == "mappo")
    # the mock env has a team done only: MultiAgentGAE broadcasts it, nothing is broadcast by hand
    assert trainer.loss.value_estimator.tensor_keys.done == "done"
    if algo == "mappo":  # the same advantages as the team flags written per agent by hand
        collector = trainer.make_collector(200)
        data = next(iter(collector))
        collector.shutdown()
        assert data["next", "done"].any() and ("agents", "done") not in data["next"].keys(True)
        ours = data.clone()
        trainer._advantage(ours)
        by_hand = data.clone()
        for key in ("done", "terminated"):
            flag = by_hand["next", key]
            by_hand["next", "agents", key] = flag.unsqueeze(-2).expand(*flag.shape[:-1], 3, 1).clone()
        estimator = trainer.loss.value_estimator
        estimator.set_keys(done=("agents", "done"), terminated=("agents", "terminated"))
        estimator(by_hand, params=trainer.loss.critic_network_params,
                  target_params=trainer.loss.target_critic_network_params)
        estimator.set_keys(done="done", terminated="terminated")
        assert torch.equal(ours["advantage"], by_hand["advantage"])
    history = trainer.train()
    assert len(history) == 1 and "eval_return" in history[-1]


@pytest.mark.parametrize("algo", ["mappo", "ippo"])
def test_baselines_train_on_a_discrete_task(tmp_path, algo):
    """The baselines share VertexGroup's actor head, so a Categorical action spec (CartPole) works for them too."""
    cfg = TrainConfig(task="gym/CartPole-v1", algo=algo, frames=40, frames_per_batch=40, max_steps=10,
                      minibatch_size=20, epochs=1, num_cells=8, eval_envs=2, logger="", out=str(tmp_path / "run"))
    trainer = RNTrainer(cfg, progress=False)
    td = trainer.policy(trainer.env.reset())
    assert ("agents", "logits") in td.keys(True) and not td["agents", "action"].is_floating_point()
    history = trainer.train()
    assert len(history) == 1 and history[0]["eval_return"] > 0 and torch.isfinite(torch.tensor(history[0]["loss"]))


@pytest.mark.parametrize("algo", ["mappo", "rn"])
def test_continuous_actions_false_gives_the_motors_discrete_actions(tmp_path, algo):
    """--no-continuous-actions reaches the task: the motors act with a Categorical (the managers stay continuous)."""
    rn_only = {"graph": "tree:2", "manager_cells": 8} if algo == "rn" else {}
    cfg = TrainConfig(task="mock", n_agents=4, algo=algo, continuous_actions=False, frames=40, frames_per_batch=20,
                      max_steps=5, minibatch_size=20, epochs=1, num_cells=8, eval_envs=2, logger="",
                      out=str(tmp_path / "run"), **rn_only)
    trainer = RNTrainer(cfg, progress=False)
    td = trainer.policy(trainer.env.reset())
    assert ("agents", "logits") in td.keys(True) and not td["agents", "action"].is_floating_point()
    if algo == "rn":
        assert td["level1", "action"].is_floating_point()
    history = trainer.train()
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in history)
    continuous = RNTrainer(dataclasses.replace(cfg, continuous_actions=True, out=str(tmp_path / "c")), progress=False)
    assert continuous.policy(continuous.env.reset())["agents", "action"].is_floating_point()


def test_baselines_keep_per_agent_done_flags(tmp_path):
    """PettingZoo has per-agent done flags: the baselines' GAE reads them, not the team's."""
    pytest.importorskip("mpe2")
    cfg = TrainConfig(task="pettingzoo/simple_spread_v3", n_agents=2, algo="mappo", frames=10, frames_per_batch=10,
                      max_steps=5, minibatch_size=10, epochs=1, num_cells=8, eval_envs=1, logger="",
                      out=str(tmp_path / "run"))
    trainer = RNTrainer(cfg, progress=False)
    keys = trainer.loss.value_estimator.tensor_keys
    assert (keys.done, keys.terminated) == (("agents", "done"), ("agents", "terminated"))
    collector = trainer.make_collector(10)
    data = next(iter(collector))
    collector.shutdown()
    # agent 0 of env 0 terminates at step 1 on its own: the team goes on (the root flags stay False)
    for key in ("done", "terminated"):
        data["next", "agents", key][0, 1, 0] = True
    assert not data["next", "done"][0, 1].any()
    flags = data["next", "agents"].select("done", "terminated").clone()
    trainer._advantage(data)
    assert (data["next", "agents"].select("done", "terminated") == flags).all()  # read, not overwritten by the team's
    target, reward = data[trainer.loss.tensor_keys.value_target], data["next", "agents", "reward"]
    torch.testing.assert_close(target[0, 1, 0], reward[0, 1, 0])  # no bootstrap past agent 0's own termination
    assert not torch.allclose(target[0, 1, 1], reward[0, 1, 1])  # agent 1 goes on and bootstraps


def run_cli(capsys, *args):
    code = main(list(args))
    return code, capsys.readouterr()


def test_cli_unknown_task(capsys, tmp_path):
    for task, culprit in (("vmas/no_such_scenario", "no_such_scenario"), ("foo/bar", "'foo/bar'"),
                          ("gym/NoSuchEnv-v0", "NoSuchEnv-v0")):
        code, out = run_cli(capsys, "train", "--task", task, "--out", str(tmp_path / "run"))
        assert code == 2
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rn: error:") and culprit in lines[0]
        assert not (tmp_path / "run").exists()


def test_cli_cyclic_graph(capsys, tmp_path):
    path = tmp_path / "cycle.json"
    path.write_text(json.dumps(nx.node_link_data(nx.DiGraph([("a", "b"), ("b", "a")]), edges="edges")))
    code, out = run_cli(capsys, "train", "--task", "vmas/balance", "--graph", str(path), "--out", str(tmp_path))
    assert code == 2 and out.err.count("\n") == 1 and "cycle: a -> b -> a" in out.err


def test_cli_wrong_agent_count(capsys, tmp_path):
    code, out = run_cli(capsys, "train", "--task", "vmas/balance", "--n-agents", "1", "--out", str(tmp_path / "run"))
    assert code == 2 and out.err == ("rn: error: task 'vmas/balance' cannot take n_agents=1: it needs at least 2 "
                                     "agent(s).\n")
    assert not (tmp_path / "run").exists()


def test_cli_resume_from_something_that_is_not_a_checkpoint(capsys, tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    foreign = tmp_path / "foreign.pt"  # a torch file, but not ours
    torch.save({"weights": torch.zeros(2)}, foreign)
    for command in (["train", "--resume"], ["eval"]):  # rn eval refuses the same files
        code, out = run_cli(capsys, *command, str(bogus))
        assert code == 2 and out.err.count("\n") == 1 and "is not a torchrl-rn checkpoint" in out.err
        code, out = run_cli(capsys, *command, str(tmp_path / "missing"))
        assert code == 2 and out.err == f"rn: error: no checkpoint at '{tmp_path / 'missing'}'.\n"
        code, out = run_cli(capsys, *command, str(foreign))
        assert code == 2 and out.err == f"rn: error: '{foreign}' is not a torchrl-rn checkpoint.\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.pt", "notes.txt"]


def test_config_validation():
    with pytest.raises(ValueError, match="unknown algo 'qmix'"):
        TrainConfig(algo="qmix")
    with pytest.raises(ValueError, match="multiple of --max-steps"):
        TrainConfig(frames_per_batch=150, max_steps=100)
    with pytest.raises(ValueError, match=r"unknown logger 'foo'; choose one of \['csv', 'tensorboard'"):
        TrainConfig(logger="foo")


def test_cli_logger_without_its_package(capsys, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    code, out = run_cli(capsys, "train", "--task", "mock", "--logger", "wandb", "--out", str(tmp_path))
    assert code == 2 and out.err == "rn: error: logger 'wandb' needs the wandb package: pip install wandb\n"


def test_cli_train_then_resume_keeps_the_checkpoint_budget(capsys, tmp_path):
    out = str(tmp_path / "cli")
    tiny = ["--task", "mock", "--frames", "200", "--frames-per-batch", "100", "--max-steps", "5",
            "--minibatch-size", "50", "--epochs", "1", "--num-cells", "8", "--manager-cells", "8", "--eval-envs", "4"]
    code, cap = run_cli(capsys, "train", *tiny, "--out", out, "--no-progress")
    assert code == 0 and "done: 200 frames" in cap.out
    code, cap = run_cli(capsys, "train", "--resume", out, "--no-progress")  # budget already met: nothing to do
    assert code == 0 and "done: 200 frames" in cap.out
    code, cap = run_cli(capsys, "train", "--resume", out, "--frames", "300", "--no-progress")
    assert code == 0 and "done: 300 frames" in cap.out
    assert load_checkpoint(out)["iteration"] == 3
    code, cap = run_cli(capsys, "eval", out)
    assert code == 0 and "(300 frames trained)" in cap.out


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer = RNTrainer(tiny_config(tmp_path, frames=200), env_fn=mock_env_fn(), progress=False)
    trainer.train()
    ckpt = tmp_path / "run" / "checkpoint.pt"

    def dying_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    trainer.iteration = 99
    with pytest.raises(KeyboardInterrupt):
        trainer.save(ckpt)
    assert load_checkpoint(ckpt)["iteration"] == 1
    assert sorted(p.name for p in ckpt.parent.iterdir() if p.name.endswith(".tmp")) == []  # its temp file went too


def test_saves_never_follow_a_planted_link_or_share_a_temp_file(tmp_path):
    trainer = RNTrainer(tiny_config(tmp_path, frames=200), env_fn=mock_env_fn(), progress=False)
    trainer.train()
    ckpt, victim = tmp_path / "run" / "checkpoint.pt", tmp_path / "victim.txt"
    victim.write_text("someone else's file")
    for name in ("checkpoint.pt.tmp", ".checkpoint.pt.tmp", "config.json.tmp", "config.yaml.tmp"):
        (ckpt.parent / name).symlink_to(victim)  # the temp names of before, and a guess at today's
    trainer.save(ckpt)
    trainer._prepare_folder(ckpt.parent)
    assert victim.read_text() == "someone else's file" and load_checkpoint(ckpt)["iteration"] == 1
    plain = tmp_path / "plain"
    plain.write_text("")  # the files are as readable as any file this process writes
    assert {(ckpt.parent / n).stat().st_mode for n in ("checkpoint.pt", "config.json")} == {plain.stat().st_mode}
