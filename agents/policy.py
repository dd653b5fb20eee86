"""VPT's MinecraftAgentPolicy (and STEVE-1's goal-conditioned variant), written for reading and hooking.

The network, per frame: pixels / 255 -> ImpalaCNN (3 stacks, GroupNorm(1)) -> dense 256 ->
linear to d (`img.hook_out`); STEVE-1 adds a linear map of the 512-d MineCLIP goal. Then
L residual blocks over time, each

    h   = LN(x)                          # OpenAI's code continues the stream from LN(x),
    mid = h + attn(h, memory)            # not from x: the block's input is not added back
    out = mid + mlp1(relu(mlp0(LN(mid))))

then relu, lastlayer, final_ln (`hook_latent`), and three heads: 8641 joint button
classes and 121 camera classes (log-softmax of logits / temperature) and a value.

Attention: logits scaled by 1/head_dim (muP), plus a learned bias of the lag (10 basis
functions `b_nd` weighted per head by `r_layer` of the query), softmax in float32. Each
frame attends to M = attention_memory_size - timesteps frames, itself included, all in
the same episode (the `first` flag starts a new one). Keys and values of the last M
frames are the recurrent state, explicit in `PolicyState`.

Module and parameter names follow OpenAI's code, so released state dicts load strictly.
Longer than ~500 lines on purpose: the whole network in one file, as OpenAI's and nanoGPT's are,
so it can be read against the reference top to bottom.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, UInt8
from torch import Tensor, nn

from vptlens.agents.config import PolicyConfig
from vptlens.agents.hooks import HookedMixin, HookPoint, concat_cache

N_BUTTON_CLASSES = 8641
N_CAMERA_CLASSES = 121
N_REL_BASIS = 10


# ----------------------------------------------------------------------------- state


@dataclass
class PolicyState:
    """The recurrent state: keys and values of the last M frames per block, and which are usable.

    `keys[l]`, `values[l]` are (B, M, d), oldest first; `valid` (B, M) says which memory
    slots belong to the current episode (False before the episode's first frame).
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    valid: Tensor

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    def select(self, rows: Tensor | slice | list[int]) -> "PolicyState":
        """The state of some batch rows (e.g. to drop finished environments)."""
        return PolicyState(tuple(k[rows] for k in self.keys), tuple(v[rows] for v in self.values), self.valid[rows])

    @staticmethod
    def cat(states: "list[PolicyState]") -> "PolicyState":
        """Stack the rows of several states (e.g. to add environments)."""
        n_layers = len(states[0].keys)
        return PolicyState(
            tuple(torch.cat([s.keys[i] for s in states]) for i in range(n_layers)),
            tuple(torch.cat([s.values[i] for s in states]) for i in range(n_layers)),
            torch.cat([s.valid for s in states]),
        )

    def detach(self) -> "PolicyState":
        return PolicyState(tuple(k.detach() for k in self.keys), tuple(v.detach() for v in self.values), self.valid)


@dataclass
class PolicyOutput:
    """What the policy computes for each row (and step, in sequence mode).

    Logits are log-probabilities (log-softmax of logits / temperature), as in OpenAI's `pd`.
    For a guided STEVE-1 step, the logits are the classifier-free-guidance ones and
    `value` is the conditional stream's.
    """

    buttons_logits: Tensor
    camera_logits: Tensor
    value: Tensor


# ----------------------------------------------------------------------------- layers


class NormedLayer(nn.Module):
    """OpenAI's FanInInitReLULayer at inference: optional norm, the layer, optional ReLU."""

    def __init__(self, layer: nn.Module, norm: nn.Module | None = None, relu: bool = True):
        super().__init__()
        self.norm = norm
        self.layer = layer
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        if self.norm is not None:
            x = self.norm(x)
        x = self.layer(x)
        return F.relu(x) if self.relu else x


def _conv(c_in: int, c_out: int, norm: bool) -> NormedLayer:
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not norm)
    return NormedLayer(conv, nn.GroupNorm(1, c_in) if norm else None)


def _dense(d_in: int, d_out: int, relu: bool = True) -> NormedLayer:
    return NormedLayer(nn.Linear(d_in, d_out, bias=False), nn.LayerNorm(d_in), relu=relu)


class CnnBlock(nn.Module):
    def __init__(self, chans: int):
        super().__init__()
        self.conv0 = _conv(chans, chans, norm=True)
        self.conv1 = _conv(chans, chans, norm=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv1(self.conv0(x))


class CnnStack(nn.Module):
    """Conv, 3x3 max-pool with stride 2, GroupNorm(1), two residual conv blocks."""

    def __init__(self, c_in: int, c_out: int, first_norm: bool):
        super().__init__()
        self.firstconv = _conv(c_in, c_out, norm=first_norm)
        self.n = nn.GroupNorm(1, c_out)
        self.blocks = nn.ModuleList([CnnBlock(c_out), CnnBlock(c_out)])

    def forward(self, x: Tensor) -> Tensor:
        x = self.n(F.max_pool2d(self.firstconv(x), kernel_size=3, stride=2, padding=1))
        for block in self.blocks:
            x = block(x)
        return x


class ImpalaCNN(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        h, w, c = cfg.img_shape
        self.stacks = nn.ModuleList()
        for i, chans in enumerate(cfg.cnn_chans):
            self.stacks.append(CnnStack(c, chans, first_norm=i > 0))
            c, h, w = chans, (h + 1) // 2, (w + 1) // 2
        self.dense = _dense(c * h * w, cfg.cnn_outsize)

    def forward(self, img_Bchw: Tensor) -> Tensor:
        x = img_Bchw
        for stack in self.stacks:
            x = stack(x)
        return self.dense(x.flatten(1))


class ImgProcess(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cnn = ImpalaCNN(cfg)
        self.linear = _dense(cfg.cnn_outsize, cfg.hidsize)
        self.frames_per_pass: int | None = None
        """Run the CNN on this many frames at a time (None: all at once). Training sets it: on the 2-core dev VM a
        BC update of the organism (16 x 32 frames) took 5.5 s with the CNN at once and 4.0 s in passes of 32-64
        frames, whose activations stay nearer the cache (benchmarks/bc_update.py). Inference leaves it None."""

    def forward(self, frames_bthwc: Tensor) -> Tensor:
        b, t = frames_bthwc.shape[:2]
        flat = frames_bthwc.flatten(0, 1)
        n = self.frames_per_pass
        if n is None or flat.shape[0] <= n:
            return self._embed(flat).view(b, t, -1)
        return torch.cat([self._embed(flat[i : i + n]) for i in range(0, flat.shape[0], n)]).view(b, t, -1)

    def _embed(self, frames_nhwc: Tensor) -> Tensor:
        x = frames_nhwc.permute(0, 3, 1, 2).to(self.linear.layer.weight.dtype) / 255.0
        return self.linear(self.cnn(x))


# ----------------------------------------------------------------------------- attention


def lag_index(t: int, M: int, device: torch.device) -> Tensor:
    """idx[r, j]: the key position that query r sees at lag column j (lag M - j), keys = [memory M, chunk t]."""
    return torch.arange(t, device=device)[:, None] + torch.arange(M + 1, device=device)[None, :]


def keys_to_lags(x_bntK: Tensor, M: int) -> Tensor:
    """(.., t, M + t) over key positions -> (.., t, M + 1) over lags; column M - k is k frames back."""
    t = x_bntK.shape[-2]
    if t == 1:
        return x_bntK
    idx = lag_index(t, M, x_bntK.device).expand(*x_bntK.shape[:-1], M + 1)
    return x_bntK.gather(-1, idx)


def lags_to_keys(x_bntL: Tensor, M: int, fill: float) -> Tensor:
    """Inverse of `keys_to_lags`; key positions no lag column reaches get `fill`."""
    t = x_bntL.shape[-2]
    if t == 1:
        return x_bntL
    out = x_bntL.new_full((*x_bntL.shape[:-1], M + t), fill)
    return out.scatter(-1, lag_index(t, M, x_bntL.device).expand_as(x_bntL), x_bntL)


class RelativeAttention(nn.Module):
    """Multi-head attention over the memory and the current chunk, with a learned lag bias."""

    def __init__(self, cfg: PolicyConfig, name: str, make_hook):
        super().__init__()
        d, self.n_heads, self.M = cfg.hidsize, cfg.attention_heads, cfg.memory_len
        self.q_layer = nn.Linear(d, d)
        self.k_layer = nn.Linear(d, d, bias=False)
        self.v_layer = nn.Linear(d, d, bias=False)
        self.proj_layer = nn.Linear(d, d)
        self.r_layer = nn.Linear(d, N_REL_BASIS * self.n_heads)
        self.b_nd = nn.Parameter(torch.zeros(N_REL_BASIS, self.M))
        self.hook_q: HookPoint = make_hook(f"{name}.hook_q", "b t n k")
        self.hook_k: HookPoint = make_hook(f"{name}.hook_k", "b t n k")
        self.hook_v: HookPoint = make_hook(f"{name}.hook_v", "b t n k")
        self.hook_scores: HookPoint = make_hook(f"{name}.hook_scores", "b n t T")
        self.hook_pattern: HookPoint = make_hook(f"{name}.hook_pattern", "b n t T")
        self.hook_z: HookPoint = make_hook(f"{name}.hook_z", "b t n k")

    def lag_bias(self, h_btd: Tensor) -> Tensor:
        """Bias of each query on each key position, (b, n, t, M + t); 0 outside lags 0..M-1."""
        b, t, _ = h_btd.shape
        r_btnN = self.r_layer(h_btd).float().view(b, t, self.n_heads, N_REL_BASIS)
        bias_bntL = torch.einsum("btnN,NL->bntL", r_btnN, self.b_nd.float())  # L: lag 0..M-1
        cols = torch.cat([bias_bntL.new_zeros(b, self.n_heads, t, 1), bias_bntL.flip(-1)], dim=-1)
        return lags_to_keys(cols, self.M, fill=0.0)

    def forward(self, h_btd: Tensor, mem_k: Tensor, mem_v: Tensor, mask_btK: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, d = h_btd.shape
        n, k = self.n_heads, d // self.n_heads
        q = self.hook_q(self.q_layer(h_btd).view(b, t, n, k))
        k_new = self.hook_k(self.k_layer(h_btd).view(b, t, n, k)).reshape(b, t, d)
        v_new = self.hook_v(self.v_layer(h_btd).view(b, t, n, k)).reshape(b, t, d)
        keys = torch.cat([mem_k, k_new], dim=1)  # (b, M + t, d)
        values = torch.cat([mem_v, v_new], dim=1)

        K_bnKk = keys.view(b, -1, n, k).transpose(1, 2)
        V_bnKk = values.view(b, -1, n, k).transpose(1, 2)
        logits = torch.matmul(q.transpose(1, 2).float(), K_bnKk.float().transpose(-1, -2)) / k
        logits = (logits + self.lag_bias(h_btd)).masked_fill(~mask_btK[:, None], -math.inf)
        if self.hook_scores.active:
            logits = lags_to_keys(self.hook_scores(keys_to_lags(logits, self.M)), self.M, fill=-math.inf)
        pattern = torch.softmax(logits, dim=-1)
        if self.hook_pattern.active:
            pattern = lags_to_keys(self.hook_pattern(keys_to_lags(pattern, self.M)), self.M, fill=0.0)
        z = torch.matmul(pattern.to(V_bnKk.dtype), V_bnKk).transpose(1, 2)  # (b, t, n, k)
        z = self.hook_z(z)
        out = self.proj_layer(z.reshape(b, t, d))
        return out, keys[:, -self.M :], values[:, -self.M :]


class MaskedAttention(nn.Module):
    """Holds the attention under the name OpenAI's state dicts use (`r.orc_block`)."""

    def __init__(self, cfg: PolicyConfig, name: str, make_hook):
        super().__init__()
        self.orc_block = RelativeAttention(cfg, name, make_hook)


class RecurrentBlock(nn.Module):
    def __init__(self, cfg: PolicyConfig, layer: int, make_hook):
        super().__init__()
        d, name = cfg.hidsize, f"blocks.{layer}"
        self.pre_r_ln = nn.LayerNorm(d)
        self.r = MaskedAttention(cfg, f"{name}.attn", make_hook)
        self.mlp0 = _dense(d, d * cfg.pointwise_ratio)
        self.mlp1 = NormedLayer(nn.Linear(d * cfg.pointwise_ratio, d), relu=False)
        self.hook_resid_pre: HookPoint = make_hook(f"{name}.hook_resid_pre", "b t d")
        self.hook_ln1: HookPoint = make_hook(f"{name}.ln1.hook_normalized", "b t d")
        self.hook_attn_out: HookPoint = make_hook(f"{name}.hook_attn_out", "b t d")
        self.hook_resid_mid: HookPoint = make_hook(f"{name}.hook_resid_mid", "b t d")
        self.hook_mlp_post: HookPoint = make_hook(f"{name}.mlp.hook_post", "b t f")
        self.hook_mlp_out: HookPoint = make_hook(f"{name}.hook_mlp_out", "b t d")
        self.hook_resid_post: HookPoint = make_hook(f"{name}.hook_resid_post", "b t d")

    def forward(self, x: Tensor, mem_k: Tensor, mem_v: Tensor, mask_btK: Tensor):
        x = self.hook_resid_pre(x)
        h = self.hook_ln1(self.pre_r_ln(x))
        attn_out, keys, values = self.r.orc_block(h, mem_k, mem_v, mask_btK)
        mid = self.hook_resid_mid(h + self.hook_attn_out(attn_out))
        mlp_out = self.hook_mlp_out(self.mlp1(self.hook_mlp_post(self.mlp0(mid))))
        return self.hook_resid_post(mid + mlp_out), keys, values


class RecurrentLayer(nn.Module):
    def __init__(self, cfg: PolicyConfig, make_hook):
        super().__init__()
        self.blocks = nn.ModuleList(RecurrentBlock(cfg, i, make_hook) for i in range(cfg.n_recurrence_layers))


class Net(nn.Module):
    def __init__(self, cfg: PolicyConfig, make_hook):
        super().__init__()
        self.img_process = ImgProcess(cfg)
        self.recurrent_layer = RecurrentLayer(cfg, make_hook)
        self.lastlayer = _dense(cfg.hidsize, cfg.hidsize)
        self.final_ln = nn.LayerNorm(cfg.hidsize)
        if cfg.goal_dim is not None:
            self.mineclip_embed_linear = nn.Linear(cfg.goal_dim, cfg.hidsize)


class CategoricalHead(nn.Module):
    def __init__(self, d: int, n_classes: int):
        super().__init__()
        self.linear_layer = nn.Linear(d, n_classes)


class ValueNormalizer(nn.Module):
    """OpenAI's NormalizeEwma at inference: undo the running normalisation of value targets."""

    def __init__(self):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(1))
        self.register_buffer("running_mean_sq", torch.zeros(1))
        self.register_buffer("debiasing_term", torch.zeros(()))

    def denormalize(self, x: Tensor) -> Tensor:
        debias = self.debiasing_term.float().clamp(min=1e-5)
        mean = self.running_mean.float() / debias
        var = (self.running_mean_sq.float() / debias - mean**2).clamp(min=1e-2)
        return x * torch.sqrt(var) + mean


class ValueHead(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.linear = nn.Linear(d, 1)
        self.normalizer = ValueNormalizer()


# ----------------------------------------------------------------------------- the policy


class VPTPolicy(HookedMixin, nn.Module):
    """VPT / STEVE-1 policy with explicit recurrent state and hook points.

    >>> state = policy.initial_state(B)
    >>> out, state = policy.step(frames_bhwc_uint8, first_b, state)            # one frame per row
    >>> out, state = policy(frames_bthwc_uint8, first_bt, state)               # a sequence, same numbers
    >>> out, state, cache = policy.run_with_cache(frames, first, state, names=["blocks.*.attn.hook_pattern"])

    Attention patterns (`blocks.{L}.attn.hook_pattern`, and `hook_scores`) are laid out by
    lag: (B, n, T) for a step, (B, n, t, T) for a sequence, T = M + 1; the last column is
    the current frame and column T-1-k is k frames back. Keys that cannot be attended
    (before the episode's first frame, or k >= M) are exactly 0 (-inf in the scores);
    column 0 (k = M) is therefore always 0.
    """

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self._init_hooks()
        self.cfg = cfg
        mk = self._make_hook
        self.hook_img_out: HookPoint = mk("img.hook_out", "b t d")
        self.hook_goal_embed: HookPoint | None = mk("hook_goal_embed", "b t d") if cfg.goal_dim else None
        self.net = Net(cfg, mk)
        self.hook_latent: HookPoint = mk("hook_latent", "b t d")
        self.pi_head = nn.ModuleDict(
            {
                "camera": CategoricalHead(cfg.hidsize, N_CAMERA_CLASSES),
                "buttons": CategoricalHead(cfg.hidsize, N_BUTTON_CLASSES),
            }
        )
        self.hook_buttons: HookPoint = mk("pi_head.hook_buttons_logits", "b t a")
        self.hook_camera: HookPoint = mk("pi_head.hook_camera_logits", "b t c")
        self.value_head = ValueHead(cfg.hidsize)
        self.hook_value: HookPoint = mk("value_head.hook_value", "b t")

    # -- state

    @property
    def device(self) -> torch.device:
        return self.net.final_ln.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.net.final_ln.weight.dtype

    def initial_state(self, batch_size: int, *, guided: bool = False) -> PolicyState:
        """Empty memory for `batch_size` environments (twice as many rows when `guided`, for STEVE-1's CFG)."""
        rows = 2 * batch_size if guided else batch_size
        shape = (rows, self.cfg.memory_len, self.cfg.hidsize)
        zeros = lambda: torch.zeros(shape, device=self.device, dtype=self.dtype)
        n_layers = self.cfg.n_recurrence_layers
        return PolicyState(
            tuple(zeros() for _ in range(n_layers)),
            tuple(zeros() for _ in range(n_layers)),
            torch.zeros(rows, self.cfg.memory_len, dtype=torch.bool, device=self.device),
        )

    # -- forward

    def forward(
        self,
        frames: UInt8[Tensor, "b t h w c"] | Float[Tensor, "b t h w c"],
        first: Bool[Tensor, "b t"],
        state: PolicyState,
        goal: Float[Tensor, "b g"] | Float[Tensor, "b t g"] | None = None,
        chunk_len: int | None = None,
    ) -> tuple[PolicyOutput, PolicyState]:
        """A sequence of frames per row; differentiable. Same numbers as stepping one frame at a time.

        Frames are uint8, or float with values 0..255 when gradients with respect to pixels are wanted.
        `first[b, i]` starts a new episode at frame i of row b (the memory before it is masked).
        Long sequences run in chunks of `chunk_len` frames (default M), carrying the state.
        """
        frames, first, goal = self._check_inputs(frames, first, state, goal, time_axis=True)
        chunk_len = chunk_len or self.cfg.memory_len
        outs = []
        for start in range(0, frames.shape[1], chunk_len):
            sl = slice(start, start + chunk_len)
            out, state = self._forward_chunk(frames[:, sl], first[:, sl], state, None if goal is None else goal[:, sl])
            outs.append(out)
        if len(outs) == 1:
            return outs[0], state
        return PolicyOutput(*(torch.cat(parts, dim=1) for parts in zip(*(vars(o).values() for o in outs)))), state

    @torch.no_grad()
    def step(
        self,
        frames: UInt8[Tensor, "b h w c"],
        first: Bool[Tensor, " b"],
        state: PolicyState,
        goal: Float[Tensor, "b g"] | None = None,
        cond_scale: float | None = None,
    ) -> tuple[PolicyOutput, PolicyState]:
        """One frame per row, under no_grad: out.buttons_logits (B, 8641), camera_logits (B, 121), value (B,).

        STEVE-1 with `cond_scale` s: classifier-free guidance, `(1+s)*cond - s*uncond` on the
        log-probabilities, the unconditional stream seeing a zero goal with its own memory
        (the state must come from `initial_state(B, guided=True)`).
        """
        return self._step(frames, first, state, goal, cond_scale)

    def _step(self, frames, first, state, goal, cond_scale):
        frames_t = torch.as_tensor(frames).unsqueeze(1)
        first_t = torch.as_tensor(first).unsqueeze(1)
        with self._step_mode(True):
            if cond_scale is None:
                out, state = self.forward(frames_t, first_t, state, goal)
                return PolicyOutput(*(x.squeeze(1) for x in vars(out).values())), state
            if goal is None:
                raise ValueError("cond_scale needs a goal embedding: pass goal=(B, 512) MineCLIP vectors")
            b = frames_t.shape[0]
            if state.batch_size != 2 * b:
                raise ValueError(
                    f"a guided step needs a state of 2*B = {2 * b} rows (cond, uncond); "
                    f"got {state.batch_size}. Use policy.initial_state(B, guided=True)."
                )
            goal = torch.as_tensor(goal, device=self.device)
            out, state = self.forward(
                torch.cat([frames_t, frames_t]),
                torch.cat([first_t, first_t]),
                state,
                torch.cat([goal, torch.zeros_like(goal)]),
            )
        cond = PolicyOutput(*(x[:b, 0] for x in vars(out).values()))
        uncond = PolicyOutput(*(x[b:, 0] for x in vars(out).values()))
        guide = lambda c, u: (1 + cond_scale) * c - cond_scale * u
        return PolicyOutput(
            guide(cond.buttons_logits, uncond.buttons_logits),
            guide(cond.camera_logits, uncond.camera_logits),
            cond.value,
        ), state

    def run_with_cache(
        self,
        frames: Tensor,
        first: Tensor,
        state: PolicyState,
        names: str | list[str] = "*",
        goal: Tensor | None = None,
        cond_scale: float | None = None,
        detach: bool = True,
    ) -> tuple[PolicyOutput, PolicyState, dict[str, Tensor]]:
        """Run a step (frames (B, H, W, C)) or a sequence (frames (B, T, H, W, C)) and return the named activations.

        `names` may use wildcards. Step-mode activations drop the time axis (see `hook_dims()`).
        """
        step = torch.as_tensor(frames).ndim == 4
        with self._caching(names, detach=detach) as store:
            if step:
                if torch.is_grad_enabled() and not detach:
                    out, state = self._step(frames, first, state, goal, cond_scale)
                else:
                    out, state = self.step(frames, first, state, goal, cond_scale)
            else:
                if cond_scale is not None:
                    raise ValueError("cond_scale is only supported in step mode")
                out, state = self.forward(frames, first, state, goal)
        return out, state, concat_cache(store, self.hook_dims(step=False))

    # -- internals

    def _check_inputs(self, frames, first, state: PolicyState, goal, time_axis: bool):
        frames = torch.as_tensor(frames, device=self.device)
        first = torch.as_tensor(first, device=self.device)
        h, w, c = self.cfg.img_shape
        pixels_ok = frames.dtype == torch.uint8 or frames.is_floating_point()  # float: values 0..255, for gradients
        if not pixels_ok or frames.ndim != 5 or tuple(frames.shape[2:]) != (h, w, c):
            raise ValueError(
                f"frames must be uint8 (B, T, {h}, {w}, {c}) (or (B, {h}, {w}, {c}) for a step); got "
                f"{frames.dtype} {tuple(frames.shape)}. Resize game frames with "
                "vptlens.agents.preprocess_frames (OpenCV INTER_LINEAR, as VPT does)."
            )
        b, t = frames.shape[:2]
        if first.shape != (b, t):
            raise ValueError(f"first must have shape {(b, t)} (one flag per row and frame), got {tuple(first.shape)}")
        if state.batch_size != b:
            raise ValueError(f"state has {state.batch_size} rows but frames have {b}; use initial_state({b})")
        if self.cfg.goal_dim is None:
            if goal is not None:
                raise ValueError("this policy is not goal-conditioned (no mineclip_embed_linear); pass goal=None")
        else:
            if goal is None:
                raise ValueError(
                    f"this is a goal-conditioned (STEVE-1) policy: pass goal=(B, {self.cfg.goal_dim}) "
                    "MineCLIP embeddings (zeros for the unconditional policy)"
                )
            goal = torch.as_tensor(goal, device=self.device, dtype=self.dtype)
            if goal.ndim == 2:
                goal = goal[:, None].expand(b, t, goal.shape[-1])
            if goal.shape != (b, t, self.cfg.goal_dim):
                raise ValueError(
                    f"goal must be (B, {self.cfg.goal_dim}) or (B, T, {self.cfg.goal_dim}), got {tuple(goal.shape)}"
                )
        return frames, first.bool(), goal

    def _attention_mask(self, first_bt: Tensor, valid_bM: Tensor) -> tuple[Tensor, Tensor]:
        """Which keys ([memory M, chunk t]) each query may see, and the memory validity after the chunk."""
        b, t = first_bt.shape
        M = self.cfg.memory_len
        episode_bt = first_bt.long().cumsum(1)  # episode index within the chunk, 0 = the one in memory
        mem_episode = torch.where(valid_bM, 0, -1)
        key_episode = torch.cat([mem_episode, episode_bt], dim=1)  # (b, M + t)
        same_episode = key_episode[:, None, :] == episode_bt[:, :, None]
        lag = M + torch.arange(t, device=first_bt.device)[:, None] - torch.arange(M + t, device=first_bt.device)
        in_window = (lag >= 0) & (lag < M)
        mask_btK = same_episode & in_window
        valid_out = (key_episode == episode_bt[:, -1:])[:, -M:]
        return mask_btK, valid_out

    def _forward_chunk(self, frames, first, state: PolicyState, goal):
        x = self.hook_img_out(self.net.img_process(frames))
        if goal is not None:
            x = x + self.hook_goal_embed(self.net.mineclip_embed_linear(goal))
        mask, valid = self._attention_mask(first, state.valid)
        keys, values = [], []
        for i, block in enumerate(self.net.recurrent_layer.blocks):
            x, k, v = block(x, state.keys[i], state.values[i], mask)
            keys.append(k)
            values.append(v)
        x = self.net.lastlayer(F.relu(x))
        latent = self.hook_latent(self.net.final_ln(x))
        t = self.cfg.temperature
        buttons = F.log_softmax((self.pi_head["buttons"].linear_layer(latent) / t).float(), dim=-1)
        camera = F.log_softmax((self.pi_head["camera"].linear_layer(latent) / t).float(), dim=-1)
        value = self.value_head.normalizer.denormalize(self.value_head.linear(latent).float())[..., 0]
        out = PolicyOutput(self.hook_buttons(buttons), self.hook_camera(camera), self.hook_value(value))
        return out, PolicyState(tuple(keys), tuple(values), valid)

    # -- description

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
