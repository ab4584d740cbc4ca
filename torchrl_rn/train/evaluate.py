"""``rn eval``: a trained run's return over N deterministic episodes (mean, std, 95% CI), and a GIF of one.

Why the number may differ from the ``eval_return`` recorded during training: training evaluates on its own eval
envs (``eval_envs`` of them, seeded ``seed + 1``, one episode each), while :func:`evaluate_run` draws ``episodes``
episodes from envs seeded ``seed`` (12345 from the CLI). The policy is deterministic in both, but the initial states
differ, so both are sample means of the same quantity: compare them through their confidence intervals.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_rn.train.episodes import episode_returns
from torchrl_rn.graph.limits import over_limit
from torchrl_rn.train.run import check_output_file, run_folder
from torchrl_rn.train.stats import mean_std_ci95
from torchrl_rn.train.trainer import RNTrainer

__all__ = ["EvalReport", "evaluate_run", "episode_returns", "render_rollout"]


@dataclass
class EvalReport:
    """What ``rn eval`` prints: per-episode returns and their statistics.

    Examples:
        >>> print(EvalReport([1.0, 3.0], seed=7, frames_trained=600).summary())
        eval return (deterministic, 2 episodes, seed 7): mean 2.000, std 1.414, 95% CI +-12.706 (600 frames trained)
    """

    returns: list[float]
    seed: int
    frames_trained: int
    recorded: float | None = None
    eval_envs: int = 0
    train_seed: int = 0
    video: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return mean_std_ci95(self.returns)[0]

    @property
    def std(self) -> float:
        return mean_std_ci95(self.returns)[1]

    @property
    def ci95(self) -> float:
        return mean_std_ci95(self.returns)[2]

    def summary(self) -> str:
        n = len(self.returns)
        lines = [(f"eval return (deterministic, {n} episodes, seed {self.seed}): mean {self.mean:.3f}, "
                  f"std {self.std:.3f}, 95% CI +-{self.ci95:.3f} ({self.frames_trained} frames trained)")]
        if self.recorded is not None:
            lines.append(
                f"recorded during training: {self.recorded:.3f} on {self.eval_envs} other episodes (eval envs seeded "
                f"{self.train_seed + 1}); the two differ by sampling: same policy, different initial states")
        if self.video is not None:
            lines.append(f"video of one more episode from the same seed: {self.video}")
        return "\n".join(lines)


def _vmas_renderer(env: EnvBase) -> Callable[[], object]:
    """A function returning the RGB frame of env 0 of a (transformed) TorchRL VMAS env."""
    base = env.base_env
    vmas_env = getattr(base, "_env", None)
    if type(base).__name__ not in ("VmasEnv", "VmasWrapper") or not hasattr(vmas_env, "render"):
        raise ValueError(f"--video renders VMAS tasks only; this run's env is a {type(base).__name__}.")
    try:
        import pyglet  # noqa: F401 - VMAS draws with pyglet
    except ImportError:
        raise ImportError("--video needs the pyglet package (VMAS draws with it): pip install 'pyglet<2'") from None
    return lambda: vmas_env.render(mode="rgb_array", env_index=0)


def render_rollout(env: EnvBase, policy, steps: int, path: str | Path, *, fps: int = 20) -> Path:
    """Runs ``policy`` deterministically in a VMAS ``env`` for ``steps`` steps and writes env 0's ``steps + 1``
    frames (initial state included) as a GIF."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ImportError("--video needs the imageio package: pip install imageio") from None
    render = _vmas_renderer(env)
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        td = env.reset()
        frames = [render()]  # the initial state, then one frame per step (TorchRL skips the last step's callback)
        env.rollout(steps, policy, auto_reset=False, tensordict=td, break_when_any_done=False,
                    callback=lambda *_: frames.append(render()))
        frames.append(render())
    path = Path(path)
    imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    return path


@torch.no_grad()
def evaluate_run(path: str | Path, *, episodes: int = 32, seed: int = 12345, video: bool = False,
                 video_path: str | Path | None = None, device: str | None = None, env_fn=None) -> EvalReport:
    """Evaluates a run folder or checkpoint over ``episodes`` deterministic episodes from envs seeded ``seed``.

    Keyword Args:
        episodes (int): episodes, one per vectorised env, each up to ``max_steps`` long.
        seed (int): seed of the evaluation envs (not the training seed).
        video (bool): also write a GIF of one more episode from the same seed (VMAS tasks) to ``video_path``
            (default ``<run>/eval.gif``).
        device (str, optional): where the envs and the policy run; default: the run's own device, or the CPU where
            this machine lacks it (a run trained on a GPU, evaluated on a laptop).
        env_fn: as :class:`RNTrainer`'s, for runs on custom or mock envs.
    """
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}.")
    if (problem := over_limit("episodes", episodes, label="--episodes")) is not None:
        raise ValueError(f"{problem}.")
    run_dir = run_folder(path)
    if video:  # an unwritable GIF is refused before the work, not after it
        video_path = check_output_file(video_path or run_dir / "eval.gif", "--out")
    trainer = RNTrainer.resume(path, progress=False, read_only=True, device=device,
                               **({"env_fn": env_fn} if env_fn else {}))
    video_env = None
    if video:  # checked first: a missing renderer fails before the statistics are computed
        video_env = trainer._wrap(trainer._env_fn(1, seed))
        _vmas_renderer(video_env)
    env = trainer._wrap(trainer._env_fn(episodes, seed))
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        td = env.rollout(trainer.config.max_steps, trainer.policy, break_when_any_done=False)
    gif = None
    if video_env is not None:
        gif = render_rollout(video_env, trainer.policy, trainer.config.max_steps, video_path)
    recorded = next((r["eval_return"] for r in reversed(trainer.history) if "eval_return" in r), None)
    return EvalReport(episode_returns(td).tolist(), seed, trainer.frames, recorded, trainer.config.eval_envs,
                      trainer.config.seed, gif)
