"""MineCLIP (MineDojo), the video-language model STEVE-1 takes its goals from: text, frame and time encoders.

- text: CLIP's causal text transformer over 77 tokens (12 blocks, width 512, 8 heads); the feature is the
  final LayerNorm's output at the end token (the highest id), times `projection`.
- frames: a ViT-B/16 at 160x256 (10x16 patches and a class token; 12 blocks, width 768, 12 heads); the class
  token after `ln_post`, times `projection`. Pixels are divided by 255, then standardised with MineCLIP's
  own mean and std (measured on Minecraft videos, not ImageNet's).
- time (`attn.d2.nh8.glusw`): x-transformers' (v0.27.1) encoder over the frame features: learned positions
  scaled by d^-1/2, 2 pre-norm blocks of attention (8 heads of 64, no biases) and of a SwiGLU feed-forward
  (x4), a final LayerNorm, then the mean over frames.
- the reward head (no part of a goal): a residual MLP adapter on the video feature, then CLIP's cosine
  similarity with the text feature times exp(logit_scale).

Module names are MineCLIP's, duplicates included: the released `attn.pth` holds the one CLIP under
`clip_model`, `image_encoder` (its vision half) and `reward_head.clip_model`, so it loads strictly.
"""

import dataclasses
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int64, UInt8
from torch import Tensor, nn

from vptlens.agents.loading import load_torch_file, sha256_file, state_dict_mismatch

logger = logging.getLogger(__name__)

IMAGE_MEAN = (0.3331, 0.3245, 0.3051)
IMAGE_STD = (0.2439, 0.2493, 0.2873)
"""MineCLIP's pixel statistics (from 2.8M frames of its YouTube clips), applied after dividing by 255."""
CHECKPOINT_PREFIX = "model."
"""MineCLIP's training wrapper held the model as `model`: its checkpoint's keys start with this."""


@dataclass(frozen=True)
class MineCLIPConfig:
    """MineCLIP's sizes; the defaults are the released `attn.pth` (STEVE-1's `MINECLIP_CONFIG`)."""

    embed_dim: int = 512
    """Width of the text, frame and video features (a STEVE-1 goal is one of these)."""
    image_size: tuple[int, int] = (160, 256)
    """Frame (height, width) the ViT's position table is laid out for."""
    patch_size: int = 16
    """ViT patch side."""
    vision_width: int = 768
    """ViT residual width; its heads are width / 64."""
    vision_layers: int = 12
    """ViT blocks."""
    text_width: int = 512
    """Text transformer residual width."""
    text_layers: int = 12
    """Text transformer blocks."""
    text_heads: int = 8
    """Text transformer heads."""
    context_length: int = 77
    """Tokens the text transformer reads."""
    vocab_size: int = 49408
    """CLIP's BPE vocabulary."""
    temporal_layers: int = 2
    """Blocks of the temporal transformer (`d2` in the pool type)."""
    temporal_heads: int = 8
    """Its heads (`nh8`)."""
    temporal_head_dim: int = 64
    """Its head width (x-transformers' default)."""
    max_frames: int = 32
    """Rows of its learned position table (MineCLIP's VIDEO_SEQ_LEN)."""
    video_adapter_layers: int = 2
    """Linear layers of the reward head's video adapter (`v0-2` of `mlp_adapter_spec`)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            values = getattr(self, f.name)
            for v in values if isinstance(values, tuple) else (values,):
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ValueError(f"MineCLIPConfig.{f.name}={values!r}: sizes are positive integers")
        if self.vision_width % 64 or self.text_width % self.text_heads:
            raise ValueError("vision_width must be a multiple of 64 and text_width of text_heads")
        if any(s % self.patch_size for s in self.image_size):
            raise ValueError(f"image_size {self.image_size} is not a whole number of {self.patch_size}-pixel patches")

    @property
    def vision_heads(self) -> int:
        return self.vision_width // 64

    @property
    def n_patches(self) -> int:
        return (self.image_size[0] // self.patch_size) * (self.image_size[1] // self.patch_size)


# ----------------------------------------------------------------------------- CLIP


class QuickGELU(nn.Module):
    """OpenAI CLIP's GELU approximation x * sigmoid(1.702 x), which its weights were trained with."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """`x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`; the mask, when given, is added to the attention logits."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        mlp = [("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * width, width))]
        self.mlp = nn.Sequential(OrderedDict(mlp))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x_btd: Tensor, mask_tT: Tensor | None = None) -> Tensor:
        h = self.ln_1(x_btd)
        x_btd = x_btd + self.attn(h, h, h, need_weights=False, attn_mask=mask_tT)[0]
        return x_btd + self.mlp(self.ln_2(x_btd))


class VisionTransformer(nn.Module):
    """ViT over one frame: patches and a class token -> the class token's feature."""

    def __init__(self, cfg: MineCLIPConfig):
        super().__init__()
        width, scale = cfg.vision_width, cfg.vision_width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.cls_token = nn.Parameter(scale * torch.randn(width))
        self.pos_embed = nn.Parameter(scale * torch.randn(cfg.n_patches + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.Sequential(
            *(ResidualAttentionBlock(width, cfg.vision_heads) for _ in range(cfg.vision_layers))
        )
        self.ln_post = nn.LayerNorm(width)
        self.projection = nn.Parameter(scale * torch.randn(width, cfg.embed_dim))

    def forward(self, x_Bchw: Tensor) -> Tensor:
        x = self.conv1(x_Bchw).flatten(2).transpose(1, 2)  # (B, patches, width), rows first
        x = torch.cat([self.cls_token.expand(x.shape[0], 1, -1), x], dim=1) + self.pos_embed
        x = self.blocks(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.projection


class TextTransformer(nn.Module):
    """CLIP's text transformer (MineCLIP calls it GPT): causal over the tokens, read out at the end token."""

    def __init__(self, cfg: MineCLIPConfig):
        super().__init__()
        width = cfg.text_width
        self.token_embedding = nn.Embedding(cfg.vocab_size, width)
        self.pos_embed = nn.Parameter(0.01 * torch.randn(cfg.context_length, width))
        self.blocks = nn.ModuleList(ResidualAttentionBlock(width, cfg.text_heads) for _ in range(cfg.text_layers))
        self.ln_final = nn.LayerNorm(width)
        self.projection = nn.Parameter(width**-0.5 * torch.randn(width, cfg.embed_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, tokens_bL: Tensor) -> Tensor:
        x = self.token_embedding(tokens_bL) + self.pos_embed
        n = tokens_bL.shape[1]
        causal = torch.full((n, n), -math.inf, device=x.device, dtype=x.dtype).triu(1)
        for block in self.blocks:
            x = block(x, causal)
        x = self.ln_final(x)
        eot = tokens_bL.argmax(dim=-1)  # the end token has the highest id; MineCLIP pads with 0
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.projection


class CLIP(nn.Module):
    def __init__(self, cfg: MineCLIPConfig):
        super().__init__()
        self.vision_model = VisionTransformer(cfg)
        self.text_model = TextTransformer(cfg)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))


# ----------------------------------------------------------------------------- time


class TemporalAttention(nn.Module):
    """x-transformers' `Attention` as MineCLIP configures it: no biases, logits scaled by head_dim^-1/2."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.scale = heads, head_dim**-0.5
        self.to_q = nn.Linear(dim, heads * head_dim, bias=False)
        self.to_k = nn.Linear(dim, heads * head_dim, bias=False)
        self.to_v = nn.Linear(dim, heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, dim, bias=False)

    def forward(self, x_btd: Tensor) -> Tensor:
        b, t, _ = x_btd.shape
        q, k, v = (
            layer(x_btd).view(b, t, self.heads, -1).transpose(1, 2) for layer in (self.to_q, self.to_k, self.to_v)
        )
        pattern_bntT = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        return self.to_out((pattern_bntT @ v).transpose(1, 2).reshape(b, t, -1))


class SwiGLU(nn.Module):
    """`a * silu(gate)` where `[a, gate] = proj(x)` (x-transformers' `GLU` with a swish gate)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * hidden)

    def forward(self, x: Tensor) -> Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.silu(gate)


class FeedForward(nn.Module):
    """x-transformers' `FeedForward` with `glu=True, swish=True`: SwiGLU to 4 d, then back to d."""

    def __init__(self, dim: int):
        super().__init__()
        # x-transformers' net is [GLU, Identity, Dropout, Linear]: its weights sit at indices 0 and 3
        self.net = nn.Sequential(OrderedDict([("0", SwiGLU(dim, 4 * dim)), ("3", nn.Linear(4 * dim, dim))]))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PreNormResidual(nn.Module):
    """`x + branch(norm(x))`, its parts under x-transformers' names: `0.0` the norm, `1` the branch."""

    def __init__(self, dim: int, branch: nn.Module):
        super().__init__()
        self.add_module("0", nn.ModuleList([nn.LayerNorm(dim)]))
        self.add_module("1", branch)

    def forward(self, x: Tensor) -> Tensor:
        norms, branch = self._modules["0"], self._modules["1"]
        return x + branch(norms[0](x))


class AttentionLayers(nn.Module):
    def __init__(self, cfg: MineCLIPConfig):
        super().__init__()
        d = cfg.embed_dim
        self.layers = nn.ModuleList()
        for _ in range(cfg.temporal_layers):
            self.layers.append(PreNormResidual(d, TemporalAttention(d, cfg.temporal_heads, cfg.temporal_head_dim)))
            self.layers.append(PreNormResidual(d, FeedForward(d)))


class PositionEmbedding(nn.Module):
    def __init__(self, max_frames: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(max_frames, dim)


class ContinuousTransformer(nn.Module):
    """x-transformers' `ContinuousTransformerWrapper` without input or output projections."""

    def __init__(self, cfg: MineCLIPConfig):
        super().__init__()
        self.pos_emb = PositionEmbedding(cfg.max_frames, cfg.embed_dim)
        self.attn_layers = AttentionLayers(cfg)
        self.norm = nn.LayerNorm(cfg.embed_dim)

    def forward(self, x_btd: Tensor) -> Tensor:
        x = x_btd + self.pos_emb.emb.weight[: x_btd.shape[1]] * x_btd.shape[-1] ** -0.5
        for layer in self.attn_layers.layers:
            x = layer(x)
        return self.norm(x)


class TemporalTransformer(nn.Module):
    def __init__(self, cfg: MineCLIPConfig):
        super().__init__()
        self.model = ContinuousTransformer(cfg)


class TemporalPooling(nn.Module):
    """Frame features (b, t, d) -> the video feature (b, d): the temporal transformer, then the mean over t."""

    def __init__(self, cfg: MineCLIPConfig):
        super().__init__()
        self.attn = TemporalTransformer(cfg)

    def forward(self, x_btd: Tensor) -> Tensor:
        return self.attn.model(x_btd).mean(dim=1)


# ----------------------------------------------------------------------------- reward head


def _adapter(dim: int, n_layers: int) -> nn.Sequential:
    # MineCLIP's build_mlp: [Linear, Identity, ReLU] * (n - 1) + [Linear]: the weights at indices 0, 3, 6, ...
    parts: list[tuple[str, nn.Module]] = []
    for i in range(n_layers):
        parts.append((str(3 * i), nn.Linear(dim, dim)))
        if i < n_layers - 1:
            parts.append((str(3 * i + 2), nn.ReLU()))
    return nn.Sequential(OrderedDict(parts))


class ScoreHead(nn.Module):
    """MineCLIP's `CLIPScoreHead` as released (a video adapter, no text adapter)."""

    def __init__(self, clip: CLIP, cfg: MineCLIPConfig):
        super().__init__()
        self.clip_model = clip
        self.video_adapter = _adapter(cfg.embed_dim, cfg.video_adapter_layers)
        self.video_residual_weight = nn.Parameter(torch.tensor(4.0))

    def forward(self, video_bd: Tensor, text_cd: Tensor) -> Tensor:
        res = torch.sigmoid(self.video_residual_weight)
        video = res * video_bd + (1.0 - res) * self.video_adapter(video_bd)
        video = video / video.norm(dim=1, keepdim=True)
        text = text_cd / text_cd.norm(dim=1, keepdim=True)
        return self.clip_model.logit_scale.exp() * video @ text.t()


# ----------------------------------------------------------------------------- the model


class MineCLIP(nn.Module):
    """MineCLIP with the released checkpoint's module names.

    >>> text_bd = mineclip.encode_text(tokenize(["chop a tree"]))       # (1, 512)
    >>> video_bd = mineclip.encode_video(frames_bthwc_uint8)             # 16 frames of 160x256 -> (B, 512)
    >>> logits_bc = mineclip.score(video_bd, text_bd)                    # MineCLIP's video-text reward logits
    """

    def __init__(self, cfg: MineCLIPConfig = MineCLIPConfig()):
        super().__init__()
        self.cfg = cfg
        self.clip_model = CLIP(cfg)
        self.image_encoder = self.clip_model.vision_model
        self.temporal_encoder = TemporalPooling(cfg)
        self.reward_head = ScoreHead(self.clip_model, cfg)
        mean, std = torch.tensor(IMAGE_MEAN), torch.tensor(IMAGE_STD)
        self.register_buffer("pixel_mean", mean[:, None, None], persistent=False)
        self.register_buffer("pixel_std", std[:, None, None], persistent=False)

    @property
    def device(self) -> torch.device:
        return self.clip_model.logit_scale.device

    def encode_text(self, tokens: Int64[Tensor, "b L"]) -> Float[Tensor, "b d"]:
        """Token ids (from `mineclip_tokenizer.tokenize`) -> text features."""
        if tokens.shape[1] != self.cfg.context_length:
            raise ValueError(
                f"tokens must be (B, {self.cfg.context_length}), got {tuple(tokens.shape)}: use tokenize()"
            )
        return self.clip_model.text_model(tokens.to(self.device))

    def encode_frames(self, frames: UInt8[Tensor, "b t h w c"] | Float[Tensor, "b t h w c"]) -> Float[Tensor, "b t d"]:
        """RGB frames at 160x256 (uint8, or float 0..255) -> one feature per frame."""
        h, w = self.cfg.image_size
        if tuple(frames.shape[2:]) != (h, w, 3):
            raise ValueError(
                f"frames must be (B, T, {h}, {w}, 3) RGB, got {tuple(frames.shape)}; resize game frames with "
                f"vptlens.agents.preprocess_frames(frames, size=({h}, {w})) as STEVE-1 does (OpenCV INTER_LINEAR)"
            )
        b, t = frames.shape[:2]
        x = frames.to(self.device).flatten(0, 1).permute(0, 3, 1, 2).float()
        x = (x / 255.0 - self.pixel_mean) / self.pixel_std
        return self.clip_model.vision_model(x.to(self.clip_model.logit_scale.dtype)).view(b, t, -1)

    def encode_video(self, frames: UInt8[Tensor, "b t h w c"] | Float[Tensor, "b t h w c"]) -> Float[Tensor, "b d"]:
        """RGB frames at 160x256 -> the video feature (STEVE-1's visual goal, with t = 16 frames)."""
        if not 1 <= frames.shape[1] <= self.cfg.max_frames:
            raise ValueError(f"a video is 1..{self.cfg.max_frames} frames for MineCLIP, got {frames.shape[1]}")
        return self.temporal_encoder(self.encode_frames(frames))

    def score(self, video: Float[Tensor, "b d"], text: Float[Tensor, "c d"]) -> Float[Tensor, "b c"]:
        """MineCLIP's reward logits of each video against each text (`forward_reward_head`, logits per video)."""
        return self.reward_head(video, text)


# ----------------------------------------------------------------------------- loading


def read_mineclip_state(path: str | Path) -> dict[str, Tensor]:
    """The MineCLIP weights in a checkpoint, read with `weights_only=True`, wrapper prefix removed.

    The released `attn.pth` is a training checkpoint: `{"state_dict": {"model.<name>": tensor, ...}, ...}`.
    As MineCLIP's `load_ckpt` does, only the `model.` keys are the model's; the rest belong to the trainer.
    A bare state dict (no `state_dict` level, no prefix) is accepted too.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. Pass MineCLIP's attn.pth (`vptlens download mineclip-attn`).")
    obj = load_torch_file(path, "a MineCLIP checkpoint")
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path}: expected a state dict (or {{'state_dict': ...}}), got {type(state).__name__}")
    if any(isinstance(k, str) and k.startswith(CHECKPOINT_PREFIX) for k in state):
        state = {k[len(CHECKPOINT_PREFIX) :]: v for k, v in state.items() if k.startswith(CHECKPOINT_PREFIX)}
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{path}: entries {bad[:5]} are not tensors; this is not a MineCLIP state dict")
    return state


def check_state_dict(model: nn.Module, state: dict[str, Tensor], source: str, what: str) -> None:
    """Raise a KeyError naming every missing, unexpected and mis-shaped key."""
    problems = state_dict_mismatch(model, state)
    if problems:
        raise KeyError("\n".join([f"{source}: not {what} of the expected architecture.", *problems]))


def load_mineclip(
    path: str | Path,
    cfg: MineCLIPConfig = MineCLIPConfig(),
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> MineCLIP:
    """MineCLIP from its checkpoint, loaded strictly; in eval mode, with `provenance` (path, sha256, config)."""
    state = read_mineclip_state(path)
    model = MineCLIP(cfg)
    check_state_dict(model, state, str(path), "a MineCLIP checkpoint (attn.pth)")
    model.load_state_dict(state, strict=True)
    model.provenance = {
        "path": str(Path(path).resolve()),
        "sha256": sha256_file(path),
        "config": dataclasses.asdict(cfg),
    }
    logger.info("loaded MineCLIP from %s", path)
    return model.to(device=device, dtype=dtype).eval()
