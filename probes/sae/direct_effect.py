"""What a latent does: its direct effect on the action heads, through the `EpisodeReplayer`.

At each of a latent's top-activating steps t, the change in the policy's log-probabilities at
step t when the latent's decoder contribution z_s(x_t) * W_dec[s] is subtracted from the live
activation x_t at that step only (the memory of earlier steps untouched, the activation
recomputed by the policy, not read from the float16 store). The replayer gives the clean memory
before each such step (`states`, checked against the recorded log-probabilities on the way);
there one batched step from copies of it (`step(t, state, rows=n, fwd_hooks=...)`) runs row j
with latent j's contribution removed, against a clean step of the same batch shape (rows of one
batch do not round alike, so row j's clean reference is row j of an unedited call: an edit of
exactly zero then changes nothing, exactly). STEVE-1 with guidance is replayed step by step,
both streams edited, each by its own z. Reported per latent: the mean over its top examples of
the change of each button class's and camera class's log-probability, and the mean
KL(clean || edited) of each head.
"""

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from vptlens.agents.actions import INVENTORY_CLASS, N_CAMERA_BINS, VPT_BUTTONS, class_to_buttons, dequantize_camera
from vptlens.agents.policy import VPTPolicy
from vptlens.probes.sae.splice import kl_divergence
from vptlens.recordings.replayer import EpisodeReplayer
from vptlens.recordings.store import Episode


@dataclass
class EffectRow:
    """The direct effect of one latent at one step."""

    latent: int
    step: int
    z: float
    """The latent's activation on the live activation at that step (with guidance: the conditional stream's; the
    unconditional stream is edited with its own value)."""
    delta_buttons: np.ndarray
    """(8641,) edited - clean log-probabilities of the button classes."""
    delta_camera: np.ndarray
    """(121,) edited - clean log-probabilities of the camera classes."""
    clean_buttons: np.ndarray
    clean_camera: np.ndarray
    kl_buttons: float
    kl_camera: float


@torch.no_grad()
def direct_effects(
    policy: VPTPolicy,
    episode: Episode,
    sae: torch.nn.Module,
    examples: list[tuple[int, int]],
    batch_size: int = 512,
    replay_tolerance: float | None = 1e-3,
) -> list[EffectRow]:
    """Direct effect of latent s at step t for each (step t, latent s) of `examples`, from one replay of `episode`.

    The episode is replayed by the `EpisodeReplayer` up to each example step; there, one batched step
    from copies of the state gives row j with latent j's decoder contribution removed from the hook's
    activation (that step only), and a clean step of the same batch shape the reference. The replay is
    checked against the recorded log-probabilities of the actions taken (unless `replay_tolerance` is
    None), raising `ReplayMismatch` (a ValueError) when they differ.
    """
    hook_name = sae.cfg.hook_name
    if hook_name not in policy.hook_names:
        raise KeyError(f"the policy has no hook {hook_name!r} (the SAE's hook); `vptlens info` lists them")
    by_step: dict[int, list[int]] = defaultdict(list)
    for t, s in examples:
        if not 0 <= t < len(episode):
            raise ValueError(f"step {t} out of range: {episode.path} has {len(episode)} steps")
        by_step[int(t)].append(int(s))
    replayer = EpisodeReplayer(episode, policy=policy, tolerance=replay_tolerance)
    rows = []
    for t, state in replayer.states(by_step):
        latents = by_step[t]
        for a in range(0, len(latents), batch_size):
            chunk = latents[a : a + batch_size]
            n = len(chunk)
            clean, _ = replayer.step(t, state, rows=n)
            if a == 0:
                replayer.check(clean, t, t + 1)
            remove, z_used = latent_remover(sae, chunk)
            out, _ = replayer.step(t, state, rows=n, fwd_hooks=[(hook_name, remove)])
            kl_b = kl_divergence(clean.buttons_logits, out.buttons_logits)
            kl_c = kl_divergence(clean.camera_logits, out.camera_logits)
            clean_b = clean.buttons_logits[0].double().cpu().numpy()
            clean_c = clean.camera_logits[0].double().cpu().numpy()
            d_b = (out.buttons_logits - clean.buttons_logits).double().cpu().numpy()
            d_c = (out.camera_logits - clean.camera_logits).double().cpu().numpy()
            z = z_used[0]
            for j, s in enumerate(chunk):
                rows.append(
                    EffectRow(s, t, float(z[j]), d_b[j], d_c[j], clean_b, clean_c, float(kl_b[j]), float(kl_c[j]))
                )
    return rows


def latent_remover(sae: torch.nn.Module, latents: list[int]):
    """A hook removing latent j's decoder contribution z_j(x) * W_dec[j] from row j (and from row j of each further
    group of len(latents) rows: a guided step's unconditional stream), and the list it appends the conditional
    rows' z to (one (n,) array per call)."""
    n = len(latents)
    lat = torch.tensor(latents, device=sae.W_dec.device)
    z_used: list[np.ndarray] = []

    def remove(x: Tensor, *, hook) -> Tensor:
        rows_lat = lat if x.shape[0] == n else lat.repeat(x.shape[0] // n)
        z = sae.encode(x.to(sae.W_enc.dtype).reshape(x.shape[0], -1)).gather(1, rows_lat[:, None])[:, 0]
        z_used.append(z[:n].float().cpu().numpy())
        contrib = z[:, None] * sae.W_dec[rows_lat]
        return x - contrib.reshape(x.shape).to(x.dtype)

    return remove, z_used


def button_label(button_class: int) -> str:
    """A joint button class as MineRL keys, e.g. 'forward+attack, camera' ('noop' when nothing is pressed)."""
    pressed, camera_off = class_to_buttons(np.array([button_class]))
    if button_class == INVENTORY_CLASS:
        return "inventory"
    keys = [b for b, on in zip(VPT_BUTTONS, pressed[0]) if on]
    return "+".join(keys or ["noop"]) + ("" if camera_off[0] else ", camera")


def camera_label(camera_class: int) -> str:
    """A camera class as degrees per step (pitch positive looks down)."""
    bins = np.array([camera_class // N_CAMERA_BINS, camera_class % N_CAMERA_BINS])
    pitch, yaw = dequantize_camera(bins)
    return f"pitch {pitch:+.2f}°, yaw {yaw:+.2f}°"


def summarise_effects(rows: list[EffectRow], episodes: list[int], n_classes: int) -> dict:
    """Mean over a latent's examples (rows, with each one's episode position): change of every class's
    log-probability, the extremes labelled, the KLs."""
    d_b = np.mean([r.delta_buttons for r in rows], 0)
    d_c = np.mean([r.delta_camera for r in rows], 0)
    clean_b = np.mean([np.exp(r.clean_buttons) for r in rows], 0)
    clean_c = np.mean([np.exp(r.clean_camera) for r in rows], 0)

    def extremes(delta, clean, label, sign):
        order = np.argsort(-sign * delta, kind="stable")[:n_classes]
        return [
            {
                "class": int(c),
                "label": label(int(c)),
                "mean_delta_logprob": float(delta[c]),
                "mean_clean_prob": float(clean[c]),
            }
            for c in order
        ]

    return {
        "n_examples": len(rows),
        "examples": [
            {"episode": e, "step": r.step, "z": r.z, "kl_buttons": r.kl_buttons, "kl_camera": r.kl_camera}
            for e, r in zip(episodes, rows)
        ],
        "mean_z": float(np.mean([r.z for r in rows])),
        "mean_kl_buttons": float(np.mean([r.kl_buttons for r in rows])),
        "mean_kl_camera": float(np.mean([r.kl_camera for r in rows])),
        "buttons_up": extremes(d_b, clean_b, button_label, 1),
        "buttons_down": extremes(d_b, clean_b, button_label, -1),
        "camera_up": extremes(d_c, clean_c, camera_label, 1),
        "camera_down": extremes(d_c, clean_c, camera_label, -1),
        "mean_delta_buttons": d_b,
        "mean_delta_camera": d_c,
    }


def direct_effects_into(
    results: list[dict],
    episodes: list[Episode],
    sae: torch.nn.Module,
    policy: VPTPolicy,
    cfg,
) -> dict[str, np.ndarray]:
    """Each shown latent's direct effect over its top examples: adds `direct_effect` to each result and returns the
    mean change of every class's log-probability per latent (`buttons_<id>`, `camera_<id>`). `cfg`: a
    DashboardConfig (n_effect_examples, n_effect_classes, batch_size, replay_tolerance)."""
    arrays: dict[str, np.ndarray] = {}
    examples_of: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for lat in results:
        for x in lat["top_examples"][: cfg.n_effect_examples]:
            examples_of[x["episode"]].append((x["step"], lat["id"]))
    rows_by_latent: dict[int, list[tuple[int, EffectRow]]] = defaultdict(list)
    for i in tqdm(sorted(examples_of), desc="direct effect", unit="episode", mininterval=5.0):
        tol = cfg.replay_tolerance
        for row in direct_effects(policy, episodes[i], sae, examples_of[i], cfg.batch_size, tol):
            rows_by_latent[row.latent].append((i, row))
    for lat in results:
        pairs = rows_by_latent.get(lat["id"], [])
        if not pairs:
            lat["direct_effect"] = {"n_examples": 0}
            continue
        summary = summarise_effects([r for _, r in pairs], [i for i, _ in pairs], cfg.n_effect_classes)
        arrays[f"buttons_{lat['id']}"] = summary.pop("mean_delta_buttons").astype(np.float32)
        arrays[f"camera_{lat['id']}"] = summary.pop("mean_delta_camera").astype(np.float32)
        lat["direct_effect"] = summary
    return arrays
