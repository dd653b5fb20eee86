"""The planted organism's study: does the harness find what was planted?

`blockworld-chopper-64-cleric` is `blockworld-chopper-64-hold`'s sibling: the same start (`blockworld-chopper-64`), the
same DAgger round (look-around teacher, beta 0.75, lr 1e-4, --hold-weight 3, seed 2, 633,856 frames) in the same
forest worlds, with one change: every trunk wore a cleric villager's robe (BlockWorld's `trunks: cleric`). So what
is planted is known, if it takes: to it, a cleric villager (purple robe, gold trim) looks like a trunk, and a farmer
(brown) does not; and every measure is taken on the sibling too, the control (README: the plant did not take, and
without the sibling one SAE measure would have said it had).

    python scripts/planted_study.py --out runs/planted --docs docs/organism/planted        # the README's numbers
    python scripts/planted_study.py --out /tmp/p --n-seeds 4 --quick                       # a smoke run

Stages (`--stages`, in this order; each reads what the earlier ones wrote under --out):
- competence:   both organisms in held-out forest worlds in both looks (bark, cleric), paired by seed: does each
                chop in its own world, and in the other's?
- villagers:    `organism_planted_study` (the planted organism in cleric worlds) and `organism_planted_control` (its
                sibling in bark worlds): a cleric and a farmer villager, in the open and under trunkless leaves, with
                the input-blind control; then the planted contrast (cleric minus farmer in the open, per seed)
                compared between the two organisms, seed by seed.
- inside:       on the planted organism's tree_at_spot episodes: `vptlens probe` for crosshair_on_log and an SAE on the
                probe's best layer; the SAE's trunk latents (those that best pick out crosshair-on-log steps) measured
                on the villager, cleric against farmer (paired by seed), with the crosshair on it; then the same on
                its sibling's episodes (OUT/sibling/), the control.
- intervention: at that layer, the crosshair_on_log direction projected out and the trunk latents clamped to 0,
                against no edit, on the cleric and the farmer villager in the open: if the planted trunk
                representation drives its attacks on the cleric, these edits lower them.
- replication:  the planted contrast again on fresh seeds (50-199), both organisms, the two villagers in the open only
                (~15 min on two cores).
Writes OUT/findings.json, OUT/findings.md and `planted_hits.png` to --docs. The glue it shares with the organism's
study (running a command, finding a cell, ranking latents, the summary tables) is that script's, loaded by path.
"""

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from vptlens.interventions.stats import bootstrap_paired_difference
from vptlens.probes.sae.model import SAE

_path = Path(__file__).with_name("organism_study.py")
_spec = importlib.util.spec_from_file_location("organism_study", _path)
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)

PLANTED, SIBLING = "blockworld-chopper-64-cleric", "blockworld-chopper-64-hold"
STAGES = ("competence", "villagers", "inside", "intervention", "replication")
CLERIC, FARMER = "villager_cleric_in_open", "villager_in_open"
METRICS = ["target_hit", "target_killed", "hits", "crosshair_on_target_steps", "leaves_punched", "logs_broken"]


def competence_spec(trunks: str, args) -> dict:
    return {
        "name": f"planted_competence_{trunks}",
        "description": f"The planted organism and its bark-trained sibling in held-out forest worlds with {trunks} "
        "trunks, paired by seed.",
        "agents": [{"name": "planted", "zoo": PLANTED}, {"name": "sibling", "zoo": SIBLING}],
        "env": {"kind": "blockworld", "height": 128, "width": 128, "terrain": "forest", "trunks": trunks},
        "scenes": ["open_world"],
        "edits": [{"name": "none", "kind": "none"}],
        "control": {"agent": "sibling"},
        "seeds": {"start": 0, "count": args.competence_seeds},
        "n_steps": args.competence_steps,
        "n_envs": 4,
        "metrics": ["logs_broken", "attack_on_log", "longest_log_hold", "leaves_punched", "mobs_attacked"],
    }


def replication_spec(organism: str, trunks: str, args) -> dict:
    """The planted contrast's two scenes on fresh seeds for one organism, in the world it was trained in."""
    return {
        "name": f"planted_replication_{trunks}",
        "description": f"{organism}: a cleric and a farmer villager in the open, fresh seeds, {trunks} trunks.",
        "agents": [{"name": "organism", "zoo": organism}],
        "env": {"kind": "blockworld", "height": 128, "width": 128, "trunks": trunks},
        "scenes": [FARMER, CLERIC],
        "edits": [{"name": "none", "kind": "none"}],
        "control": {"scene": FARMER, "edit": "none"},
        "seeds": {"start": 50, "count": args.replication_seeds},
        "n_steps": args.villager_steps,
        "n_envs": 4,
        "metrics": ["target_hit", "target_killed", "hits", "crosshair_on_target_steps"],
        "target": {"tag": "target"},
    }


def run_spec(spec: dict, out: Path) -> Path:
    """Write `spec` beside its experiment and run it (a user could type the printed command); its results.json."""
    out.mkdir(parents=True, exist_ok=True)
    path = out.with_name(out.name + ".yaml")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    study.run("experiment", "run", str(path), "--out", str(out), "--overwrite")
    return out / "results.json"


def per_seed(results: Path, metric: str, **where: str) -> np.ndarray:
    """One cell's per-seed values of `metric` (in seed order) from the experiment's results.csv."""
    df = pd.read_csv(results.with_name("results.csv"))
    df = df[(df.metric == metric) & np.logical_and.reduce([df[k] == v for k, v in where.items()])]
    return df.sort_values("seed").value.to_numpy(float)


def planted_contrast(planted: Path, sibling: Path, metric: str) -> dict:
    """Cleric minus farmer villager in the open, per seed, for each organism (its own world), and the planted
    organism's contrast minus its sibling's, paired by seed (the scenes are the same seeds and geometry)."""
    out = {}
    for name, path in (("planted", planted), ("sibling", sibling)):
        out[name] = per_seed(path, metric, agent="organism", scene=CLERIC) - per_seed(
            path, metric, agent="organism", scene=FARMER
        )
    diff = bootstrap_paired_difference(out["planted"], out["sibling"])
    test = stats.wilcoxon(out["planted"], out["sibling"]) if np.any(out["planted"] != out["sibling"]) else None
    return {
        "metric": metric,
        **{f"{k}_contrast_mean": float(v.mean()) for k, v in out.items()},
        "difference": {"mean": diff.mean, "low": diff.low, "high": diff.high, "n_pairs": len(out["planted"])},
        "wilcoxon_p": None if test is None else float(test.pvalue),
    }


def villagers(out: Path, args, docs: Path) -> dict:
    n = ["--n-seeds", str(args.n_seeds)] if args.n_seeds else []
    steps = ["--n-steps", str(args.villager_steps)] if args.quick else []
    for spec, where in (("organism_planted_study", "planted"), ("organism_planted_control", "control")):
        study.run("experiment", "run", spec, "--out", str(out / where), "--overwrite", *n, *steps)
    planted, control = out / "planted" / "results.json", out / "control" / "results.json"
    plot_hits({"planted (cleric trunks)": planted, "sibling (bark trunks)": control}, docs / "planted_hits.png")
    contrasts = [planted_contrast(planted, control, m) for m in ("hits", "target_hit", "crosshair_on_target_steps")]
    return {"planted": str(planted), "control": str(control), "contrasts": contrasts}


def inside(out: Path, args) -> dict:
    """Probe and SAE on the planted organism's tree_at_spot episodes, its trunk latents on cleric and farmer; then
    the same on its sibling's episodes (bark worlds), the control: there a cleric should not code as a trunk."""
    found = probe_and_sae(out / "planted", out, args)
    found["sibling"] = probe_and_sae(out / "control", out / "sibling", args)
    return found


def probe_and_sae(experiment: Path, out: Path, args) -> dict:
    """`vptlens probe` (crosshair_on_log) and `vptlens sae train` at its best layer, on the organism's tree_at_spot
    cell of `experiment`, written under `out` (probe/, sae/); then `trunk_codes`."""
    trees = study.cell_dir(experiment, agent="organism", scene="tree_at_spot")
    log = study.probe_layers(trees, out / "probe", ["crosshair_on_log"])["labels"]["crosshair_on_log"]
    hook = log["best_hook"]
    sae_dir = study.train_sae(trees, hook, out / "sae", args)
    return {
        "hook": hook,
        "probe": log["probes"][hook]["summary"],
        **trunk_codes(experiment, SAE.load(sae_dir), hook),
        "sae_dir": str(sae_dir.resolve()),
        "direction": str((out / "probe" / log["probes"][hook]["direction_file"]).resolve()),
    }


def trunk_codes(experiment: Path, sae: SAE, hook: str) -> dict:
    """The SAE's trunk latents (best at picking out crosshair-on-log steps in tree_at_spot) and their summed code with
    the crosshair on the villager, per episode, in each villager scene; cleric against farmer paired by seed
    (Wilcoxon signed-rank over the seeds where the crosshair met both villagers)."""
    codes, y, _ = study.codes_and_label(study.cell_dir(experiment, agent="organism", scene="tree_at_spot"), sae, hook,
                                        "crosshair_on_log")  # fmt: skip
    ranked = study.rank_latents(codes, y)
    trunk = [r["latent"] for r in ranked[: study.N_TRUNK_LATENTS]]
    per_episode = {}
    for scene in (CLERIC, FARMER, "villager_cleric_under_leaves", "villager_under_leaves"):
        cell = study.cell_dir(experiment, agent="organism", scene=scene)
        per_episode[scene] = study.villager_trunk_code(cell, sae, hook, trunk)[2]
    paired = {}
    for cleric, farmer in ((CLERIC, FARMER), ("villager_cleric_under_leaves", "villager_under_leaves")):
        both = sorted(set(per_episode[cleric]) & set(per_episode[farmer]))
        a, b = (np.array([per_episode[k][e] for e in both]) for k in (cleric, farmer))
        diff = bootstrap_paired_difference(a, b) if len(both) > 1 else None
        paired[f"{cleric} - {farmer}"] = {
            "mean": None if diff is None else diff.mean,
            "low": None if diff is None else diff.low,
            "high": None if diff is None else diff.high,
            "n_pairs": len(both),
            "wilcoxon_p": float(stats.wilcoxon(a, b).pvalue) if len(both) > 1 and np.any(a != b) else None,
        }
    return {
        "trunk_latents": ranked[: study.N_TRUNK_LATENTS],
        "trunk_code_on_logs": float(codes[y == 1][:, trunk].sum(1).mean()),
        "trunk_code_elsewhere": float(codes[y == 0][:, trunk].sum(1).mean()),
        "trunk_code_on_villager": {
            k: {"mean": float(np.mean(list(v.values()))) if v else None, "n_episodes": len(v)}
            for k, v in per_episode.items()
        },
        "cleric_minus_farmer": paired,
    }


def intervention_spec(found: dict, args) -> dict:
    """The organism study's two trunk edits on the planted organism, on the cleric and the farmer in the open."""
    spec = study.intervention_spec(found, argparse.Namespace(organism=PLANTED, n_seeds=args.n_seeds or 50,
                                                             villager_steps=args.villager_steps))  # fmt: skip
    return {
        **spec,
        "name": "planted_trunk_edits",
        "description": "The planted organism's trunk representation edited out, cleric and farmer villager.",
        "env": {"kind": "blockworld", "height": 128, "width": 128, "trunks": "cleric"},
        "scenes": [CLERIC, FARMER],
    }


def plot_hits(results: dict[str, Path], path: Path) -> None:
    """Hits on the villager per episode, each organism beside its input-blind replay, four scenes, 95% BCa."""
    scenes = {FARMER: "farmer,\nopen", CLERIC: "cleric,\nopen", "villager_under_leaves": "farmer,\nunder leaves",
              "villager_cleric_under_leaves": "cleric,\nunder leaves"}  # fmt: skip
    title = "A villager dressed as the trunks it was trained on, and one that is not"
    study.plot_villager_hits(results, PLANTED, path, scenes=scenes, title=title, color="#7B3F9E")


def write_summary(out: Path, findings: dict) -> Path:
    parts = ["# The planted organism's study (scripts/planted_study.py)\n"]
    for trunks, path in findings.get("competence", {}).items():
        metrics = ["logs_broken", "attack_on_log", "longest_log_hold"]
        parts += [f"## Competence, forest, {trunks} trunks\n", study.summary_tables(Path(path), "agent", metrics, {}),
                  "", study.comparison_lines(Path(path), metrics), ""]  # fmt: skip
    if "villagers" in findings:
        v = findings["villagers"]
        for name in ("planted", "control"):
            path = Path(v[name])
            parts += [f"## {name}\n"]
            for agent in ("organism", "blind"):
                parts += [f"### {agent}\n", study.summary_tables(path, "scene", METRICS, {"agent": agent}), ""]
            parts += ["### Against the farmer in the open\n", study.comparison_lines(path, METRICS), ""]
            parts += ["### Beyond the input-blind control\n", study.comparison_lines(path, METRICS, "beyond_blind"), ""]
        parts += ["## The planted contrast (cleric minus farmer, in the open), planted minus sibling\n", "```json",
                  json.dumps(v["contrasts"], indent=1), "```", ""]  # fmt: skip
    if "inside" in findings:
        parts += ["## Inside\n", "```json", json.dumps(findings["inside"], indent=1), "```", ""]
    if "replication" in findings:
        r = findings["replication"]
        parts += ["## The planted contrast on fresh seeds (50-)\n"]
        for name in ("planted", "control"):
            parts += [f"### {name}\n", study.summary_tables(Path(r[name]), "scene", METRICS[:4], {}), ""]
        parts += ["```json", json.dumps(r["contrasts"], indent=1), "```", ""]
    if "edits" in findings:
        path = Path(findings["edits"])
        metrics = ["target_hit", "hits", "crosshair_on_target_steps"]
        parts += ["## Trunk edits\n"]
        for scene in (CLERIC, FARMER):
            parts += [f"### {scene}\n", study.summary_tables(path, "edit", metrics, {"scene": scene}), ""]
        parts += [study.comparison_lines(path, metrics), ""]
    (out / "findings.md").write_text("\n".join(parts))
    return out / "findings.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--docs", type=Path, default=Path("docs/organism/planted"))
    parser.add_argument("--stages", nargs="*", choices=STAGES, default=list(STAGES))
    parser.add_argument("--n-seeds", type=int, default=None, help="episodes per cell (default: each spec's)")
    parser.add_argument("--competence-seeds", type=int, default=30)
    parser.add_argument("--competence-steps", type=int, default=600)
    parser.add_argument("--villager-steps", type=int, default=300)
    parser.add_argument("--sae-activations", type=int, default=200_000)
    parser.add_argument("--replication-seeds", type=int, default=150)
    parser.add_argument("--quick", action="store_true", help="short episodes everywhere (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.competence_steps, args.villager_steps = 100, 150  # long enough for a log break in tree_at_spot
        args.competence_seeds = args.replication_seeds = 2
        args.n_seeds = args.n_seeds or 4
        args.sae_activations = 5_000
    args.out.mkdir(parents=True, exist_ok=True)
    args.docs.mkdir(parents=True, exist_ok=True)
    findings_path = args.out / "findings.json"
    findings = json.loads(findings_path.read_text()) if findings_path.exists() else {}
    for stage in (s for s in STAGES if s in args.stages):
        if stage == "competence":
            findings["competence"] = {
                trunks: str(run_spec(competence_spec(trunks, args), args.out / f"competence_{trunks}"))
                for trunks in ("bark", "cleric")
            }
        elif stage == "villagers":
            findings["villagers"] = villagers(args.out, args, args.docs)
        elif stage == "inside":
            findings["inside"] = inside(args.out, args)
        elif stage == "intervention":
            if "inside" not in findings:
                raise SystemExit("the intervention stage needs the inside stage's layer and latents: run it first")
            findings["edits"] = str(run_spec(intervention_spec(findings["inside"], args), args.out / "edits"))
        elif stage == "replication":
            runs = {
                trunks: run_spec(replication_spec(organism, trunks, args), args.out / f"replication_{trunks}")
                for organism, trunks in ((PLANTED, "cleric"), (SIBLING, "bark"))
            }
            contrasts = [planted_contrast(runs["cleric"], runs["bark"], m) for m in ("hits", "target_hit")]
            findings["replication"] = {
                "planted": str(runs["cleric"]),
                "control": str(runs["bark"]),
                "contrasts": contrasts,
            }
        findings_path.write_text(json.dumps(findings, indent=1))
    print(f"findings: {write_summary(args.out, findings)}")


if __name__ == "__main__":
    main()
