"""What ``rn`` prints and the episode length it picks (issue 30, item 9): TorchRL's console log never reaches stdout
(``--workers`` printed a coloured collector warning there), and PettingZoo tasks run their own episode length."""
from __future__ import annotations

import importlib.util
import logging

import pytest

from torchrl_rn.envs.tasks import default_max_steps
from torchrl_rn.train import TrainConfig, main

TINY = ["--task", "mock", "--frames", "100", "--frames-per-batch", "50", "--max-steps", "5", "--minibatch-size", "50",
        "--epochs", "1", "--num-cells", "8", "--eval-envs", "2", "--logger", "", "--no-progress"]
HAS_MPE = importlib.util.find_spec("pettingzoo") is not None and importlib.util.find_spec("mpe2") is not None


def test_workers_print_only_the_result_on_stdout(tmp_path, capfd):
    assert main(["train", *TINY, "--workers", "2", "--out", str(tmp_path / "run")]) == 0
    out, err = capfd.readouterr()
    assert out.splitlines() and all(line.startswith("done: ") for line in out.splitlines()), out
    assert "\033[" not in out and "use_buffer" not in out + err  # the known harmless one is silenced everywhere


def test_torchrl_log_lines_go_to_stderr_during_a_command_and_back_after(capfd):
    from torchrl_rn.train.cli import quiet_console

    torchrl_logger = logging.getLogger("torchrl")
    with quiet_console():
        torchrl_logger.warning("a warning rn's user should see")
        torchrl_logger.warning("use_buffer not specified and not yet inferred from data, assuming `True`.")
    out, err = capfd.readouterr()
    assert "a warning rn's user should see" in err and "use_buffer" not in out + err and out == ""
    handlers = [h for h in torchrl_logger.handlers if isinstance(h, logging.StreamHandler)]
    assert all(h.stream is not None and "stderr" not in str(h.stream) for h in handlers)  # restored: TorchRL's own


# (task, flags, the episode length the config gets)
LENGTHS = [("vmas/balance", {}, 100), ("mock", {}, 100), ("vmas/balance", {"max_steps": 20}, 20)]
if HAS_MPE:
    LENGTHS += [("pettingzoo/simple_spread_v3", {}, 25), ("pettingzoo/mpe/simple_spread_v3", {}, 25),
                ("pettingzoo/simple_spread_v3", {"max_steps": 50}, 50)]


@pytest.mark.parametrize("task, flags, length", LENGTHS, ids=[f"{t}{f}" for t, f, _ in LENGTHS])
def test_episode_length_defaults_to_the_tasks_own(task, flags, length):
    assert TrainConfig(task=task, **flags).max_steps == length


@pytest.mark.skipif(not HAS_MPE, reason="needs pettingzoo and mpe2")
def test_a_pettingzoo_run_records_its_episode_length(tmp_path):
    from torchrl_rn.envs.tasks import make_env

    assert default_max_steps("pettingzoo/simple_spread_v3") == 25
    assert default_max_steps("pettingzoo/no_such_env_v0") == 100  # refused later, when the env is built
    config = TrainConfig(task="pettingzoo/simple_spread_v3", frames_per_batch=50, minibatch_size=50)
    assert "max_steps: 25" in config.to_yaml()
    env = make_env(config.task, num_envs=1, max_steps=config.max_steps, seed=0)
    assert env.rollout(40, break_when_any_done=True).shape[-1] == 25  # the episode ends where PettingZoo ends it
