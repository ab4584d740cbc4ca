"""The learning benchmark's harness: presets and methods read from YAML, and one run's life (claim, train or resume,
merge, save, summarise).

Presets are ``benchmarks/presets/<name>.yaml`` (the :class:`Preset` fields that differ from its defaults, a
``summary`` and the preset's history as ``notes``; ``base: <preset>`` starts from another preset); methods are
``benchmarks/methods.yaml`` (each method's definition, which overrides the preset, a readable ``label``, a
``description`` and its table labels). ``learning.py`` is the command line over this module.

A task's results are ``<out>/<task>.json``, rewritten atomically under a file lock after every finished run, so
slices running side by side merge instead of overwriting; a rerun keeps the runs a file holds when it was written
with the same training hyperparameters (:func:`_same_training`), and a run cut short resumes from its checkpoint.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from benchmark_stats import mean_ci95  # this module runs from benchmarks/

from torchrl_rn.train import RNTrainer, TrainConfig
from torchrl_rn.train.checkpoint import CHECKPOINT, CheckpointError

__all__ = ["LEGACY", "METHODS", "METHOD_INFO", "PRESETS", "PRESET_INFO", "Preset", "TASK_KNOWLEDGE", "claim_run",
           "communicates_at_execution", "definition", "graph_methods", "load_methods", "load_presets", "load_result",
           "merge_from_disk", "plot_task", "run_dir", "run_one", "run_task", "save_result", "summarise",
           "train_config", "uses_task_knowledge"]

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Preset:
    """One benchmark preset. Every field but ``tasks``, ``methods``, ``seeds`` and ``seed_groups`` is a training
    hyperparameter, identical across methods except where a method's definition sets it. The defaults are the
    ``full`` preset's (TorchRL's multi-agent PPO tutorial pipeline)."""

    tasks: tuple[str, ...] = ("vmas/balance", "vmas/simple_spread", "vmas/navigation")
    methods: tuple[str, ...] = ("mappo", "ippo", "rn-tree2", "rn-tree3", "rn-dag")
    seeds: tuple[int, ...] = (0, 1, 2)
    frames: int = 1_000_000
    frames_per_batch: int = 6_000
    max_steps: int = 100
    epochs: int = 10
    minibatch_size: int = 400
    eval_every: int = 5
    num_cells: int = 256
    # TorchRL's MAPPO tutorial pipeline does not normalise advantages
    normalize_advantage: bool = False
    # the MAPPO paper's value normalisation (TorchRL's PopArtValueNorm) and entropy coefficient (0.01 there; 1e-4 is
    # TorchRL's multi-agent PPO tutorial's)
    value_norm: bool = False
    entropy_coeff: float = 1e-4
    # agents per task (the TAG / TorchRL references: balance and simple_spread 4, navigation 3)
    n_agents: dict[str, int] = field(default_factory=lambda: {"vmas/balance": 4, "vmas/simple_spread": 4,
                                                              "vmas/navigation": 3})
    # how an episode's time limit reaches GAE: "truncated" (bootstrap there) or, in runs from before this field,
    # "terminated" (see LEGACY)
    time_limit: str = "truncated"
    lr: float = 3e-4
    lmbda: float = 0.9
    max_grad_norm: float = 1.0
    # the agents' action space: continuous (VMAS) or discrete (the MAPPO paper's MPE runs)
    continuous_actions: bool = True
    # named subsets of the seeds, each declared before its runs; scored alone beside all seeds by the report. Not a
    # training setting: changing it keeps the runs
    seed_groups: dict[str, tuple[int, ...]] = field(default_factory=dict)


#: Fields added to :class:`Preset` after results were written, with the value those older runs actually used (a
#: missing field otherwise counts as its default). Runs with another value are never mixed with new ones.
LEGACY = {"time_limit": "terminated"}
#: What a preset file may hold besides :class:`Preset`'s fields.
_PRESET_META = ("summary", "notes", "base")
_METHOD_KEYS = {"definition", "label", "description", "task_knowledge", "communicates_at_execution"}


def _preset_value(path: Path, name: str, value):
    """A YAML value as :class:`Preset` holds it (lists as tuples, ints where floats are expected as floats)."""
    default = getattr(Preset(), name)
    if isinstance(default, tuple):
        return tuple(value)
    if name == "seed_groups":
        return {k: tuple(v) for k, v in value.items()}
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, type(default)):
        raise ValueError(f"{path}: {name}: {value!r} is not a {type(default).__name__}")
    return value


def load_presets(folder: Path = HERE / "presets") -> tuple[dict[str, Preset], dict[str, dict]]:
    """``(presets, info)`` from ``folder/*.yaml``: each preset by its file's stem, and its ``summary``, ``notes``
    and ``base``. An unknown field or a missing base names the file."""
    raw = {p.stem: (p, yaml.safe_load(p.read_text()) or {}) for p in sorted(folder.glob("*.yaml"))}
    fields = {f.name for f in dataclasses.fields(Preset)}
    presets: dict[str, Preset] = {}

    def build(name: str, seen: tuple[str, ...] = ()) -> Preset:
        if name in presets:
            return presets[name]
        path, data = raw[name]
        if unknown := sorted(set(data) - fields - set(_PRESET_META)):
            raise ValueError(f"{path}: unknown preset fields {unknown} (Preset has {sorted(fields)})")
        base = data.get("base")
        if base is not None and (base not in raw or base in seen):
            raise ValueError(f"{path}: base {base!r} is not another preset of {folder}")
        start = Preset() if base is None else build(base, (*seen, name))
        values = {k: _preset_value(path, k, v) for k, v in data.items() if k in fields}
        presets[name] = dataclasses.replace(start, **values)
        return presets[name]

    for name in raw:
        build(name)
    info = {name: {k: data.get(k) for k in _PRESET_META} | {"file": path} for name, (path, data) in raw.items()}
    return {name: presets[name] for name in raw}, info


def load_methods(path: Path = HERE / "methods.yaml") -> tuple[dict[str, dict], dict[str, dict], dict[str, str]]:
    """``(definitions, info, legend)`` from ``methods.yaml``: what defines each method, its ``label``,
    ``description`` and table labels, and the legend of the parts of method names."""
    data = yaml.safe_load(path.read_text())
    for name, entry in data["methods"].items():
        if set(entry) != _METHOD_KEYS:
            raise ValueError(f"{path}: method {name!r} has keys {sorted(entry)}, expected {sorted(_METHOD_KEYS)}")
    definitions = {name: entry["definition"] for name, entry in data["methods"].items()}
    info = {name: {k: v for k, v in entry.items() if k != "definition"} for name, entry in data["methods"].items()}
    return definitions, info, data["legend"]


PRESETS, PRESET_INFO = load_presets()
#: What defines each method; everything else comes from the preset.
METHODS, METHOD_INFO, LEGEND = load_methods()


def uses_task_knowledge(definition: dict) -> bool:
    """Whether a method's definition uses task knowledge (a goal space): tables label such methods so."""
    return str(definition.get("vertex_reward", "")).startswith("goal")


def communicates_at_execution(definition: dict) -> bool:
    """Whether a manager's policy reads its subordinates' observations when acting: any RN whose graph is not flat, and
    CPPO (its centralised actor reads every agent's observation)."""
    return (definition.get("algo") == "rn" and definition.get("graph") != "flat") or definition.get("algo") == "cppo"


#: Methods that use task knowledge (a goal space, a shaped reward): a table must label them so.
TASK_KNOWLEDGE = frozenset(m for m, d in METHODS.items() if uses_task_knowledge(d))


def definition(method: str) -> dict:
    """What defines ``method``: an entry of :data:`METHODS`, or ``rn[<graph spec>]`` (e.g. ``rn[tree:4,2]``, as
    ``--graphs`` names them) for an RN of any graph :meth:`~torchrl_rn.RNGraph.from_spec` takes."""
    if method in METHODS:
        return METHODS[method]
    if method.startswith("rn[") and method.endswith("]") and len(method) > 4:
        return {"algo": "rn", "graph": method[3:-1]}
    raise KeyError(method)


def graph_methods(graphs: str) -> list[str]:
    """The methods of ``--graphs flat,tree:2,tree:2,2``: MAPPO, IPPO and one RN per graph spec (a spec's own
    commas, as in ``tree:2,2``, continue it; a new spec starts with a letter)."""
    specs: list[str] = []
    for part in graphs.split(","):
        if specs and part[:1].isdigit():
            specs[-1] += "," + part
        elif part:
            specs.append(part)
    return ["mappo", "ippo", *(f"rn[{spec}]" for spec in specs)]


def train_config(preset: Preset, task: str, method: str, seed: int, out: Path) -> TrainConfig:
    """The :class:`~torchrl_rn.train.TrainConfig` of one run: the preset's training fields, then what defines the
    method (which overrides the preset: a baseline sweep's learning rate or entropy coefficient). The one place a
    benchmark run's configuration is built."""
    settings = dict(
        task=task, n_agents=preset.n_agents.get(task), frames=preset.frames, frames_per_batch=preset.frames_per_batch,
        max_steps=preset.max_steps, epochs=preset.epochs, minibatch_size=preset.minibatch_size,
        eval_every=preset.eval_every, num_cells=preset.num_cells, normalize_advantage=preset.normalize_advantage,
        value_norm=preset.value_norm, entropy_coeff=preset.entropy_coeff, lr=preset.lr, lmbda=preset.lmbda,
        max_grad_norm=preset.max_grad_norm, continuous_actions=preset.continuous_actions,
        seed=seed, logger="", out=str(run_dir(out, task, method, seed)),
    )
    return TrainConfig(**{**settings, **definition(method)})


def run_one(preset: Preset, task: str, method: str, seed: int, out: Path) -> dict:
    """Trains (or resumes) one run and returns its curve: evaluation and training returns per frame count."""
    cfg = train_config(preset, task, method, seed, out)
    trainer, earlier = _unfinished(cfg), 0.0
    if trainer is not None:  # a run stopped by the end of a session or a kill: continued exactly where it stopped
        earlier = _wall_so_far(trainer.history)
        print(f"{task} {method} seed {seed}: resuming from {trainer.frames} frames", flush=True)
    else:  # the task's JSON records finished runs; any other run folder holds no run to continue and is replaced
        trainer = RNTrainer(cfg, progress=False, force=True)
    start = time.perf_counter()
    try:
        history = trainer.train()
    finally:
        trainer.close()
    wall = earlier + time.perf_counter() - start
    evals = [(r["frames"], r["eval_return"]) for r in history if "eval_return" in r]
    run = {
        "frames": [f for f, _ in evals],
        "eval_return": [v for _, v in evals],
        "train_frames": [r["frames"] for r in history],
        "train_return": [r["train_return"] for r in history],
        "wall_seconds": wall,
        "frames_per_second": trainer.frames / wall,
        "threads": torch.get_num_threads(),
    }
    # each manager group's influence at every evaluation that measured it (RN runs; none for MAPPO/IPPO)
    columns = dict.fromkeys(k for r in history for k in r if k.endswith("/influence"))
    if columns:
        run["influence"] = {k.removesuffix("/influence"): [r[k] for r in history if k in r] for k in columns}
    return run


def _unfinished(cfg: TrainConfig) -> RNTrainer | None:
    """The trainer of an unfinished run of ``cfg`` in its folder, resumed from its checkpoint (``RNTrainer.resume``:
    the same metrics as a run never interrupted), or None where the folder holds no checkpoint of these settings."""
    if not (cfg.run_dir / CHECKPOINT).exists():
        return None
    try:
        trainer = RNTrainer.resume(cfg.run_dir, settings=dataclasses.asdict(cfg), progress=False)
    except (CheckpointError, ValueError) as err:
        print(f"{cfg.run_dir}: not resumed ({err}); starting afresh", flush=True)
        return None
    if trainer.frames > cfg.frames:  # trained past this budget: not a run of these settings to continue
        trainer.close()
        return None
    return trainer


def _wall_so_far(history: list[dict]) -> float:
    """Training seconds of a resumed run's earlier slices: each slice's rows count ``wall_seconds`` from its start."""
    total, last = 0.0, 0.0
    for row in history:
        if row["wall_seconds"] < last:  # a slice after a resume
            total += last
        last = row["wall_seconds"]
    return total + last


def run_dir(out: Path, task: str, method: str, seed: int) -> Path:
    """The folder of one run of the benchmark (its ``rn train`` output): ``<out>/runs/<task>/<method>/seed<S>``."""
    return out / "runs" / task.replace("/", "-") / _folder(method) / f"seed{seed}"


def _folder(method: str) -> str:
    # a graph spec may name a JSON file: keep the run folder one plain name
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in method).strip("-")


def summarise(seeds: dict[str, dict]) -> dict:
    """A method's summary over its finished seeds: final evaluation return, its 95% CI, mean frames per second."""
    final = [run["eval_return"][-1] for run in seeds.values()]
    mean, ci = mean_ci95(final)
    fps = [run["frames_per_second"] for run in seeds.values()]
    return {"final_mean": mean, "final_ci95": ci, "frames_per_second": sum(fps) / len(fps)}


#: hand-written reference returns per task, drawn as a dashed line (``benchmarks/reference.py`` writes it)
REFERENCE = HERE / "results" / "reference.json"


def _reference(result: dict) -> dict | None:
    """The task's hand-written reference policy (``benchmarks/reference.py``), if run for the same agents and steps."""
    if not REFERENCE.exists():
        return None
    ref = json.loads(REFERENCE.read_text()).get(result["task"], {})
    hp = result["hyperparameters"]
    same = ref.get("n_agents") == hp["n_agents"].get(result["task"]) and ref.get("max_steps") == hp["max_steps"]
    return ref if "mean" in ref and same else None


def plot_task(result: dict, path: Path) -> None:
    """Every method's mean evaluation curve with its 95% band (and the reference policy's line) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method, data in result["methods"].items():
        runs = list(data["seeds"].values())
        if not runs:
            continue
        frames = runs[0]["frames"]
        points = [mean_ci95([run["eval_return"][i] for run in runs]) for i in range(len(frames))]
        mean = [m for m, _ in points]
        ax.plot(frames, mean, label=method)
        ax.fill_between(frames, [m - c for m, c in points], [m + c for m, c in points], alpha=0.2)
    ref = _reference(result)
    if ref is not None:
        ax.axhline(ref["mean"], color="grey", linestyle="--", label="hand-written reference")
    ax.set_xlabel("frames")
    ax.set_ylabel("deterministic eval return")
    wanted, done = len(result["seeds"]), [len(data["seeds"]) for data in result["methods"].values()]
    seeds = f"{wanted} seed(s)" if min(done) == wanted else f"partial: {min(done)}-{max(done)} of {wanted} seeds"
    ax.set_title(f"{result['task']} ({result['preset']}, {seeds}, mean and 95% CI)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: episodes of the re-evaluation every finished run gets (reevaluate.py's default; E1's and E2's primary score):
#: run folders stay on the machine that trained them, so a run is scored where and when it finishes
REEVAL_EPISODES = 256


def run_task(out: Path, task: str, preset: Preset, name: str, *, methods=None, seeds=None,
             reeval: int | None = REEVAL_EPISODES) -> dict:
    """Runs every (method, seed) of ``preset`` on ``task`` (or the subsets given) that ``<out>/<task>.json`` lacks,
    claiming each before it starts so that slices side by side never train the same run, and re-evaluates each
    finished run on ``reeval`` episodes (:func:`reevaluate`; ``None``: not). Returns the result."""
    path = out / f"{task.replace('/', '-')}.json"
    result = load_result(path, task, preset, name)
    if path.exists() and json.loads(path.read_text())["hyperparameters"] != result["hyperparameters"]:
        result = save_result(result, path)  # the preset's lists or seed groups changed: the file says so now
    for method in methods or preset.methods:
        entry = result["methods"].setdefault(method, {"definition": definition(method), "seeds": {}})
        for seed in seeds or preset.seeds:
            if str(seed) in entry["seeds"]:
                print(f"{task} {method} seed {seed}: kept from {path}", flush=True)
                if reeval and run_dir(out, task, method, seed).is_dir() and not _reevaluated(path, method, seed,
                                                                                            reeval):
                    reevaluate(out, task, method, seed, preset=name, episodes=reeval)  # finished before, not scored
                continue
            folder = run_dir(out, task, method, seed)
            claim = folder.with_name(folder.name + ".claim")
            if (holder := claim_run(claim, path)) is not None:
                print(f"{task} {method} seed {seed}: being run by another slice (pid {holder}), skipped", flush=True)
                continue
            try:
                merge_from_disk(result, path)  # finished by another slice since this one started?
                if str(seed) in entry["seeds"]:
                    print(f"{task} {method} seed {seed}: kept from {path} (finished by another slice)", flush=True)
                    continue
                run = entry["seeds"][str(seed)] = run_one(preset, task, method, seed, out)
                print(f"{task} {method} seed {seed}: eval return {run['eval_return'][-1]:.2f} "
                      f"({run['frames_per_second']:.0f} frames/s)", flush=True)
                result = save_result(result, path)
                if reeval:
                    reevaluate(out, task, method, seed, preset=name, episodes=reeval)
            finally:
                claim.unlink(missing_ok=True)
    return result


def _reeval_path(task_json: Path) -> Path:
    return task_json.with_name(task_json.stem + ".reeval.json")


def _reevaluated(task_json: Path, method: str, seed: int, episodes: int) -> bool:
    path = _reeval_path(task_json)
    if not path.exists():
        return False
    data = json.loads(path.read_text())
    return data.get("episodes") == episodes and str(seed) in data["methods"].get(method, {}).get("seeds", {})


def score_run(folder: Path, seed: int, *, episodes: int = REEVAL_EPISODES) -> float:
    """A finished run's re-evaluated score: its mean return over ``episodes`` fresh deterministic episodes, eval seed
    ``1000 + seed`` (the same episodes for every method of a seed)."""
    from torchrl_rn.train.evaluate import evaluate_run

    return evaluate_run(folder, episodes=episodes, seed=1000 + seed).mean


def reevaluate(out: Path, task: str, method: str, seed: int, *, preset: str, episodes: int = REEVAL_EPISODES) -> float:
    """Scores a finished run on ``episodes`` fresh deterministic episodes (eval seed ``1000 + seed``, the same
    episodes for every method of a seed, as ``reevaluate.py`` does) and merges the score into
    ``<out>/<task>.reeval.json`` under the task JSON's lock (slices side by side keep each other's scores). A file
    scored on another number of episodes is left alone. Returns the score."""
    score = score_run(run_dir(out, task, method, seed), seed, episodes=episodes)
    task_json = out / f"{task.replace('/', '-')}.json"
    path = _reeval_path(task_json)
    with _lock(task_json) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {
            "task": task, "preset": preset, "episodes": episodes, "eval_seed": "1000 + training seed", "methods": {}}
        if data.get("episodes") != episodes:
            print(f"{path}: scored on {data.get('episodes')} episodes, not {episodes}; {method} seed {seed} not "
                  "added", flush=True)
            return score
        seeds = data["methods"].setdefault(method, {"seeds": {}})["seeds"]
        seeds[str(seed)] = {"return": score, "episodes": episodes}
        data["methods"][method]["seeds"] = dict(sorted(seeds.items(), key=lambda kv: int(kv[0])))
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)
    print(f"{task} {method} seed {seed}: re-evaluated on {episodes} episodes: {score:.3f}", flush=True)
    return score


def load_result(path: Path, task: str, preset: Preset, name: str) -> dict:
    """The task's JSON written by an earlier run of this preset, or a fresh one (other hyperparameters: fresh)."""
    fresh = {"task": task, "preset": name, "hyperparameters": json.loads(json.dumps(dataclasses.asdict(preset))),
             "seeds": list(preset.seeds), "methods": {}}
    if path.exists():
        old = json.loads(path.read_text())
        if _same_training(old, fresh):
            old["hyperparameters"], old["seeds"] = fresh["hyperparameters"], fresh["seeds"]
            return old
        kept = _supersede(path)
        print(f"{path}: written with other hyperparameters, starting afresh (its runs moved to {kept})", flush=True)
    return fresh


def _supersede(path: Path) -> Path:
    """Moves a task JSON (and its plot) that a rerun cannot extend into ``superseded/``: no result is ever lost,
    and the report skips that folder."""
    folder = path.parent / "superseded"
    folder.mkdir(exist_ok=True)
    n = 1 + sum(1 for _ in folder.glob(f"{path.stem}-*.json"))
    target = folder / f"{path.stem}-{n}.json"
    os.replace(path, target)
    if path.with_suffix(".png").exists():
        os.replace(path.with_suffix(".png"), target.with_suffix(".png"))
    return target


def _same_training(a: dict, b: dict) -> bool:
    """Whether two task results hold runs of the same preset and training hyperparameters (the preset less its
    lists of tasks, methods and seeds to run), whose runs may therefore be mixed. A hyperparameter missing from a
    file (one added to :class:`Preset` after it was written) counts as its default, which is what those runs used."""
    defaults = {**dataclasses.asdict(Preset()), **LEGACY}

    def training(result: dict) -> dict:
        hyperparameters = {**defaults, **result.get("hyperparameters", {})}
        return {k: v for k, v in hyperparameters.items() if k not in ("tasks", "methods", "seeds", "seed_groups")}

    return a.get("preset") == b.get("preset") and training(a) == training(b)


def _lock(path: Path):
    """The task JSON's lock file, opened: ``fcntl.flock`` it around a read-modify-write."""
    return open(path.with_name(path.name + ".lock"), "w")


def claim_run(claim: Path, path: Path) -> int | None:
    """Claims a run for this process, under the task JSON's lock: writes its pid to ``claim`` and returns None, or
    returns the pid of the live process that holds the claim. A claim whose process is gone (a slice that was
    killed) is taken over."""
    with _lock(path) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            holder = int(claim.read_text())
        except (OSError, ValueError):
            holder = None
        if holder is not None and holder != os.getpid() and _alive(holder):
            return holder
        claim.parent.mkdir(parents=True, exist_ok=True)
        claim.write_text(str(os.getpid()))
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def merge_from_disk(result: dict, path: Path) -> dict:
    """Adds to ``result`` the runs of the JSON on disk it lacks (runs other slices saved meanwhile), if that file
    holds runs of the same training. Returns ``result``."""
    if path.exists():
        disk = json.loads(path.read_text())  # written by rename: never half a file
        if _same_training(disk, result):
            for method, entry in disk["methods"].items():
                mine = result["methods"].setdefault(method, {"definition": entry["definition"], "seeds": {}})
                for seed, run in entry["seeds"].items():
                    mine["seeds"].setdefault(seed, run)
    return result


def save_result(result: dict, path: Path) -> dict:
    """Merges ``result`` into the JSON on disk (runs another process saved meanwhile are kept), writes it
    atomically (temp file + rename) under a file lock, then its plot. Returns the merged result."""
    with _lock(path) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merge_from_disk(result, path)
        for entry in result["methods"].values():
            if entry["seeds"]:
                entry.update(summarise(entry["seeds"]))
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, path)
        plot_task(result, path.with_suffix(".png"))
    return result
