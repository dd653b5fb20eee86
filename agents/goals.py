"""STEVE-1's goals: a text prompt or a video clip -> the 512-d MineCLIP embedding the policy is conditioned on.

- prompt: CLIP's tokenizer -> MineCLIP's text encoder -> STEVE-1's prior, with one latent drawn from a seed
  (STEVE-1's `get_prior_embed`). The same prompt and seed give the same goal.
- video: 16 consecutive frames of a 20 fps Minecraft clip (0.8 s of play; by default the last 16), RGB,
  resized to 160x256 with OpenCV's INTER_LINEAR -> MineCLIP's frame and temporal encoders. STEVE-1 embeds
  exactly this: 16 game frames at the game's 20 ticks a second (`QueueFrameBuffer`, `process_frame_mineclip`).
  A clip at another rate would show the same play faster or slower than MineCLIP saw it, so it is refused.
- embedding: a `.npy` file holding a goal computed elsewhere.

Each gives a `Goal`, the embedding with its provenance (source, prompt or clip, seed, files and their
sha256), for the recorder to store with every episode.
"""

import collections
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, UInt8

from vptlens.agents.agent import preprocess_frames
from vptlens.agents.loading import sha256_file
from vptlens.agents.mineclip import MineCLIP, MineCLIPConfig, load_mineclip
from vptlens.agents.mineclip_tokenizer import tokenize
from vptlens.agents.prior import Steve1Prior, load_prior
from vptlens.agents.zoo import get_zoo_entry

N_GOAL_FRAMES = 16
"""Frames STEVE-1 embeds into one visual goal."""
GOAL_FRAME_SIZE = (160, 256)
"""(height, width) STEVE-1 resizes game frames to for MineCLIP (`process_frame_mineclip`)."""
GOAL_FPS = 20.0
"""Minecraft's tick rate, at which MineRL renders and STEVE-1's goal clips were taken."""
FPS_TOLERANCE = 0.01
"""Relative deviation from GOAL_FPS a clip's declared rate may have (containers round it)."""
TEXT_COND_SCALE, VISUAL_COND_SCALE = 6.0, 7.0
"""Guidance scales STEVE-1's `run_agent.py` uses for text and for visual goals."""


@dataclass(frozen=True)
class Goal:
    """A STEVE-1 goal embedding and where it came from."""

    embedding: Float[np.ndarray, " d"]
    """The goal, float32."""
    provenance: dict = field(default_factory=dict)
    """JSON-able: `source` ('prompt', 'video' or 'embedding') and what produced it."""


def _files(model: torch.nn.Module) -> dict | None:
    """Path and sha256 of the file a model was loaded from (None for one built in memory)."""
    prov = getattr(model, "provenance", None)
    return None if prov is None else {"path": prov["path"], "sha256": prov["sha256"]}


@torch.no_grad()
def goal_from_prompt(
    prompt: str, mineclip: MineCLIP, prior: Steve1Prior, seed: int = 0, deterministic: bool = False
) -> Goal:
    """A text prompt -> STEVE-1's visual goal, the prior's latent drawn with `seed` (or zero if deterministic).

    Equal to STEVE-1's `get_prior_embed(prompt, ...)` after `torch.manual_seed(seed)` on the same device. An
    empty prompt, or one over MineCLIP's 75 tokens, is refused with a ValueError.
    """
    if prior.cfg.input_dim != mineclip.cfg.embed_dim:
        raise ValueError(
            f"the prior reads {prior.cfg.input_dim}-d text embeddings but MineCLIP gives {mineclip.cfg.embed_dim}-d"
        )
    text = mineclip.encode_text(tokenize([prompt]))
    generator = torch.Generator(device=text.device).manual_seed(seed)
    goal = prior.sample(text.to(next(prior.parameters()).dtype), generator, deterministic=deterministic)
    return Goal(
        goal[0].float().cpu().numpy(),
        {
            "source": "prompt",
            "prompt": prompt,
            "seed": seed,
            "deterministic": deterministic,
            "mineclip": _files(mineclip),
            "prior": _files(prior),
        },
    )


def read_goal_frames(path: str | Path, end_frame: int | None = None) -> tuple[UInt8[np.ndarray, "t h w c"], dict]:
    """The 16 frames (RGB, 160x256) of a 20 fps clip that end at `end_frame` (default: the last), and a
    description of them (fps, frame range). PyAV reads the clip; only the last 16 frames are kept in memory."""
    try:
        import av
    except ImportError as e:
        raise ModuleNotFoundError("reading a goal video needs PyAV: pip install 'vpt-lens[video]'") from e
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    if end_frame is not None and end_frame < N_GOAL_FRAMES - 1:
        raise ValueError(
            f"end_frame={end_frame}: a goal is the {N_GOAL_FRAMES} frames ending there: give {N_GOAL_FRAMES - 1}+"
        )
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise ValueError(f"{path}: not a readable video ({e})") from e
    with container:
        if not container.streams.video:
            raise ValueError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        fps = _check_fps(path, stream.average_rate or stream.guessed_rate)
        window: collections.deque = collections.deque(maxlen=N_GOAL_FRAMES)
        n_read = 0
        for frame in container.decode(stream):
            window.append(frame.to_ndarray(format="rgb24"))
            n_read += 1
            if n_read - 1 == end_frame:
                break
    if n_read < N_GOAL_FRAMES:
        raise ValueError(
            f"{path}: {n_read} frames; a STEVE-1 goal is {N_GOAL_FRAMES} frames ({N_GOAL_FRAMES / GOAL_FPS:.1f} s at "
            f"{GOAL_FPS:g} fps)"
        )
    if end_frame is not None and n_read - 1 < end_frame:
        raise ValueError(f"{path}: end_frame={end_frame} is past the clip's last frame ({n_read - 1})")
    frames = preprocess_frames(np.stack(window), size=GOAL_FRAME_SIZE)
    return frames, {"fps": fps, "frames": [n_read - N_GOAL_FRAMES, n_read - 1]}


def _check_fps(path: Path, rate: Fraction | None) -> float:
    if not rate:
        raise ValueError(f"{path}: the video declares no frame rate; STEVE-1 goals are clips at {GOAL_FPS:g} fps")
    fps = float(rate)
    if abs(fps - GOAL_FPS) > FPS_TOLERANCE * GOAL_FPS:
        raise ValueError(
            f"{path}: {fps:g} fps, but MineCLIP embeds {N_GOAL_FRAMES} consecutive frames of play at Minecraft's "
            f"{GOAL_FPS:g} fps: at {fps:g} fps they would cover {N_GOAL_FRAMES / fps:.2f} s instead of "
            f"{N_GOAL_FRAMES / GOAL_FPS:.2f} s. Record the clip at {GOAL_FPS:g} fps (MineRL does), or resample it, "
            f"e.g. `ffmpeg -i clip.mp4 -r {GOAL_FPS:g} clip_{GOAL_FPS:g}fps.mp4`."
        )
    return fps


def goal_from_video(path: str | Path, mineclip: MineCLIP, end_frame: int | None = None) -> Goal:
    """A 20 fps clip -> MineCLIP's embedding of its 16 frames ending at `end_frame` (default: the last)."""
    return _video_goal(path, *read_goal_frames(path, end_frame), mineclip)


@torch.no_grad()
def _video_goal(path: str | Path, frames: np.ndarray, info: dict, mineclip: MineCLIP) -> Goal:
    video = mineclip.encode_video(torch.from_numpy(frames)[None])
    provenance = {"source": "video", "video": str(Path(path).resolve()), "video_sha256": sha256_file(path)}
    return Goal(video[0].float().cpu().numpy(), {**provenance, **info, "mineclip": _files(mineclip)})


def load_goal_embedding(path: str | Path) -> Goal:
    """A goal embedding saved as `.npy` (read without pickle), flattened to float32."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .npy goal embedding")
    embedding = np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
    if not np.isfinite(embedding).all():
        raise ValueError(f"{path}: the goal embedding has NaN or infinite values")
    return Goal(embedding, {"source": "embedding", "path": str(path.resolve()), "sha256": sha256_file(path)})


def make_goal(
    *,
    prompt: str | None = None,
    video: Path | None = None,
    embedding: Path | None = None,
    checkpoint_dir: Path = Path("checkpoints"),
    mineclip_path: Path | None = None,
    prior_path: Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    mineclip_cfg: MineCLIPConfig | None = None,
) -> Goal:
    """The goal of exactly one of `prompt`, `video` or `embedding`, loading MineCLIP (and for a prompt the prior)
    from the given paths or, by default, from the zoo's file names in `checkpoint_dir`. `mineclip_cfg` (default: the
    released MineCLIP's sizes) is for a checkpoint of another size."""
    given = [name for name, v in (("prompt", prompt), ("video", video), ("embedding", embedding)) if v is not None]
    if len(given) != 1:
        raise ValueError(
            f"give one STEVE-1 goal: a prompt, a goal video or a goal embedding (.npy); got {given or 'none'}"
        )
    if embedding is not None:
        return load_goal_embedding(embedding)
    # the user's input is checked before the models (hundreds of MB) are read
    clip = read_goal_frames(video) if video is not None else tokenize([prompt])
    mineclip = load_mineclip(
        _zoo_path(mineclip_path, checkpoint_dir, "mineclip-attn"), mineclip_cfg or MineCLIPConfig(), device=device
    )
    if video is not None:
        return _video_goal(video, *clip, mineclip)
    prior = load_prior(_zoo_path(prior_path, checkpoint_dir, "steve1-prior"), device=device)
    return goal_from_prompt(prompt, mineclip, prior, seed=seed)


def _zoo_path(path: Path | None, checkpoint_dir: Path, zoo_name: str) -> Path:
    if path is not None:
        return Path(path)
    default = Path(checkpoint_dir) / get_zoo_entry(zoo_name).weights_file
    if not default.is_file():
        raise FileNotFoundError(
            f"{default}: not found. A STEVE-1 prompt or goal video needs the {zoo_name} checkpoint: "
            f"`vptlens download {zoo_name} --dir {checkpoint_dir}`, or give its path."
        )
    return default


def describe_goal_pathway(goal_dim: int) -> list[str]:
    """How a STEVE-1 policy's goal is made, for `vptlens info`."""
    return [
        f"  goal       MineCLIP {goal_dim} -> d (net.mineclip_embed_linear), added to every frame's image embedding",
        "    prompt   CLIP BPE (<= 75 tokens) -> MineCLIP text encoder -> STEVE-1 prior (CVAE, latent from a seed)",
        f"    video    last {N_GOAL_FRAMES} frames at {GOAL_FPS:g} fps, 160x256 -> MineCLIP ViT-B/16 per frame "
        "-> temporal transformer",
        f"    guidance (1 + s) * cond - s * uncond on the logits (zero goal, own memory); STEVE-1 uses s = "
        f"{TEXT_COND_SCALE:g} for text, {VISUAL_COND_SCALE:g} for video",
        "    files    mineclip-attn (attn.pth), steve1-prior (steve1_prior.pt): `vptlens download NAME`",
    ]
