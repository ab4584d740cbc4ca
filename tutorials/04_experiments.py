"""
Experiments: configs, seeds, diagnostics and pictures
=====================================================

One run says little; a researcher compares configurations over seeds, watches PPO's diagnostics while it learns,
and looks at what the trained network does. This tutorial does all of it with the pieces behind the ``rn``
command:

1. an experiment file: :class:`~torchrl_rn.train.TrainConfig` in YAML, one commented line per field;
2. a multi-seed comparison, a flat graph (RN's IPPO) against a ``tree:2`` hierarchy, each as a mean curve with a
   t-based 95% band (``rn train --seeds 0,1,2``);
3. the per-group PPO diagnostics every run writes to ``metrics.csv`` (KL, clip fraction, entropy, explained
   variance, gradient norm);
4. the trained network drawn by level with its vertices' return, entropy and influence (``rn show``), and an
   evaluation with its spread (``rn eval``).

``RN_TUTORIAL_QUICK=1`` runs it in seconds on the mock task; outputs go to ``RN_TUTORIAL_OUT`` (default
``tutorials/out``). The full run trains VMAS *balance* (3 seeds x 2 graphs x 60k frames: about 10 minutes on
2 CPU cores).
"""
# %%
from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from torchrl_rn.train import TrainConfig
from torchrl_rn.train.evaluate import evaluate_run
from torchrl_rn.train.multiseed import run_seeds
from torchrl_rn.train.plots import plot_aggregate
from torchrl_rn.train.show import show_run

QUICK = os.environ.get("RN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("RN_TUTORIAL_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)

# %%
# 1. An experiment file
# ---------------------
# Every knob of a run is a field of ``TrainConfig`` with its meaning attached; ``rn train --help`` prints the same
# text. Start from the defaults, change what the experiment is about, and save it: this file *is* the experiment.
print(TrainConfig.help("graph"))
print(TrainConfig.help("beta"))
base = TrainConfig(task="vmas/balance", frames=60_000, eval_every=2, logger="")
if QUICK:
    base = TrainConfig(task="mock", frames=300, frames_per_batch=100, max_steps=5, minibatch_size=50, epochs=2,
                       num_cells=16, manager_cells=16, eval_every=1, eval_envs=8, logger="")
base.to_yaml(OUT / "04_experiment.yaml")
assert TrainConfig.from_yaml(OUT / "04_experiment.yaml") == base  # it reads back to the same config
# On the command line: ``rn train --config tutorials/out/04_experiment.yaml --graph flat`` (flags override it).

# %%
# 2. A multi-seed comparison
# --------------------------
# ``run_seeds`` (``rn train --seeds``) trains one run per seed, each in its own folder (``<out>/seed<S>``), then
# writes ``aggregate.csv``/``.json``/``.png``: at each evaluation the mean over seeds and the half-width of a
# Student-t 95% confidence interval. With 3 seeds the t quantile is 4.3, so bands are wide: differences inside
# them are not evidence.
seeds = [0, 1] if QUICK else [0, 1, 2]
graphs = {"flat (IPPO)": "flat", "tree:2": "tree:2"}
aggregates = {}
for label, spec in graphs.items():
    config = dataclasses.replace(base, graph=spec, out=str(OUT / "04_runs" / spec.replace(":", "")))
    folder = run_seeds(config, seeds, progress=False)
    aggregates[label] = json.loads((folder / "aggregate.json").read_text())
    final = aggregates[label]["final_eval_return"]
    print(f"{label:12s} final eval return {final['mean']:.2f} +- {final['ci95']:.2f} (95% CI, {len(seeds)} seeds)")

fig, ax = plt.subplots(figsize=(6, 4))
for label, summary in aggregates.items():
    plot_aggregate(summary["curves"], None, ax=ax, label=label)
ax.set_title(f"{base.task}: mean eval return over {len(seeds)} seeds, 95% band")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "04_seeds.png", dpi=100)
plt.close(fig)
(OUT / "04_seeds.json").write_text(json.dumps({"seeds": seeds, "curves": {k: v["curves"] for k, v in
                                                                            aggregates.items()}}, indent=2))

# %%
# 3. Diagnostics
# --------------
# Each row of ``metrics.csv`` is one iteration; besides the returns it holds, per group and averaged over the
# iteration's minibatches, what TorchRL's PPO loss reports: ``kl_approx`` (how far one update moved the policy),
# ``clip_fraction`` (how often PPO's clip was active), ``entropy``, ``explained_variance`` of the critic, the loss
# terms, and the gradient norm before clipping. A KL that keeps growing or an explained variance stuck near 0 are
# the first things to look at when a curve is flat.
run = OUT / "04_runs" / "tree2" / "seed0"
rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
groups = sorted({c.split("/")[0] for c in rows[0] if "/" in c})
fig, axes = plt.subplots(1, 4, figsize=(14, 3))
for ax, name in zip(axes, ["kl_approx", "clip_fraction", "entropy", "explained_variance"]):
    for g in groups:
        ax.plot([int(r["frames"]) for r in rows], [float(r[f"{g}/{name}"]) for r in rows], "o-", label=g)
    ax.set_title(name)
    ax.set_xlabel("frames")
axes[0].legend()
fig.tight_layout()
fig.savefig(OUT / "04_diagnostics.png", dpi=100)
plt.close(fig)

# %%
# 4. Pictures
# -----------
# ``show_run`` (``rn show RUN``) replays a few deterministic episodes and draws the network by level: R is the
# reward routed to each vertex, H the entropy of its policy, and I, for a manager, how much its subordinates'
# actions move when its instruction is replaced by another sample of its own policy (0: they ignore it).
picture = show_run(run, out=OUT / "04_network.png", episodes=4)
print(json.dumps(json.loads(picture.with_suffix(".json").read_text())["l1_0"], indent=1))

# ``evaluate_run`` (``rn eval RUN --episodes N --seed S``) gives the return's spread over fresh episodes. It differs
# from the ``eval_return`` recorded in training, which used other episodes (the run's eval envs, seeded seed + 1).
# On a VMAS task, ``video=True`` (``--video``) also writes a GIF of a rollout.
report = evaluate_run(run, episodes=8, seed=123, video=not QUICK, video_path=OUT / "04_rollout.gif")
print(report.summary())
