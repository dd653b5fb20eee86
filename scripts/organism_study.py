"""The model organism's study, end to end: its competence, the villager study, what the harness finds inside it,
and activation interventions on its villager attacks. Every stage is a `vptlens` command a user could type (they
are printed); the glue here picks the layer, the latents and the direction from the previous stage's output.

    python scripts/organism_study.py --out runs/organism_study                # the README's numbers (~1 h, 2 cores)
    python scripts/organism_study.py --out /tmp/s --n-seeds 4 --quick         # a smoke run of every stage
    python scripts/organism_study.py --out runs/study64 --organism blockworld-chopper-64 \
        --docs docs/organism/chopper-64 --stages competence villagers inside intervention control sae_control \
        steering log_breaks replication --competence-terrain forest            # another shipped organism

`--organism` names any organism in the zoo (default `blockworld-chopper`, the README's): the built-in specs run with
`--agent organism=NAME`, and its untrained twin is the zoo's `NAME-untrained` where one is shipped, else
`make_random_policy(config, seed=0)` of its architecture (the trainer's initialisation for a seed-0 run, as both
shipped organisms were), saved under --out.

Stages (`--stages`, in this order; each reads what the earlier ones wrote under --out):
- competence:   `organism_competence` (`organism_competence_forest` with `--competence-terrain forest`): logs per
                episode, organism vs its teacher vs its untrained self;
- villagers:    `organism_villager_study`: six scenes, paired seeds, the input-blind control;
- inside:       on the organism's tree_at_spot episodes of the villager study: `vptlens attention` (key frames
                around log breaks), `vptlens probe` (crosshair_on_log, ...), `vptlens sae train` on the probe's
                best layer; then ranks SAE latents by how well they pick out crosshair-on-log steps, and measures
                those latents on the villager (crosshair on it) under leaves against in the open;
- intervention: a spec with three edits at that layer (none; the crosshair_on_log direction projected out; the
                trunk latents clamped to 0) on the villager under leaves and in the open, paired by seed;
- control:      the untrained network (the organism's initialisation) fed the very frames of the tree_at_spot
                episodes, probed for crosshair_on_log the same way (episode folds, L2 by inner CV): how much of the
                probe's accuracy the training put there, and how much any random CNN gives;
- sae_control:  the inside stage's SAE and trunk-latent analysis on the untrained network's activations of the same
                frames (tree_at_spot and both villager cells): learned, or what a random network does with them?
- steering:     the probe's `attacking` direction at the last block, added and subtracted at 3x the gap between
                attacking and other steps (measured on the organism's own villager-in-the-open episodes), against
                a random direction of the same length (the control for "any push this size"), same scenes.
- log_breaks:   not among the defaults (`blockworld-chopper` breaks no log in these scenes, so key frames around
                log breaks cannot be measured on it): the organism, or `--checkpoint MODEL` (a `.model` beside its
                `.weights`, e.g. a training run's rounds/policy-300032.model), recorded in tree_at_spot, then
                `vptlens attention --event block_broken:*_log` on it.
- replication:  not among the defaults (~15 min): `organism_villager_replication` (seeds 50-199, the villager under
                leaves in both clothes against the open, the blind control) on the organism; with the villagers
                stage's results, `villager_hits.png` (hits per episode, organism and blind, both seed sets).
Writes OUT/findings.json, and the figures to --docs (docs/organism by default). Over 700 lines on purpose: each
stage reads what the earlier ones wrote, and the glue (cells, latents, hooks, the organism's twin) is shared; split,
the stages would import one another, and a script's siblings are not importable when it is loaded by path (the
tests load it with conftest.load_script). The figures (four small matplotlib functions) are the part that could
move, and would be the first to go if it grows again.
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
import zarr
from scipy import stats
from sklearn.metrics import roc_auc_score

from vptlens.agents import load_policy
from vptlens.agents.loading import make_random_policy
from vptlens.agents.zoo import ZOO, get_file_digests, get_zoo_entry, shipped_files
from vptlens.probes.labels import compute_label
from vptlens.probes.linear import ProbeConfig
from vptlens.probes.linear_stats import cross_validate, episode_folds
from vptlens.probes.sae.model import SAE
from vptlens.recordings.store import Run
from vptlens.training.checkpoint import save_policy

VPTLENS = str(Path(sys.executable).parent / "vptlens")
ENV = ["env:blockworld", "--env.height", "128", "--env.width", "128"]
STAGES = ("competence", "villagers", "inside", "intervention", "control", "sae_control", "steering")
EXTRA_STAGES = ("log_breaks", "replication")
LOG_BREAK_EPISODES, LOG_BREAK_STEPS = 32, 300
CONTROL_LABEL = "crosshair_on_log"
ORGANISM = "blockworld-chopper"
UNTRAINED_SEED = 0
"""The untrained twin of an organism shipped without one: `make_random_policy(config, seed=0)`."""
STEERING_GAPS = 3.0
"""The steering strength, in gaps between the mean projections of attacking and non-attacking steps."""
N_TRUNK_LATENTS = 3


def run(*args: str) -> None:
    print("$ vptlens " + " ".join(args), flush=True)
    subprocess.run([VPTLENS, *args], check=True)


# --------------------------------------------------------------------------------------------- the organism


def untrained_twin(organism: str, out: Path) -> str:
    """The organism's untrained twin for `--agent untrained=...`: the zoo's `NAME-untrained` where one is shipped,
    else the stem of `make_random_policy(config, seed=UNTRAINED_SEED)` of its architecture, saved once under `out`."""
    if f"{organism}-untrained" in ZOO:
        return f"{organism}-untrained"
    stem = (out / "untrained" / organism).resolve()
    if not stem.with_suffix(".weights").is_file():
        files = shipped_files(get_zoo_entry(organism))
        stem.parent.mkdir(parents=True, exist_ok=True)
        save_policy(make_random_policy(load_policy(files["model"], files["weights"]).cfg, seed=UNTRAINED_SEED), stem)
    return str(stem)


def untrained_policy(organism: str, out: Path):
    """(the untrained twin loaded, what it is: its zoo name or stem, and the weights' sha256)."""
    twin = untrained_twin(organism, out)
    files = (
        shipped_files(get_zoo_entry(twin)) if twin in ZOO else {k: Path(twin + "." + k) for k in ("model", "weights")}
    )
    digest = get_file_digests(files["weights"])[0]
    return load_policy(files["model"], files["weights"]), {"untrained": twin, "weights_sha256": digest}


def agent_args(organism: str, out: Path, *agents: str) -> list[str]:
    """`vptlens experiment run`'s `--agent` for a built-in organism spec's `agents` ("organism", "untrained"): none
    for the default organism (the spec is run as it is), else those agents' networks replaced by `organism`'s."""
    if organism == ORGANISM:
        return []
    networks = [organism if name == "organism" else untrained_twin(organism, out) for name in agents]
    return ["--agent", *(f"{name}={network}" for name, network in zip(agents, networks))]


def cell_dir(experiment: Path, **levels: str) -> Path:
    cells = json.loads((experiment / "experiment.json").read_text())["cells"]
    (cell,) = [c for c in cells if all(c[k] == v for k, v in levels.items())]
    return experiment / cell["dir"]


# --------------------------------------------------------------------------------------------- the latents


def codes_and_label(run_dir: Path, sae: SAE, hook: str, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes (N, s), label values (N,), episode index (N,)) over the steps where `label` is defined."""
    codes, values, episode_of = [], [], []
    for i, episode in enumerate(Run.open(run_dir).episodes()):
        y, ok = compute_label(label, episode)
        x = torch.from_numpy(np.asarray(episode.activation(hook)[:], np.float32))
        with torch.no_grad():
            z = sae.encode(x).numpy()
        codes.append(z[ok])
        values.append(y[ok])
        episode_of.append(np.full(int(ok.sum()), i))
    return np.concatenate(codes), np.concatenate(values), np.concatenate(episode_of)


def rank_latents(codes: np.ndarray, y: np.ndarray, min_rate: float = 0.005) -> list[dict]:
    """Latents that fire on at least `min_rate` of steps, by AUROC of their code for the binary label y."""
    rows = []
    for j in np.flatnonzero((codes > 0).mean(0) >= min_rate):
        z = codes[:, j]
        rows.append({
            "latent": int(j),
            "auroc": float(roc_auc_score(y, z)),
            "rate_when_true": float((z[y == 1] > 0).mean()),
            "rate_when_false": float((z[y == 0] > 0).mean()),
            "mean_when_true": float(z[y == 1].mean()),
            "mean_when_false": float(z[y == 0].mean()),
        })  # fmt: skip
    return sorted(rows, key=lambda r: -r["auroc"])


def per_episode_mean(values: np.ndarray, episode_of: np.ndarray) -> np.ndarray:
    return np.array([values[episode_of == e].mean() for e in np.unique(episode_of)])


def villager_trunk_code(cell: Path, sae: SAE, hook: str, trunk: list[int]) -> tuple[np.ndarray, np.ndarray, dict]:
    """The SAE's codes and crosshair-on-villager labels of `cell`'s steps, and per episode (episode -> value) the
    `trunk` latents' summed code averaged over its steps with the crosshair on the villager."""
    codes, on_villager, episode = codes_and_label(cell, sae, hook, "crosshair_on_villager")
    mask = on_villager == 1
    means = per_episode_mean(codes[mask][:, trunk].sum(1), episode[mask])
    return codes, on_villager, dict(zip(np.unique(episode[mask]).tolist(), means.tolist()))


def trunk_latents(trees: Path, villager_cells: dict[str, Path], sae: SAE, hook: str) -> dict:
    """The SAE's latents that best pick out crosshair-on-log steps in `trees`, and their summed code on the villager
    (crosshair on it) in each villager cell, per episode; the two villager cells compared by Mann-Whitney."""
    codes, y, _ = codes_and_label(trees, sae, hook, "crosshair_on_log")
    ranked = rank_latents(codes, y)
    trunk = [r["latent"] for r in ranked[:N_TRUNK_LATENTS]]
    on_villager = {}
    for scene, cell in villager_cells.items():
        c, yv, per_episode = villager_trunk_code(cell, sae, hook, trunk)
        on_villager[scene] = {
            "n_steps_on_villager": int((yv == 1).sum()),
            "n_episodes": len(per_episode),
            "trunk_code_per_episode": list(per_episode.values()),
            "villager_latents": rank_latents(c, yv)[:5],
        }
    a = np.array(on_villager["villager_under_leaves"]["trunk_code_per_episode"])
    b = np.array(on_villager["villager_in_open"]["trunk_code_per_episode"])
    test = stats.mannwhitneyu(a, b, alternative="two-sided") if len(a) and len(b) else None
    on_log = codes[y == 1][:, trunk].sum(1)
    off_log = codes[y == 0][:, trunk].sum(1)
    findings = {
        "trunk_latents": ranked[:N_TRUNK_LATENTS],
        "trunk_code_on_logs": {"mean": float(on_log.mean()), "n_steps": int(len(on_log))},
        "trunk_code_elsewhere": {"mean": float(off_log.mean()), "n_steps": int(len(off_log))},
        "on_villager": on_villager,
        "under_leaves_vs_open": {
            "mean_under_leaves": float(a.mean()) if len(a) else None,
            "mean_in_open": float(b.mean()) if len(b) else None,
            "mann_whitney_p": None if test is None else float(test.pvalue),
            "unit": "episodes (mean over its steps with the crosshair on the villager)",
        },
    }
    return {"findings": findings, "plot": (on_log, off_log, a, b, trunk)}


def train_sae(run_dir: Path, hook: str, out: Path, args) -> Path:
    """`vptlens sae train` as the study trains its SAEs (TopK k=8, 8x); returns the SAE's directory."""
    run("sae", "train", str(run_dir), "--hook", hook, "--out", str(out), "--architectures", "topk:k=8",
        "--expansion-factor", "8", "--batch-size", "256", "--total-activations", str(args.sae_activations),
        "--warmup-steps", "50", "--val-fraction", "0.2", "--overwrite")  # fmt: skip
    return out / "topk-k_8"


def probe_layers(run_dir: Path, out: Path, labels: list[str]) -> dict:
    """`vptlens probe` of `labels` at every block of `run_dir` into `out`; its probe.json (crosshair_on_log in it)."""
    run("probe", str(run_dir), "--out", str(out), "--overwrite", "--labels", *labels,
        "--hooks", "blocks.*.hook_resid_post")  # fmt: skip
    probe = json.loads((out / "probe.json").read_text())
    if "crosshair_on_log" not in probe["labels"]:
        raise SystemExit(f"crosshair_on_log could not be probed ({probe['skipped_labels']}): record more seeds/steps")
    return probe


def inside(out: Path, args, docs: Path) -> dict:
    """Attention, probes and an SAE on the organism's tree_at_spot episodes of the villager study (a trunk ahead,
    natural forest around: its log breaks and crosshair-on-log steps), then the SAE's trunk latents on the villager."""
    villagers = out / "villagers"
    trees = cell_dir(villagers, agent="organism", scene="tree_at_spot")
    run("attention", str(trees), "--out", str(out / "attention"), "--overwrite")
    labels = ["crosshair_on_log", "crosshair_on_leaves", "attacking", "nearest_tree_distance"]
    probe = probe_layers(trees, out / "probe", labels)
    log = probe["labels"]["crosshair_on_log"]
    hook = log["best_hook"]
    sae_dir = train_sae(trees, hook, out / "sae", args)
    run("sae", "eval", str(sae_dir))
    run("sae", "dashboard", str(sae_dir), str(trees), "--out", str(out / "dashboard"), "--n-latents", "16",
        "--overwrite")  # fmt: skip
    sae = SAE.load(sae_dir)

    latents = trunk_latents(trees, {scene: cell_dir(villagers, agent="organism", scene=scene) for scene in
                                    ("villager_under_leaves", "villager_in_open")}, sae, hook)  # fmt: skip
    _plot_latents(*latents["plot"], docs / "trunk_latents.png")

    attention = json.loads((out / "attention" / "attention.json").read_text())
    for name in ("attention_events.png",):
        if (out / "attention" / name).exists():
            shutil.copyfile(out / "attention" / name, docs / name)
    return {
        "hook": hook,
        "probe": {
            name: {
                "best_hook": probe["labels"][name]["best_hook"],
                "best": probe["labels"][name]["probes"][probe["labels"][name]["best_hook"]]["summary"],
                "baseline": probe["labels"][name]["baseline"],
            }
            for name in labels
            if name in probe["labels"]
        },
        "attention": {
            "head_kinds": _count_kinds(attention["head_kinds"]),
            "n_key_frames": attention["key_frames"]["n_key_frames"],
            "events": attention.get("events"),
        },
        **latents["findings"],
        "sae_dir": str(sae_dir.resolve()),  # absolute: a spec's relative paths are read from the spec's directory
        "direction": str((out / "probe" / log["probes"][hook]["direction_file"]).resolve()),
    }


def _count_kinds(heads: list[dict]) -> dict[str, int]:
    kinds = [h["kind"] for h in heads]
    return {k: kinds.count(k) for k in sorted(set(kinds))}


def _plot_latents(on_log, off_log, under_leaves, in_open, trunk, path: Path, network: str = "organism") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {
        "tree ahead:\ncrosshair on a log": on_log,
        "tree ahead:\nelsewhere": off_log,
        "villager under leaves:\ncrosshair on it": under_leaves,
        "villager in the open:\ncrosshair on it": in_open,
    }
    fig, ax = plt.subplots(figsize=(8, 4))
    means = [float(np.mean(v)) if len(v) else np.nan for v in groups.values()]
    errs = [1.96 * float(np.std(v) / np.sqrt(len(v))) if len(v) > 1 else 0.0 for v in groups.values()]
    ax.bar(range(len(groups)), means, yerr=errs, color=["#8B5A2B", "#999999", "#C08040", "#6080C0"], capsize=4)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_ylabel("summed code of the trunk latents")
    ax.set_title(f"{network}: SAE latents {trunk}, the best at picking out crosshair-on-log steps", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ the intervention


def _villager_cells(args) -> dict:
    """What every edit spec shares: paired seeds against the villager in the open, and the villager metrics."""
    return {
        "control": {"scene": "villager_in_open", "edit": "none"},
        "seeds": {"start": 0, "count": args.n_seeds},
        "n_steps": args.villager_steps,
        "n_envs": 4,
        "metrics": ["target_hit", "hits", "crosshair_on_target_steps", "leaves_punched"],
        "target": {"tag": "target"},
    }


def intervention_spec(found: dict, args) -> dict:
    return {
        "name": "organism_villager_edits",
        "description": "Activation edits on the organism at the layer where crosshair_on_log is best decoded.",
        "agents": [{"name": "organism", "zoo": args.organism}],
        "env": {"kind": "blockworld", "height": 128, "width": 128},
        "scenes": ["villager_under_leaves", "villager_in_open"],
        "edits": [
            {"name": "none", "kind": "none"},
            {
                "name": "log_direction_out",
                "kind": "steering",
                "hook": found["hook"],
                "mode": "project_out",
                "strength": 1.0,
                "vector_path": found["direction"],
            },  # fmt: skip
            {
                "name": "trunk_latents_off",
                "kind": "latent_clamp",
                "sae_dir": found["sae_dir"],
                "latents": [r["latent"] for r in found["trunk_latents"]],
                "value": 0.0,
            },  # fmt: skip
        ],
        **_villager_cells(args),
    }


def activations_on_frames(policy, episode, hooks: list[str]) -> dict[str, np.ndarray]:
    """`policy`'s activations on a recorded episode's frames, its memory carried from the first frame, as float16
    (as the recorder stores them)."""
    frames = torch.from_numpy(episode["frames"][:]).unsqueeze(0)
    first = torch.zeros(frames.shape[:2], dtype=torch.bool)
    first[0, 0] = True
    with torch.no_grad():
        _, _, cache = policy.run_with_cache(frames, first, policy.initial_state(1), names=hooks)
    return {h: cache[h][0].to(torch.float16).numpy() for h in hooks}


def sae_control(out: Path, args, docs: Path) -> dict:
    """The inside stage's SAE and trunk-latent analysis repeated on the untrained network's activations of the very
    same frames: is "the villager under leaves is coded like a trunk" learned, or what a random CNN does with brown?

    Each cell's episodes are copied without their frames, their `activations/HOOK` replaced by the untrained
    network's (the attribute `activations_from` says so; `agent` still names who acted), then `vptlens sae train`
    and the same ranking run on the copies."""
    hook = json.loads((out / "findings.json").read_text())["inside"]["hook"]
    untrained, twin = untrained_policy(args.organism, out)
    copies = {}
    for scene in ("tree_at_spot", "villager_under_leaves", "villager_in_open"):
        source = cell_dir(out / "villagers", agent="organism", scene=scene)
        copies[scene] = copy = out / "untrained_activations" / scene
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("frames", "agent"))
        for episode in Run.open(source).episodes():
            group = zarr.open_group(str(copy / episode.path.name), mode="r+")
            group[f"activations/{hook}"][:] = activations_on_frames(untrained, episode, [hook])[hook]
            group.attrs["activations_from"] = {**twin, "hooks": [hook], "frames_from": str(source / episode.path.name)}
    # no `vptlens sae eval`: it splices the SAE into the episodes' agent, which is not the network it was trained on;
    # the held-out reconstruction is in train_log.json
    sae_dir = train_sae(copies["tree_at_spot"], hook, out / "sae_untrained", args)
    villager_cells = {s: copies[s] for s in ("villager_under_leaves", "villager_in_open")}
    latents = trunk_latents(copies["tree_at_spot"], villager_cells, SAE.load(sae_dir), hook)
    _plot_latents(*latents["plot"], docs / "trunk_latents_untrained.png", network="untrained")
    val = json.loads((sae_dir.parent / "train_log.json").read_text())["saes"][sae_dir.name]["val"]
    return {"hook": hook, "untrained": twin, "sae_dir": str(sae_dir), "val_nmse": val["nmse"], **latents["findings"]}


def untrained_control(out: Path, organism: str) -> dict:
    """crosshair_on_log probed from the organism's recorded activations and from its untrained initialisation's
    activations on the same frames, with the same episode folds, L2 grid and metric (AUROC per fold, mean and 95%
    interval over folds), at every hook the inside stage probed."""
    hooks = list(json.loads((out / "probe" / "probe.json").read_text())["labels"][CONTROL_LABEL]["probes"])
    untrained, twin = untrained_policy(organism, out)
    episodes = Run.open(cell_dir(out / "villagers", agent="organism", scene="tree_at_spot")).episodes()
    folds_by_episode = episode_folds([len(e) for e in episodes], ProbeConfig.n_folds, seed=ProbeConfig.seed)
    trained = {h: [] for h in hooks}
    random_init = {h: [] for h in hooks}
    ys, valids, folds = [], [], []
    for i, episode in enumerate(episodes):
        y, valid = compute_label(CONTROL_LABEL, episode)
        ys.append(y)
        valids.append(valid)
        folds.append(np.full(len(episode), folds_by_episode[i]))
        cache = activations_on_frames(untrained, episode, hooks)
        for h in hooks:
            trained[h].append(episode[f"activations/{h}"][:].astype(np.float16))
            random_init[h].append(cache[h])
    valid = np.concatenate(valids)
    y, fold = np.concatenate(ys)[valid], np.concatenate(folds)[valid]
    result = {"label": CONTROL_LABEL, "untrained": twin, "n_steps": int(valid.sum()), "n_positive": int(y.sum()),
              "n_episodes": len(episodes), "auroc": {}}  # fmt: skip
    for h in hooks:
        row = {}
        for name, acts in (("trained", trained[h]), ("untrained", random_init[h])):
            X = torch.from_numpy(np.concatenate(acts)[valid].astype(np.float32))
            cv = cross_validate(X, y, fold, "binary", ProbeConfig.l2)  # `vptlens probe`'s defaults throughout
            row[name] = cv["summary"]["auroc"]
        result["auroc"][h] = row
        print(f"{CONTROL_LABEL} at {h}: trained {row['trained']['mean']:.3f}, untrained {row['untrained']['mean']:.3f}")
    return result


def log_breaks(out: Path, checkpoint: Path, docs: Path) -> dict:
    """Key frames and event-triggered attention around log breaks, on a checkpoint that breaks logs in tree_at_spot."""
    run_dir, attention_dir = out / "log_breaks" / "run", out / "log_breaks" / "attention"
    run("record", "--model", str(checkpoint), "--weights", str(checkpoint.with_suffix(".weights")), "--scene",
        "tree_at_spot", "--n-episodes", str(LOG_BREAK_EPISODES), "--n-envs", "8", "--n-steps", str(LOG_BREAK_STEPS),
        "--out", str(run_dir), "--overwrite", *ENV)  # fmt: skip
    run("attention", str(run_dir), "--out", str(attention_dir), "--overwrite", "--event", "block_broken:*_log")
    shutil.copyfile(attention_dir / "attention_events.png", docs / "attention_around_log_breaks.png")
    attention = json.loads((attention_dir / "attention.json").read_text())
    events = attention["events"]
    return {
        "checkpoint": str(checkpoint),
        "head_kinds": _count_kinds(attention["head_kinds"]),
        "n_episodes": events["n_episodes"],
        "n_episodes_with_events": events["n_episodes_with_events"],
        "n_event_steps": events["n_events"],
        "enrichment": {k: v for k, v in events["enrichment"].items() if k != "null_distribution"},
    }


def steering_spec(out: Path, args) -> dict:
    """Steering along the probe's `attacking` direction at the last block (nearest the action heads), both signs, and a
    random unit direction (seed 0) as the control, at STEERING_GAPS x the attacking/non-attacking projection gap."""
    probe = json.loads((out / "probe" / "probe.json").read_text())
    blocks = [h for h in probe["labels"]["attacking"]["probes"] if h.startswith("blocks.")]
    if not blocks:
        raise SystemExit("the attacking probe has no block hook: run the inside stage (it probes blocks.*)")
    hook = max(blocks, key=lambda h: int(h.split(".")[1]))  # the last block, nearest the action heads
    direction = np.load(out / "probe" / probe["labels"]["attacking"]["probes"][hook]["direction_file"])
    unit = (direction / np.linalg.norm(direction)).astype(np.float32)
    attack_proj, other_proj = [], []
    for episode in Run.open(cell_dir(out / "villagers", agent="organism", scene="villager_in_open")).episodes():
        proj = episode[f"activations/{hook}"][:].astype(np.float32) @ unit
        attacking = episode["action/minerl/attack"][:].astype(bool)
        attack_proj.append(proj[attacking])
        other_proj.append(proj[~attacking])
    gap = float(np.concatenate(attack_proj).mean() - np.concatenate(other_proj).mean())
    strength = round(STEERING_GAPS * abs(gap), 1)
    vectors = out / "steering_vectors"
    vectors.mkdir(exist_ok=True)
    np.save(vectors / "attacking_unit.npy", unit * np.sign(gap))  # pointing from other steps to attacking ones
    random_unit = np.random.default_rng(0).standard_normal(unit.shape).astype(np.float32)
    np.save(vectors / "random_unit_seed0.npy", random_unit / np.linalg.norm(random_unit))
    steer = {"kind": "steering", "hook": hook, "mode": "add"}
    attacking, random = (
        str((vectors / "attacking_unit.npy").resolve()),
        str((vectors / "random_unit_seed0.npy").resolve()),
    )
    return {
        "name": "organism_villager_steering",
        "description": f"The attacking direction at {hook} added/subtracted at {STEERING_GAPS:g}x its gap "
        f"({abs(gap):.2f}), against a random direction of the same length.",
        "agents": [{"name": "organism", "zoo": args.organism}],
        "env": {"kind": "blockworld", "height": 128, "width": 128},
        "scenes": ["villager_in_open", "villager_under_leaves"],
        "edits": [
            {"name": "none", "kind": "none"},
            {"name": "attacking_down", **steer, "strength": -strength, "vector_path": attacking},
            {"name": "attacking_up", **steer, "strength": strength, "vector_path": attacking},
            {"name": "random_direction", **steer, "strength": strength, "vector_path": random},
        ],
        **_villager_cells(args),
    }


def _means_and_bca_errors(groups: list[np.ndarray]) -> tuple[list[float], list[list[float]]]:
    """Each group's mean and its 95% BCa interval as matplotlib's yerr ([below], [above])."""
    cis = [stats.bootstrap((v,), np.mean, method="BCa", n_resamples=4999, random_state=0).confidence_interval
           for v in groups]  # fmt: skip
    means = [float(v.mean()) for v in groups]
    return means, [[m - ci.low for m, ci in zip(means, cis)], [ci.high - m for m, ci in zip(means, cis)]]


VILLAGER_SCENES = {"villager_in_open": "in the open", "villager_under_leaves": "under leaves",
                   "villager_other_clothes_under_leaves": "other clothes,\nunder leaves"}  # fmt: skip


def plot_villager_hits(results: dict[str, Path], organism: str, path: Path, scenes: dict[str, str] = VILLAGER_SCENES,
                       title: str | None = None, color: str = "#8B5A2B") -> None:  # fmt: skip
    """Hits on the villager per episode, the organism beside its input-blind replay, in each of `scenes` (name ->
    label): a panel per experiment (`results`: title -> results.json), 95% BCa intervals."""
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), sharey=True, squeeze=False)
    for ax, (panel, path_json) in zip(axes[0], results.items()):
        df = pd.read_csv(path_json.with_name("results.csv"))
        df = df[df.metric == "hits"]
        for k, (agent, label, shade) in enumerate((("organism", "the organism", color),
                                                   ("blind", "its input-blind replay", "#AAAAAA"))):  # fmt: skip
            rows = [df[(df.agent == agent) & (df.scene == scene)].value.to_numpy(float) for scene in scenes]
            means, errors = _means_and_bca_errors(rows)
            ax.bar(np.arange(len(scenes)) + (k - 0.5) * 0.38, means, 0.38, yerr=errors, capsize=3, label=label,
                   color=shade)  # fmt: skip
        ax.set_xticks(range(len(scenes)), list(scenes.values()), fontsize=8)
        ax.set_title(f"{panel}, {len(rows[0])} paired seeds", fontsize=9)
    axes[0][0].set_ylabel("hits on the villager per episode (95% BCa)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or f"The villager under trunkless leaves, hit by {organism}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_steering(results_csv: Path, path: Path) -> None:
    """Hits on the villager per episode for each steering edit, both scenes, with 95% BCa intervals."""
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(results_csv)
    df = df[df.metric == "hits"]
    edits = ["none", "attacking_up", "attacking_down", "random_direction"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, scene in zip(axes, ("villager_in_open", "villager_under_leaves")):
        v = [df[(df.scene == scene) & (df.edit == edit)].value.to_numpy(float) for edit in edits]
        means, errors = _means_and_bca_errors(v)
        ax.bar(range(len(edits)), means, yerr=errors, capsize=4,
               color=["#999999", "#C05030", "#4070B0", "#80A080"])  # fmt: skip
        ax.set_xticks(range(len(edits)), ["none", "attacking +", "attacking -", "random +"], fontsize=8)
        ax.set_title(f"{scene} ({len(v[0])} paired seeds)", fontsize=9)
    axes[0].set_ylabel("hits on the villager per episode")
    fig.suptitle("Steering the organism's last block along the probe's attacking direction", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(x, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _estimate(result: dict) -> str:
    """'0.54 [0.40, 0.67]' from a summary's result: a proportion (Wilson) or a mean (BCa)."""
    if "successes" in result:
        return f"{result['successes']}/{result['n']} [{_fmt(result['low'])}, {_fmt(result['high'])}]"
    return f"{_fmt(result.get('mean'))} [{_fmt(result.get('low'))}, {_fmt(result.get('high'))}]"


def summary_tables(results_path: Path, rows_by: str, metrics: list[str], where: dict) -> str:
    """A markdown table of one experiment: a row per level of `rows_by` (cells matching `where`), a column per
    metric with its estimate and 95% interval."""
    r = json.loads(results_path.read_text())
    cells: dict[str, dict] = {}
    for s in r["summaries"]:
        if all(s[k] == v for k, v in where.items()) and s["metric"] in metrics:
            cells.setdefault(s[rows_by], {})[s["metric"]] = _estimate(s["result"]) + f" (n={s['n']})"
    lines = [f"| {rows_by} | " + " | ".join(metrics) + " |", "| --- " * (len(metrics) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(v.get(m, "") for m in metrics) + " |" for k, v in cells.items()]
    return "\n".join(lines)


def comparison_lines(results_path: Path, metrics: list[str], key: str = "comparisons") -> str:
    """One line per comparison against the control (or beyond the blind control): effect [95%], p, Holm p, n."""
    r = json.loads(results_path.read_text())
    out = []
    for c in r[key] or []:
        if c["metric"] not in metrics or "blind" in (c.get("treatment"), c.get("agent")):
            continue
        what = c.get("treatment") or c.get("scene")
        versus = c.get("control") or c.get("versus_scene")
        context = {k: c[k] for k in ("agent", "scene", "edit") if k in c and c[k] not in (what, versus)}
        out.append(
            f"- {c['metric']}: {what} vs {versus} {context}: {_fmt(c['effect'])} [{_fmt(c['low'])}, {_fmt(c['high'])}]"
            f", p {_fmt(c['p_value'], 4)}, Holm {_fmt(c.get('p_holm'), 4)}, {c['n_pairs']} pairs"
        )
    return "\n".join(out)


def write_summary(out: Path, findings: dict) -> Path:
    parts = ["# The model organism's study (scripts/organism_study.py)\n"]
    if "competence" in findings:
        path = Path(findings["competence"])
        metrics = ["logs_broken", "leaves_punched", "mobs_attacked"]
        terrain = json.loads(path.with_name("experiment.json").read_text())["spec"]["env"].get("terrain", "hills")
        parts += [f"## Competence (open_world, {terrain}, held-out seeds)\n",
                  summary_tables(path, "agent", metrics, {}), "", comparison_lines(path, metrics), ""]  # fmt: skip
    if "villagers" in findings:
        path = Path(findings["villagers"])
        metrics = ["target_hit", "target_killed", "hits", "leaves_punched", "logs_broken"]
        parts += ["## The villager study\n"]
        for agent in ("organism", "blind"):
            parts += [f"### {agent}\n", summary_tables(path, "scene", metrics, {"agent": agent}), ""]
        parts += ["### Against the villager in the open\n", comparison_lines(path, metrics), ""]
        parts += ["### Beyond the input-blind control\n", comparison_lines(path, metrics, "beyond_blind"), ""]
    if "replication" in findings:
        path = Path(findings["replication"])
        metrics = ["target_hit", "hits", "crosshair_on_target_steps", "leaves_punched"]
        parts += ["## The villager study again on fresh seeds (50-199)\n"]
        for agent in ("organism", "blind"):
            parts += [f"### {agent}\n", summary_tables(path, "scene", metrics, {"agent": agent}), ""]
        parts += ["### Against the villager in the open\n", comparison_lines(path, metrics), ""]
        parts += ["### Beyond the input-blind control\n", comparison_lines(path, metrics, "beyond_blind"), ""]
    if "inside" in findings:
        i = findings["inside"]
        parts += ["## Inside\n", "```json", json.dumps({k: v for k, v in i.items() if k != "probe"}, indent=1)[:6000],
                  "```", ""]  # fmt: skip
    if "control" in findings:
        c = findings["control"]
        parts += [f"## Untrained control: {c['label']} probed from the same frames ({c['n_steps']} steps, "
                  f"{c['n_positive']} positive, {c['n_episodes']} episodes)\n", "| hook | trained | untrained |",
                  "| --- | --- | --- |"]  # fmt: skip
        for hook, row in c["auroc"].items():
            cells = [f"{row[k]['mean']:.3f} [{row[k]['ci95'][0]:.3f}, {row[k]['ci95'][1]:.3f}]" for k in row]
            parts.append(f"| {hook} | {' | '.join(cells)} |")
        parts.append("")
    for stage, title in (("edits", "Activation edits"), ("steering", "Steering along the attacking direction")):
        if stage not in findings:
            continue
        path = Path(findings[stage])
        metrics = ["target_hit", "hits", "crosshair_on_target_steps", "leaves_punched"]
        parts += [f"## {title}\n"]
        for scene in ("villager_under_leaves", "villager_in_open"):
            parts += [f"### {scene}\n", summary_tables(path, "edit", metrics, {"scene": scene}), ""]
        parts += [comparison_lines(path, metrics), ""]
    (out / "findings.md").write_text("\n".join(parts))
    return out / "findings.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--docs", type=Path, default=Path("docs/organism"))
    parser.add_argument("--stages", nargs="*", choices=STAGES + EXTRA_STAGES, default=list(STAGES),
                        help="none: only the summary")  # fmt: skip
    parser.add_argument("--organism", default=ORGANISM, help="the zoo organism studied (default: %(default)s)")
    parser.add_argument("--checkpoint", type=Path, help="log_breaks: a .model (its .weights beside it) that chops "
                        "(default: the organism's files)")  # fmt: skip
    parser.add_argument("--n-seeds", type=int, default=50, help="paired seeds per cell (villagers, intervention)")
    parser.add_argument("--villager-steps", type=int, default=200)
    parser.add_argument("--competence-seeds", type=int, default=30)
    parser.add_argument("--competence-steps", type=int, default=600)
    parser.add_argument(
        "--competence-terrain",
        choices=("hills", "forest"),
        default="hills",
        help="competence: the held-out worlds' terrain (forest: where a tree is always near)",
    )
    parser.add_argument("--sae-activations", type=int, default=300_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes everywhere: a smoke run")
    args = parser.parse_args()
    organisms = sorted(name for name, entry in ZOO.items() if entry.kind == "organism" and entry.shipped)
    if args.organism not in organisms:
        parser.error(f"--organism {args.organism!r} is not a shipped organism: one of {', '.join(organisms)}")
    if args.checkpoint is None:
        args.checkpoint = shipped_files(get_zoo_entry(args.organism))["model"]
    if "log_breaks" in args.stages and not args.checkpoint.with_suffix(".weights").exists():
        parser.error(f"--checkpoint {args.checkpoint}: no {args.checkpoint.with_suffix('.weights').name} beside it")
    if args.quick:
        args.villager_steps, args.competence_seeds, args.competence_steps = 150, 2, 100
        args.sae_activations = 20_000
    args.out.mkdir(parents=True, exist_ok=True)
    args.docs.mkdir(parents=True, exist_ok=True)
    findings_path = args.out / "findings.json"
    findings = json.loads(findings_path.read_text()) if findings_path.exists() else {}
    for stage, name in (("competence", "competence"), ("villagers", "villagers"), ("edits", "edits"),
                        ("steering", "steering"), ("replication", "replication")):  # fmt: skip
        if (args.out / name / "results.json").exists():  # an earlier call's (or an interrupted call's) results
            findings.setdefault(stage, str(args.out / name / "results.json"))
    workers = ["--workers", str(args.workers), "--overwrite"]
    if "competence" in args.stages:
        spec = "organism_competence" + ("_forest" if args.competence_terrain == "forest" else "")
        agents = agent_args(args.organism, args.out, "organism", "untrained")
        run("experiment", "run", spec, *agents, "--out", str(args.out / "competence"), "--n-seeds",
            str(args.competence_seeds), "--n-steps", str(args.competence_steps), *workers)  # fmt: skip
        findings["competence"] = str(args.out / "competence" / "results.json")
    if "villagers" in args.stages:
        agents = agent_args(args.organism, args.out, "organism")
        run("experiment", "run", "organism_villager_study", *agents, "--out", str(args.out / "villagers"), "--n-seeds",
            str(args.n_seeds), "--n-steps", str(args.villager_steps), *workers)  # fmt: skip
        findings["villagers"] = str(args.out / "villagers" / "results.json")
    if "inside" in args.stages:
        findings["inside"] = inside(args.out, args, args.docs)
        findings_path.write_text(json.dumps(findings, indent=1))
    if "intervention" in args.stages:
        spec = args.out / "organism_villager_edits.yaml"
        spec.write_text(yaml.safe_dump(intervention_spec(findings["inside"], args), sort_keys=False))
        run("experiment", "run", str(spec), "--out", str(args.out / "edits"), *workers)
        findings["edits"] = str(args.out / "edits" / "results.json")
    if "control" in args.stages:
        findings["control"] = untrained_control(args.out, args.organism)
        findings_path.write_text(json.dumps(findings, indent=1))
    if "sae_control" in args.stages:
        findings["sae_control"] = sae_control(args.out, args, args.docs)
        findings_path.write_text(json.dumps(findings, indent=1))
    if "steering" in args.stages:
        spec = args.out / "organism_villager_steering.yaml"
        spec.write_text(yaml.safe_dump(steering_spec(args.out, args), sort_keys=False))
        run("experiment", "run", str(spec), "--out", str(args.out / "steering"), *workers)
        findings["steering"] = str(args.out / "steering" / "results.json")
    if "log_breaks" in args.stages:
        findings["log_breaks"] = log_breaks(args.out, args.checkpoint, args.docs)
    if "replication" in args.stages:
        sizes = ["--n-seeds", str(args.n_seeds), "--n-steps", str(args.villager_steps)] if args.quick else []
        run("experiment", "run", "organism_villager_replication", "--agent", f"organism={args.organism}", "--out",
            str(args.out / "replication"), *sizes, *workers)  # fmt: skip
        findings["replication"] = str(args.out / "replication" / "results.json")
    if "replication" in findings and "villagers" in findings:
        seeds = {"villagers": "seeds 0-49", "replication": "seeds 50-199 (replication)"}
        plot_villager_hits({seeds[k]: Path(findings[k]) for k in seeds}, args.organism, args.docs / "villager_hits.png")
    if "steering" in findings:
        plot_steering(Path(findings["steering"]).with_name("results.csv"), args.docs / "steering.png")
    findings_path.write_text(json.dumps(findings, indent=1))
    print(f"findings: {findings_path}, {write_summary(args.out, findings)}; figures: {args.docs}")


if __name__ == "__main__":
    main()
