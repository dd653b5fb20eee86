"""Put a trained model organism into the package (`agents/organism/`), with its untrained twin and its provenance.

    python scripts/ship_organism.py runs/organism/rounds/policy-500224 --train-dir runs/organism \
        [--competence runs/competence/results.json]
    python scripts/ship_organism.py --evaluation runs/organism_study/competence/results.json   # only the evaluation
    python scripts/ship_organism.py runs/organism64/rounds/policy-N --train-dir runs/organism64 \
        --name blockworld-chopper-64 --no-untrained   # another checkpoint beside it, a zoo entry of its own

Writes `blockworld-chopper.{model,weights}`, `blockworld-chopper-untrained.weights` (the same architecture at
the trainer's own initialisation, `make_random_policy(seed)`, before any update) and `blockworld-chopper.json`
(the training run's provenance and log summary, the checkpoint's digests, the competence results when given),
then prints the zoo entries' sha256 to paste into `agents/zoo.py`. `--name` ships under another name (the
organism studied in the README is `blockworld-chopper`); `--no-untrained` leaves out the twin (it is
`make_random_policy(config, seed)`, reproducible from the provenance). Training directories are not in git: this
is how a checkpoint leaves one. `--evaluation` alone puts a competence evaluation of the checkpoint already
shipped into its provenance and changes nothing else (its results must name the shipped files' digests).
"""

import argparse
import dataclasses
import json
import re
import shutil
from pathlib import Path

from vptlens.agents.loading import load_policy, make_random_policy, sha256_file
from vptlens.agents.zoo import SHIPPED_DIR
from vptlens.training.bc import RUNTIME_FIELDS, BCConfig
from vptlens.training.checkpoint import save_policy

NAME = "blockworld-chopper"
TRAINING_KEYS = ("config", "data", "package_version", "git_commit", "init_from")
"""What the shipped provenance keeps of the training run's (`init_from`: digests of the checkpoint it began from)."""


def _log_summary(log_path: Path, frames: int) -> dict:
    """Mean loss and agreement with the expert over the last 50 updates before `frames`, and per round."""
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["frames"] <= frames]
    last = rows[-50:]
    keys = ("loss", "buttons_acc", "camera_acc", "fps", "learner_driven")
    return {
        "n_updates_logged": len(rows),
        "last_50_updates": {k: sum(r[k] for r in last) / len(last) for k in keys},
        "rounds": sorted({r["round"] for r in rows}),
    }


def reproduce_command(config: dict, out: str) -> str:
    """The `vptlens train bc` command line that plans this training: every option that differs from its default
    (runtime-only options such as --threads aside), `--out` as given."""
    defaults = {f.name: f.default for f in dataclasses.fields(BCConfig) if f.default is not dataclasses.MISSING}
    parts = ["vptlens train bc --out", out]
    for name, value in config.items():
        if name in RUNTIME_FIELDS or name == "out" or name not in defaults:
            continue
        default = defaults[name]
        if isinstance(default, tuple):
            value, default = list(value), list(default)
        if value == default:
            continue
        flag = "--" + name.replace("_", "-")
        parts.append(f"{flag} {' '.join(map(str, value))}" if isinstance(value, list) else f"{flag} {value}")
    return " ".join(parts)


def add_evaluation(results: Path, parser: argparse.ArgumentParser, name: str = NAME) -> None:
    """The shipped provenance with `results` (of the shipped checkpoint: its model digest must be in them)."""
    path = SHIPPED_DIR / f"{name}.json"
    if not path.is_file():
        parser.error(f"{path} does not exist: ship a checkpoint under --name {name} first")
    provenance = json.loads(path.read_text())
    evaluation = json.loads(results.read_text())
    shipped = provenance["files"][f"{name}.weights"]
    cells = json.loads((results.parent / "experiment.json").read_text())["cells"]
    evaluated = {  # the digests of the organism's weights each cell recorded with (run.json's agent record)
        json.loads((results.parent / c["dir"] / "run.json").read_text())["agent"].get("weights_sha256")
        for c in cells
        if (results.parent / c["dir"] / "run.json").is_file()
    }
    if "logs_broken" not in {row["metric"] for row in evaluation.get("summaries", [])}:
        parser.error(f"{results} measures no logs_broken: give `vptlens experiment run organism_competence`'s results")
    if shipped not in evaluated:
        parser.error(f"{results}: no cell ran the shipped weights (sha256 {shipped[:12]}...); evaluate them first")
    provenance["evaluation"] = evaluation
    path.write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"{path}: evaluation from {results}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stem", type=Path, nargs="?", help="checkpoint stem: STEM.model + STEM.weights")
    parser.add_argument("--train-dir", type=Path, help="the `vptlens train bc --out` directory")
    parser.add_argument("--competence", type=Path, help="results.json of `vptlens experiment run organism_competence`")
    parser.add_argument("--evaluation", type=Path, help="only add this competence results.json to the shipped JSON")
    parser.add_argument("--name", default=NAME, help=f"the shipped files' stem and zoo name (default {NAME})")
    parser.add_argument(
        "--no-untrained", dest="untrained", action="store_false", help="do not ship the untrained twin's weights"
    )
    args = parser.parse_args()
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", args.name):
        parser.error(f"--name {args.name!r}: use lower-case letters, digits and single dashes (e.g. {NAME}-64)")
    if args.evaluation is not None:
        if args.stem is not None or args.train_dir is not None:
            parser.error("--evaluation updates the shipped provenance only: give no checkpoint or --train-dir")
        add_evaluation(args.evaluation, parser, args.name)
        return
    if args.stem is None or args.train_dir is None:
        parser.error("give the checkpoint STEM and --train-dir (or --evaluation alone)")
    model, weights = args.stem.with_suffix(".model"), args.stem.with_suffix(".weights")
    for path in (model, weights, args.train_dir / "provenance.json", args.train_dir / "log.jsonl"):
        if not path.is_file():
            parser.error(f"{path} does not exist")
    train = json.loads((args.train_dir / "provenance.json").read_text())
    frames = int(args.stem.name.rsplit("-", 1)[1]) if args.stem.parent.name == "rounds" else train["frames"]

    name = args.name
    shipped = [SHIPPED_DIR / f"{name}.model", SHIPPED_DIR / f"{name}.weights"]
    SHIPPED_DIR.mkdir(exist_ok=True)
    shutil.copyfile(model, shipped[0])
    shutil.copyfile(weights, shipped[1])
    policy = load_policy(*shipped)
    seed = train["config"]["seed"]
    if args.untrained:
        _, untrained = save_policy(make_random_policy(policy.cfg, seed=seed), SHIPPED_DIR / f"{name}-untrained")
        (SHIPPED_DIR / f"{name}-untrained.model").unlink()  # the same architecture file as the trained one
        shipped.append(untrained)

    provenance = {
        "name": name,
        "checkpoint": str(args.stem),
        "frames": frames,
        "architecture": policy.cfg.to_dict(),
        "n_params": policy.n_params(),
        "training": {k: train[k] for k in TRAINING_KEYS if k in train},
        "training_log": _log_summary(args.train_dir / "log.jsonl", frames),
        "untrained": f"make_random_policy(config, seed={seed}): the trainer's initialisation before any update"
        + ("" if args.untrained else " (not shipped: --no-untrained)"),
        "reproduce": (
            reproduce_command(train["config"], str(args.train_dir))
            + "; the shipped checkpoint is "
            + (f"rounds/policy-{frames}" if args.stem.parent.name == "rounds" else f"its last, at {frames} frames")
        ),
        "files": {p.name: sha256_file(p) for p in sorted(shipped)},
    }
    if args.competence:
        provenance["evaluation"] = json.loads(args.competence.read_text())
    (SHIPPED_DIR / f"{name}.json").write_text(json.dumps(provenance, indent=1) + "\n")
    for file_name, digest in provenance["files"].items():
        print(f"{file_name}  sha256 {digest}")


if __name__ == "__main__":
    main()
