"""Interventions: experiments that edit scenes and activations, run over seeds, with statistics against controls.

>>> from vptlens.interventions import load_spec, run_experiment, analyse
>>> spec = load_spec("villager_study")            # or a YAML/JSON file
>>> run_experiment(spec, "runs/villagers", workers=2)
>>> result = analyse("runs/villagers")            # results.csv, results.json, report.html
>>> open_loop_effect(episode, HeadAblation(("3.*",)))  # ΔP(attack) and KL per step on a recorded episode
>>> counterfactual_replay(episode, "tree_at_spot")       # the same poses and actions seen in another scene
"""

from vptlens.interventions.analysis import analyse
from vptlens.interventions.counterfactual import counterfactual_frames, counterfactual_replay
from vptlens.interventions.edits import (
    EDITS,
    HeadAblation,
    KeyFrameMask,
    LatentClamp,
    NoEdit,
    Patch,
    Steering,
    edit_from_dict,
)
from vptlens.interventions.metrics import Target, TimeToEvent, compute_metrics, list_metrics, register_metric
from vptlens.interventions.open_loop import open_loop_effect
from vptlens.interventions.runner import run_experiment
from vptlens.interventions.spec import ExperimentSpec, SpecError, load_spec, spec_from_dict

__all__ = [
    "EDITS",
    "ExperimentSpec",
    "HeadAblation",
    "KeyFrameMask",
    "LatentClamp",
    "NoEdit",
    "Patch",
    "SpecError",
    "Steering",
    "Target",
    "TimeToEvent",
    "analyse",
    "compute_metrics",
    "counterfactual_frames",
    "counterfactual_replay",
    "edit_from_dict",
    "list_metrics",
    "load_spec",
    "open_loop_effect",
    "register_metric",
    "run_experiment",
    "spec_from_dict",
]
