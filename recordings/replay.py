"""`vptlens replay` and `vptlens summary`: look at an episode with the agent's attention drawn beside it.

Each video frame shows the game frame (full resolution if recorded, else the agent's
128x128 view enlarged); beside it the current frame's attention over its memory as a heat
strip (lags 0..M, "now" on the right), the episode's attention raster (steps x lag) with a
moving cursor, the three most-attended past frames with their lags, and the action taken
(keys, a camera arrow) with the value. `--saliency` overlays the gradient of the taken
action's log-probability with respect to the pixels.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import tyro
from tqdm import tqdm

from vptlens.recordings.store import Episode

logger = logging.getLogger(__name__)

PANEL_W = 360
HEIGHT = 360
KEYS_SHOWN = ("forward", "back", "left", "right", "jump", "sneak", "sprint", "attack", "use", "drop", "inventory")


@dataclass(frozen=True)
class ReplayConfig:
    """Render an episode to an H.264 mp4 with the agent's attention beside the game."""

    episode: tyro.conf.Positional[Path]
    """An episode directory (episode_XXXXXX.zarr) of a recorded run."""
    out: Path = Path("replay.mp4")
    """The video to write."""
    layer: int = -1
    """Which block's attention to draw (-1: the last)."""
    head: str = "mean"
    """An attention head index, or 'mean' over heads."""
    saliency: bool = False
    """Overlay the gradient of the taken action's log-probability with respect to the pixels."""
    model: Path | None = None
    """For --saliency: the agent's .model file (default: the path recorded in the episode)."""
    weights: Path | None = None
    """For --saliency: the agent's .weights file (default: the path recorded in the episode)."""
    fps: int = 20
    """Frames per second of the video (the game runs at 20)."""
    codec: Literal["h264", "mp4v"] = "h264"
    """h264 through PyAV (browser-playable), or OpenCV's mp4v."""
    overwrite: bool = False
    """Replace --out if it exists."""

    def __post_init__(self):
        if self.fps < 1:
            raise ValueError(f"--fps {self.fps}: give at least 1 frame per second")
        if self.head != "mean" and not (self.head.isdigit()):
            raise ValueError(f"--head {self.head!r}: give a head index (0, 1, ...) or 'mean'")


def _viridis() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def attention_of(episode: Episode, layer: int, head: str) -> np.ndarray:
    """(steps, T) attention of each step's frame over its memory, float32, for one head or the mean."""
    pattern = np.asarray(episode.attention(layer)[:], np.float32)  # (steps, heads, T)
    if head == "mean":
        return pattern.mean(1)
    index = int(head)
    if not 0 <= index < pattern.shape[1]:
        raise ValueError(f"head {head} out of range: the policy has {pattern.shape[1]} heads")
    return pattern[:, index]


class FrameComposer:
    """Draws one video frame from an episode's arrays (kept in memory: an episode is small)."""

    def __init__(self, episode: Episode, layer: int, head: str, saliency: np.ndarray | None = None):
        self.episode = episode
        self.attention = attention_of(episode, layer, head)
        self.T = self.attention.shape[1]
        self.frames = np.asarray(episode.frames[:])
        self.full = None if episode.frames_full is None else np.asarray(episode.frames_full[:])
        self.value = np.asarray(episode.value[:])
        self.camera = np.asarray(episode.minerl_action("camera")[:])
        self.keys = {k: np.asarray(episode.minerl_action(k)[:]) for k in KEYS_SHOWN}
        self.saliency = saliency
        self.lut = _viridis()
        raster = self.attention / np.maximum(self.attention.max(1, keepdims=True), 1e-8)
        self.raster = self.lut[(raster * 255).astype(np.uint8)]  # (steps, T, 3)
        self.layer_label = f"layer {episode.layers[layer] if layer < 0 else layer}"
        self.head_label = f"head {head}"

    def game_frame(self, t: int) -> np.ndarray:
        if self.full is not None:
            img = cv2.resize(self.full[t], (HEIGHT * self.full.shape[2] // self.full.shape[1], HEIGHT),
                             interpolation=cv2.INTER_AREA)  # fmt: skip
        else:
            img = cv2.resize(self.frames[t], (HEIGHT, HEIGHT), interpolation=cv2.INTER_NEAREST)
        if self.saliency is not None:
            heat = cv2.resize(self.saliency[t], (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
            color = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
            alpha = (0.6 * heat)[:, :, None]
            img = (img * (1 - alpha) + color * alpha).astype(np.uint8)
        return np.ascontiguousarray(img)

    def compose(self, t: int) -> np.ndarray:
        game = self.game_frame(t)
        panel = np.full((HEIGHT, PANEL_W, 3), 24, np.uint8)
        font, white, grey = cv2.FONT_HERSHEY_SIMPLEX, (235, 235, 235), (150, 150, 150)
        x0, x1 = 10, PANEL_W - 10
        # the current frame's attention over its memory: a heat strip, now on the right
        cv2.putText(
            panel, f"attention, {self.layer_label}, {self.head_label}", (x0, 14), font, 0.4, white, 1, cv2.LINE_AA
        )
        row = self.attention[t] / max(float(self.attention[t].max()), 1e-8)
        strip = self.lut[(row * 255).astype(np.uint8)][None]
        panel[20:44, x0:x1] = cv2.resize(strip, (x1 - x0, 24), interpolation=cv2.INTER_NEAREST)
        cv2.putText(panel, f"-{self.T - 1}", (x0, 56), font, 0.35, grey, 1, cv2.LINE_AA)
        cv2.putText(panel, "now", (x1 - 24, 56), font, 0.35, grey, 1, cv2.LINE_AA)
        # the episode's raster (steps down, lag across) with the cursor at this step
        top, bottom = 64, 224
        raster = cv2.resize(self.raster, (x1 - x0, bottom - top), interpolation=cv2.INTER_NEAREST)
        panel[top:bottom, x0:x1] = raster
        cursor = top + int((t + 0.5) / len(self.frames) * (bottom - top))
        panel[max(top, cursor - 1) : cursor + 1, x0:x1] = (255, 60, 60)
        # the three most-attended past frames
        past = self.attention[t, :-1].copy()
        lags = self.T - 1 - np.arange(self.T - 1)
        past[lags > t] = -1  # before the episode
        order = [int(i) for i in np.argsort(-past)[:3] if past[i] > 0]
        for k, col in enumerate(order):
            lag = int(lags[col])
            thumb = cv2.resize(self.frames[t - lag], (80, 80), interpolation=cv2.INTER_AREA)
            tx = x0 + k * 90
            panel[232:312, tx : tx + 80] = thumb
            cv2.putText(panel, f"-{lag} ({past[col]:.2f})", (tx, 326), font, 0.35, white, 1, cv2.LINE_AA)
        # the action taken, and the value
        pressed = " ".join(k for k in KEYS_SHOWN if self.keys[k][t])
        cv2.putText(panel, pressed or "(no keys)", (x0, 346), font, 0.38, white, 1, cv2.LINE_AA)
        pitch, yaw = self.camera[t]
        cx, cy = x1 - 60, 340
        cv2.circle(panel, (cx, cy), 14, grey, 1)
        cv2.arrowedLine(panel, (cx, cy), (int(cx + yaw * 1.4), int(cy + pitch * 1.4)), (255, 200, 60), 2, tipLength=0.3)
        cv2.putText(panel, f"v {self.value[t]:+.2f}", (x1 - 40, 356), font, 0.35, white, 1, cv2.LINE_AA)
        cv2.putText(panel, f"t {t}", (x0 + 200, 356), font, 0.35, grey, 1, cv2.LINE_AA)
        return np.concatenate([game, panel], axis=1)


class VideoWriter:
    """H.264 (yuv420p, browser-playable) through PyAV; OpenCV's mp4v when PyAV is missing or asked for."""

    def __init__(self, path: Path, fps: int, codec: str = "h264"):
        self.path = Path(path)
        self.fps = fps
        self.container = None
        self.cv_writer = None
        if codec == "h264":
            try:
                import av

                self.container = av.open(str(self.path), mode="w")
                self.stream = self.container.add_stream("libx264", rate=fps)
                self.stream.pix_fmt = "yuv420p"
                self.stream.options = {"crf": "20", "preset": "veryfast"}
            except ImportError:
                logger.warning("PyAV is not installed (pip install 'vpt-lens[video]'): writing mp4v with OpenCV, "
                               "which browsers may not play")  # fmt: skip
        self.size = None

    def write(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        rgb = rgb[: h - h % 2, : w - w % 2]  # H.264 with yuv420p needs even sizes
        if self.size is None:
            self.size = rgb.shape[1], rgb.shape[0]
            if self.container is not None:
                self.stream.width, self.stream.height = self.size
            else:
                self.cv_writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        if self.container is not None:
            import av

            for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                self.container.mux(packet)
        else:
            self.cv_writer.write(rgb[:, :, ::-1])

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
        elif self.cv_writer is not None:
            self.cv_writer.release()


def saliency_maps(episode: Episode, model: Path | None = None, weights: Path | None = None) -> np.ndarray:
    """(steps, h, w) in [0, 1]: |d log pi(a_t) / d pixels of frame t|, smoothed, per-frame normalised.

    The recorded agent is re-run over the recorded frames by the replayer (which checks it against the
    recording); the memory of past frames is kept as replayed (detached), so each map is the exact gradient
    with respect to the current frame. STEVE-1 episodes use their recorded goal and guidance.
    """
    import torch

    from vptlens.agents.distributions import log_prob
    from vptlens.recordings.replayer import EpisodeReplayer

    replayer = EpisodeReplayer(episode, model_path=model, weights_path=weights)
    buttons = torch.from_numpy(np.asarray(episode.action("buttons")[:], np.int64))
    camera = torch.from_numpy(np.asarray(episode.action("camera")[:], np.int64))
    maps = np.zeros((len(episode), *episode.frames.shape[1:3]), np.float32)
    for t, state in tqdm(replayer.states(range(len(episode))), total=len(episode), desc="saliency", unit="frame"):
        frame = replayer.frames(t, t + 1)[0].float().requires_grad_(True)
        with torch.enable_grad():
            out, _ = replayer.step(t, state, frame=frame)
            lp = log_prob(out, buttons[t : t + 1], camera[t : t + 1]).sum()
            (grad,) = torch.autograd.grad(lp, frame)
        g = grad.abs().amax(-1).cpu().numpy()
        g = cv2.GaussianBlur(g, (0, 0), 2.0)
        maps[t] = np.clip(g / max(float(np.percentile(g, 99.5)), 1e-12), 0, 1)
    return maps


def check_view(episode: Episode, layer: int, head: str = "mean") -> None:
    """Refuse a layer the episode did not store or a head the policy does not have (before any work)."""
    pattern = episode.attention(layer)  # KeyError naming the stored layers
    if head != "mean" and int(head) >= pattern.shape[1]:
        raise ValueError(f"--head {head}: the policy has {pattern.shape[1]} heads (0..{pattern.shape[1] - 1})")


def check_out_file(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"--out {path} exists; pass --overwrite to replace it, or another --out")
    if path.is_dir():
        raise IsADirectoryError(f"--out {path} is a directory; give a file name")


def main(cfg: ReplayConfig) -> Path:
    episode = Episode(cfg.episode)
    if len(episode) == 0:
        raise ValueError(f"{cfg.episode} has no committed steps to replay")
    check_view(episode, cfg.layer, cfg.head)
    check_out_file(cfg.out, cfg.overwrite)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    saliency = saliency_maps(episode, cfg.model, cfg.weights) if cfg.saliency else None
    composer = FrameComposer(episode, cfg.layer, cfg.head, saliency)
    writer = VideoWriter(cfg.out, cfg.fps, cfg.codec)
    try:
        for t in tqdm(range(len(episode)), desc="replay", unit="frame"):
            writer.write(composer.compose(t))
    finally:
        writer.close()
    print(f"wrote {cfg.out} ({len(episode)} frames)")
    return cfg.out


@dataclass(frozen=True)
class SummaryConfig:
    """Plot an episode on one page: attention raster, value, entropy, actions."""

    episode: tyro.conf.Positional[Path]
    """An episode directory of a recorded run."""
    out: Path = Path("summary.png")
    """The PNG to write."""
    layer: int = -1
    """Which block's attention to plot (-1: the last)."""
    overwrite: bool = False
    """Replace --out if it exists."""


def summary(cfg: SummaryConfig) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    episode = Episode(cfg.episode)
    if len(episode) == 0:
        raise ValueError(f"{cfg.episode} has no committed steps to plot")
    check_view(episode, cfg.layer)
    check_out_file(cfg.out, cfg.overwrite)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    attention = attention_of(episode, cfg.layer, "mean")
    steps = np.arange(len(episode))
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True, gridspec_kw={"height_ratios": [3, 1, 1, 1.5]})
    T = attention.shape[1]
    axes[0].imshow(attention.T[::-1], aspect="auto", origin="lower", cmap="viridis", extent=(0, len(episode), 0, T),
                   vmax=np.percentile(attention, 99))  # fmt: skip
    axes[0].set_ylabel("frames back (lag)")
    axes[0].set_title(f"{cfg.episode.name}: attention over memory (mean over heads, layer {cfg.layer})")
    axes[1].plot(steps, episode.value[:], color="C0")
    axes[1].set_ylabel("value")
    axes[2].plot(steps, episode.entropy("buttons")[:], label="buttons")
    axes[2].plot(steps, episode.entropy("camera")[:], label="camera")
    axes[2].set_ylabel("entropy (nats)")
    axes[2].legend(loc="upper right", fontsize=8)
    keys = [k for k in KEYS_SHOWN if np.asarray(episode.minerl_action(k)[:]).any()] or ["forward"]
    grid = np.stack([np.asarray(episode.minerl_action(k)[:]) for k in keys])
    axes[3].imshow(grid, aspect="auto", cmap="Greys", interpolation="nearest", extent=(0, len(episode), len(keys), 0))
    axes[3].set_yticks(np.arange(len(keys)) + 0.5, keys, fontsize=8)
    axes[3].set_xlabel("step")
    axes[3].set_title("keys pressed")
    fig.tight_layout()
    fig.savefig(cfg.out, dpi=110)
    plt.close(fig)
    print(f"wrote {cfg.out}")
    return cfg.out
