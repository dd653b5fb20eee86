"""Sparse autoencoders on recorded activations (TopK, BatchTopK, ReLU+L1), their training step, SAELens-layout files.

Every SAE reconstructs `x_hat = z @ W_dec + b_dec` from latents `z = act((x - b_dec) @ W_enc + b_enc)`
(SAELens's `apply_b_dec_to_input`). The activation `act` is

- `topk`: keep the k largest pre-activations of each row, ReLU them (Gao et al. 2024);
- `batchtopk`: in training, keep the k x batch largest over the whole batch (Bussmann et al. 2024);
  at inference, a fixed threshold: `z = pre * (pre > threshold)`, the threshold being the average of
  the smallest kept activation over batches, as in the paper: a running average (EMA, decay 0.99)
  during training, then recomputed with the final weights (`calibrate_thresholds`, which `vptlens sae
  train` runs on batches after the last step). So one row's code never depends on the other rows of
  its batch. (SAELens reads such an SAE
  as a JumpReLU SAE with that threshold for every latent, which is exactly what it computes.)
- `relu`: ReLU, trained with an L1 penalty on `z_i * ||W_dec[i]||` (rows are kept at unit norm in
  training, so this is plain L1 there; the product keeps the penalty meaningful for any rows).
- `jumprelu`: `z = pre * (pre > threshold_i)` with a learned threshold per latent, trained with an L0
  penalty (the number of active latents) through straight-through pseudo-derivatives with a
  rectangle kernel of width `bandwidth` (Rajamanoharan et al. 2024, "Jumping Ahead"): the threshold
  gets gradients from the reconstruction and from the L0 term, the pre-activations only through the
  open gates. The threshold is stored as its log, so it stays positive.

Training scales inputs by one constant so that their mean norm is sqrt(d_in); `SAE.fold_scale`
folds that constant back so a saved SAE works on RAW activations: decoder rows keep unit norm and
latents come out in raw activation units (the encoder bias, thresholds and b_dec are divided by the
scale).
"""

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

ARCHITECTURES = ("topk", "batchtopk", "relu", "jumprelu")
CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae_weights.safetensors"
FORMAT = "vptlens.sae"
FORMAT_VERSION = 1
_SAELENS_ARCH = {"topk": "topk", "batchtopk": "jumprelu", "relu": "standard", "jumprelu": "jumprelu"}
"""The SAELens architecture each of ours is read as (BatchTopK at inference is JumpReLU)."""
THRESHOLDED = ("batchtopk", "jumprelu")
"""Architectures whose inference is a per-latent threshold (saved as `threshold`, as SAELens's JumpReLU)."""


@dataclass(frozen=True)
class SAEConfig:
    """What an SAE is: shapes, activation, the hook it reads. Saved as `cfg.json` (SAELens keys plus ours)."""

    d_in: int
    """Width of the activation the SAE reads."""
    d_sae: int
    """Number of latents."""
    architecture: str
    """"topk", "batchtopk", "relu" (ReLU trained with L1) or "jumprelu" (trained with L0)."""
    k: int | None
    """Active latents per row (topk), or on average per row (batchtopk); None for relu."""
    l1_coefficient: float | None
    """L1 coefficient (relu only), on the loss `sum_d (x - x_hat)^2` of inputs scaled to mean norm sqrt(d_in)."""
    hook_name: str
    """Hook whose recorded activation the SAE reads, e.g. "blocks.1.hook_resid_post"."""
    dtype: str = "float32"
    """Parameter dtype."""
    device: str = "cpu"
    """Device the SAE was trained on (SAELens key; `SAE.load` always loads to CPU unless told)."""
    provenance: dict = field(default_factory=dict, compare=False)
    """Where the SAE came from: run path, hook, steps, seed, episodes, package version, input scale."""
    l0_coefficient: float | None = None
    """L0 coefficient (jumprelu only), on the same loss as `l1_coefficient`."""
    bandwidth: float = 0.2
    """jumprelu: width of the rectangle kernel of the threshold's pseudo-derivatives (scaled-input units)."""
    init_threshold: float = 0.5
    """jumprelu: every latent's initial threshold (scaled-input units). Pre-activations are O(1) at the training
    scale and Adam moves the log-threshold by at most ~lr per step, so starting near where thresholds end
    (here ~1) saves thousands of steps: from 0.001 (Gemma Scope's value, at their scale) they need > 5000."""

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.d_in < 1 or self.d_sae < 1:
            raise ValueError(f"d_in and d_sae must be >= 1, got {self.d_in}, {self.d_sae}")
        if self.architecture in ("topk", "batchtopk"):
            if self.k is None or not 1 <= self.k <= self.d_sae:
                raise ValueError(f"{self.architecture} needs 1 <= k <= d_sae ({self.d_sae}), got k={self.k}")
        elif self.architecture == "relu" and (self.l1_coefficient is None or self.l1_coefficient < 0):
            raise ValueError(f"relu needs an l1_coefficient >= 0, got {self.l1_coefficient}")
        elif self.architecture == "jumprelu":
            if self.l0_coefficient is None or self.l0_coefficient < 0:
                raise ValueError(f"jumprelu needs an l0_coefficient >= 0, got {self.l0_coefficient}")
            if not (self.bandwidth > 0 and self.init_threshold > 0):
                raise ValueError(f"jumprelu needs bandwidth and init_threshold > 0, got {self.bandwidth}, "
                                 f"{self.init_threshold}")  # fmt: skip
        if self.dtype not in ("float32", "float64", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, float64, bfloat16 or float16, got {self.dtype!r}")

    def to_json_dict(self) -> dict:
        """SAELens `cfg.json` keys (architecture as SAELens names it) plus ours (`vptlens_*`, k, provenance)."""
        return {
            "architecture": _SAELENS_ARCH[self.architecture],
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "dtype": self.dtype,
            "device": self.device,
            "model_name": "vpt",
            "hook_name": self.hook_name,
            "hook_layer": _hook_layer(self.hook_name),
            "hook_head_index": None,
            "activation_fn_str": "topk" if self.architecture == "topk" else "relu",
            "activation_fn_kwargs": {"k": self.k} if self.architecture == "topk" else {},
            "apply_b_dec_to_input": True,
            "finetuning_scaling_factor": False,
            "normalize_activations": "none",  # the training scale is folded into the weights
            "context_size": 1,
            "prepend_bos": False,
            "dataset_path": str(self.provenance.get("run", "")),
            "k": self.k,
            "l1_coefficient": self.l1_coefficient,
            "l0_coefficient": self.l0_coefficient,
            "jumprelu_bandwidth": self.bandwidth,
            "jumprelu_init_threshold": self.init_threshold,
            "vptlens_format": FORMAT,
            "vptlens_format_version": FORMAT_VERSION,
            "vptlens_architecture": self.architecture,
            "provenance": self.provenance,
        }

    @classmethod
    def from_json_dict(cls, d: dict, where: str = "cfg.json") -> "SAEConfig":
        if d.get("vptlens_format") != FORMAT:
            raise ValueError(f"{where}: not a vpt-lens SAE config (vptlens_format={d.get('vptlens_format')!r})")
        if d.get("vptlens_format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{where}: SAE format version {d.get('vptlens_format_version')!r}, this vpt-lens reads {FORMAT_VERSION}"
            )
        try:
            return cls(
                d_in=int(d["d_in"]),
                d_sae=int(d["d_sae"]),
                architecture=d["vptlens_architecture"],
                k=d.get("k"),
                l1_coefficient=d.get("l1_coefficient"),
                hook_name=d["hook_name"],
                dtype=d.get("dtype", "float32"),
                device=d.get("device", "cpu"),
                provenance=d.get("provenance", {}),
                l0_coefficient=d.get("l0_coefficient"),
                bandwidth=float(d.get("jumprelu_bandwidth", 0.2)),
                init_threshold=float(d.get("jumprelu_init_threshold", 0.5)),
            )
        except KeyError as e:
            raise ValueError(f"{where}: missing key {e}; was it written by `vptlens sae train`?") from None


def _hook_layer(hook_name: str) -> int | None:
    parts = hook_name.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None


class SAE(torch.nn.Module):
    """A sparse autoencoder. `encode`/`decode`/`forward` are inference (per-row, batch-independent)."""

    def __init__(self, cfg: SAEConfig, generator: torch.Generator | None = None, *, init: bool = True):
        """Random unit decoder rows, encoder = decoder transposed (Gao et al. 2024), zero biases.

        `generator` seeds the init (default: a fresh generator with torch's default seed, never the
        global RNG); `init=False` leaves the parameters uninitialised (for loading).
        """
        super().__init__()
        self.cfg = cfg
        dtype = getattr(torch, cfg.dtype)
        if init:
            W_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=generator or torch.Generator())
            W_dec = (W_dec / W_dec.norm(dim=1, keepdim=True)).to(dtype)
        else:
            W_dec = torch.empty(cfg.d_sae, cfg.d_in, dtype=dtype)
        self.W_dec = torch.nn.Parameter(W_dec)
        self.W_enc = torch.nn.Parameter(W_dec.T.clone().contiguous())
        self.b_enc = torch.nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype))
        self.b_dec = torch.nn.Parameter(torch.zeros(cfg.d_in, dtype=dtype))
        if cfg.architecture == "batchtopk":  # its inference threshold (per latent, all equal); 0 until estimated
            self.register_buffer("threshold", torch.zeros(cfg.d_sae, dtype=dtype))
        elif cfg.architecture == "jumprelu":  # learned per latent, as its log so it stays positive
            self.log_threshold = torch.nn.Parameter(torch.full((cfg.d_sae,), math.log(cfg.init_threshold), dtype=dtype))

    def thresholds(self) -> Float[Tensor, " s"] | None:
        """The per-latent inference threshold of a BatchTopK or JumpReLU SAE, detached (None for the others)."""
        if self.cfg.architecture == "batchtopk":
            return self.threshold
        if self.cfg.architecture == "jumprelu":
            return self.log_threshold.detach().exp()
        return None

    def pre_acts(self, x: Float[Tensor, "*b d"]) -> Float[Tensor, "*b s"]:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: Float[Tensor, "*b s"]) -> Float[Tensor, "*b s"]:
        """Per-row activation (inference): TopK, the BatchTopK or JumpReLU threshold, or ReLU."""
        if self.cfg.architecture == "topk":
            return topk_relu(pre, self.cfg.k)
        if self.cfg.architecture == "batchtopk":
            return pre * (pre > self.threshold.clamp(min=0))
        if self.cfg.architecture == "jumprelu":
            return pre * (pre > self.log_threshold.exp())
        return torch.relu(pre)

    def encode(self, x: Float[Tensor, "*b d"]) -> Float[Tensor, "*b s"]:
        """Latent activations (>= 0) of raw activations."""
        return self.activate(self.pre_acts(x))

    def decode(self, z: Float[Tensor, "*b s"]) -> Float[Tensor, "*b d"]:
        return z @ self.W_dec + self.b_dec

    def forward(self, x: Float[Tensor, "*b d"]) -> Float[Tensor, "*b d"]:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Put every decoder row at unit norm (after each optimiser step)."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-12))

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Remove from W_dec's gradient the component along each (unit) row (before each optimiser step)."""
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
            self.W_dec.grad.sub_(parallel * self.W_dec)

    @torch.no_grad()
    def fold_scale(self, scale: float) -> "SAE":
        """A copy that reads raw x when this one was trained on `scale * x`; decoder rows keep their norm.

        pre_raw = pre_scaled / scale and x_hat_raw = x_hat_scaled / scale: W_enc and W_dec stay,
        b_enc, b_dec and the threshold are divided by `scale`, latents come out divided by `scale`.
        """
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale}")
        out = SAE(self.cfg, init=False).to(self.W_enc.device)
        out.load_state_dict(self.state_dict())
        out.b_enc.div_(scale)
        out.b_dec.div_(scale)
        if self.cfg.architecture == "batchtopk":
            out.threshold.div_(scale)
        elif self.cfg.architecture == "jumprelu":
            out.log_threshold.sub_(math.log(scale))
        return out

    def save(self, dir_path: str | Path, provenance: dict) -> None:
        """Write `cfg.json` and `sae_weights.safetensors` (SAELens layout) into `dir_path`."""
        dir_path = Path(dir_path)
        dir_path.mkdir(parents=True, exist_ok=True)
        cfg = replace(self.cfg, provenance={**self.cfg.provenance, **provenance})
        tensors = {name: p.detach().cpu().contiguous() for name, p in self.named_parameters()}
        if self.cfg.architecture in THRESHOLDED:  # SAELens's JumpReLU layout: `threshold`, never its log
            tensors.pop("log_threshold", None)
            tensors["threshold"] = self.thresholds().detach().cpu().contiguous()
        save_file(tensors, str(dir_path / WEIGHTS_NAME), metadata={"format": "pt"})
        (dir_path / CFG_NAME).write_text(json.dumps(cfg.to_json_dict(), indent=2, default=str))

    @classmethod
    def load(cls, dir_path: str | Path, device: str = "cpu") -> "SAE":
        """Read an SAE saved by `save`; refuses wrong keys, shapes or dtypes with a message."""
        dir_path = Path(dir_path)
        cfg_path, weights_path = dir_path / CFG_NAME, dir_path / WEIGHTS_NAME
        for path in (cfg_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found; pass a directory written by `vptlens sae train`")
        try:
            cfg = SAEConfig.from_json_dict(json.loads(cfg_path.read_text()), str(cfg_path))
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg_path}: not valid JSON ({e})") from None
        try:
            tensors = load_file(str(weights_path))
        except (SafetensorError, OSError) as e:
            raise ValueError(
                f"{weights_path}: not a readable safetensors file ({e}); re-save or re-train the SAE"
            ) from None
        sae = cls(cfg, init=False)
        expected = {name: tuple(p.shape) for name, p in sae.named_parameters() if name != "log_threshold"}
        if cfg.architecture in THRESHOLDED:
            expected["threshold"] = (cfg.d_sae,)
        if set(tensors) != set(expected):
            raise ValueError(
                f"{weights_path}: tensors {sorted(tensors)}, a {cfg.architecture} SAE has exactly {sorted(expected)}"
            )
        for name, shape in expected.items():
            t = tensors[name]
            if tuple(t.shape) != shape:
                raise ValueError(f"{weights_path}: '{name}' has shape {tuple(t.shape)}, cfg.json implies {shape}")
            if not t.is_floating_point():
                raise ValueError(f"{weights_path}: '{name}' has dtype {t.dtype}, expected a float dtype")
        with torch.no_grad():
            for name, p in sae.named_parameters():
                if name != "log_threshold":
                    p.copy_(tensors[name])
            if cfg.architecture == "batchtopk":
                sae.threshold.copy_(tensors["threshold"])
            elif cfg.architecture == "jumprelu":
                if not bool((tensors["threshold"] > 0).all()):
                    raise ValueError(f"{weights_path}: a jumprelu SAE's thresholds must all be > 0")
                sae.log_threshold.copy_(tensors["threshold"].log())
        return sae.to(device)


class _JumpReLU(torch.autograd.Function):
    """(z, gate) = (pre * (pre > th), (pre > th) as a float) with th = exp(log_th), and their pseudo-derivatives:
    dz/dpre = the gate, dz/dth = -(th / bw) * rect((pre - th) / bw), dgate/dth = -(1 / bw) * rect((pre - th) / bw),
    no gradient from the gate to pre (Rajamanoharan et al. 2024)."""

    @staticmethod
    def forward(ctx, pre: Tensor, log_th: Tensor, bandwidth: float) -> tuple[Tensor, Tensor]:
        th = log_th.exp()
        gate = pre > th
        ctx.save_for_backward(pre, th, gate)
        ctx.bandwidth = bandwidth
        return pre * gate, gate.to(pre.dtype)

    @staticmethod
    def backward(ctx, grad_z: Tensor, grad_gate: Tensor):
        pre, th, gate = ctx.saved_tensors
        near = ((pre - th).abs() < ctx.bandwidth / 2).to(grad_z.dtype) / ctx.bandwidth
        grad_th = -((grad_z * th + grad_gate) * near).reshape(-1, th.shape[-1]).sum(0)
        return grad_z * gate, grad_th * th, None  # d/dlog_th = d/dth * th


def jumprelu_train(pre: Float[Tensor, "b s"], log_threshold: Tensor, bandwidth: float) -> tuple[Tensor, Tensor]:
    """JumpReLU training forward: the code z (b, s) and each row's L0 (b,), both with straight-through gradients."""
    z, gate = _JumpReLU.apply(pre, log_threshold, bandwidth)
    return z, gate.sum(-1)


def topk_relu(pre: Float[Tensor, "*b s"], k: int) -> Float[Tensor, "*b s"]:
    """Keep each row's k largest pre-activations (ReLU'd), zero elsewhere."""
    values, index = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter_(-1, index, torch.relu(values))


def batch_topk_relu(pre: Float[Tensor, "b s"], k: int) -> tuple[Float[Tensor, "b s"], Tensor, Tensor]:
    """Keep the k x b largest pre-activations of the whole batch (ReLU'd).

    Also returns the kept values (ReLU'd) and their flat indices into (b, s).
    """
    flat = pre.flatten()
    values, index = flat.topk(min(k * pre.shape[0], flat.numel()), sorted=False)
    values = torch.relu(values)
    return torch.zeros_like(flat).scatter_(0, index, values).view_as(pre), values, index


@torch.no_grad()
def kth_batch_value(pre: Float[Tensor, "b s"], k: int) -> Tensor:
    """The smallest pre-activation BatchTopK keeps in this batch (its (k x b)-th largest, ReLU'd): a 0-d tensor."""
    flat = pre.flatten()
    return torch.relu(flat.topk(min(k * pre.shape[0], flat.numel()), sorted=False).values.min())


@torch.no_grad()
def calibrate_thresholds(saes: Sequence["SAE"], batches: Iterable[Float[Tensor, "b d"]]) -> list[float]:
    """Set BatchTopK SAEs' inference thresholds from their FINAL weights: for each, the mean over `batches` of the
    smallest activation BatchTopK keeps in each (the paper's estimator, without the lag of the running average
    taken while the weights moved). Rows thresholded at it keep k latents per row on average on such batches.
    The batches are streamed (each is seen once, by every SAE)."""
    for sae in saes:
        if sae.cfg.architecture != "batchtopk":
            raise ValueError(f"only a batchtopk SAE has a threshold to calibrate, not {sae.cfg.architecture}")
    values: list[list[Tensor]] = [[] for _ in saes]
    for x in batches:
        for sae, v in zip(saes, values):
            v.append(kth_batch_value(sae.pre_acts(x), sae.cfg.k))
    if saes and not values[0]:
        raise ValueError("calibrating a threshold needs at least one batch")
    out = []
    for sae, v in zip(saes, values):
        sae.threshold.fill_(torch.stack(v).mean())
        out.append(float(sae.threshold[0]))
    return out
