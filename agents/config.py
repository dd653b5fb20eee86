"""The policy's architecture, as the released `*.model` files describe it."""

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from vptlens.agents.safe_pickle import load_plain_pickle


@dataclass(frozen=True)
class PolicyConfig:
    """VPT's `MinecraftPolicy` keyword arguments (the `net.args` of a `.model` file), checked.

    Only the options the released checkpoints use are supported (transformer recurrence,
    clipped causal masks, group-norm CNN); any other value is refused by name.
    """

    hidsize: int = 2048
    """Residual stream width d."""
    attention_heads: int = 16
    """Attention heads n per recurrent block."""
    n_recurrence_layers: int = 4
    """Number of residual recurrent (transformer) blocks."""
    attention_memory_size: int = 256
    """Memory plus timesteps; a frame attends to `attention_memory_size - timesteps` frames, itself included."""
    timesteps: int = 128
    """Training chunk length; only the difference `attention_memory_size - timesteps` matters at inference."""
    impala_chans: tuple[int, ...] = (16, 32, 32)
    """Channels of the three ImpalaCNN stacks before `impala_width` scaling."""
    impala_width: int = 8
    """Multiplier on `impala_chans`."""
    img_shape: tuple[int, int, int] = (128, 128, 3)
    """Agent-resolution image (height, width, channels)."""
    pointwise_ratio: int = 4
    """Hidden width of each block's MLP, as a multiple of hidsize."""
    cnn_outsize: int = 256
    """Width of the ImpalaCNN's dense output before the linear projection to hidsize."""
    goal_dim: int | None = None
    """STEVE-1's MineCLIP goal width (512); None for plain VPT."""
    temperature: float = 2.0
    """Action head temperature (`pi_head_opts.temperature`); logits are divided by it."""
    raw_kwargs: dict = field(default_factory=dict, compare=False, repr=False)
    """The keyword arguments as read from the file, kept for provenance."""

    def __post_init__(self):
        check_sizes({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if self.hidsize % self.attention_heads:
            raise ValueError(f"hidsize {self.hidsize} is not divisible by attention_heads {self.attention_heads}")
        if self.memory_len < 1:
            raise ValueError(
                f"attention_memory_size ({self.attention_memory_size}) must exceed timesteps ({self.timesteps})"
            )
        if len(self.impala_chans) < 1 or self.impala_width < 1:
            raise ValueError("impala_chans must be non-empty and impala_width >= 1")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    @property
    def memory_len(self) -> int:
        """M: frames a query attends to, itself included (128 in the released models)."""
        return self.attention_memory_size - self.timesteps

    @property
    def head_dim(self) -> int:
        return self.hidsize // self.attention_heads

    @property
    def cnn_chans(self) -> tuple[int, ...]:
        return tuple(self.impala_width * c for c in self.impala_chans)

    @property
    def is_goal_conditioned(self) -> bool:
        return self.goal_dim is not None

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("raw_kwargs")
        return out


def check_sizes(values: dict) -> None:
    """Every size of a policy config (a dict of all its fields) an integer in a range a Minecraft policy could
    have, checked before anything is allocated: a hostile or corrupt file must not reach torch with a string, a
    negative size or a terabyte allocation."""

    def check_int(name: str, value, lo: int, hi: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"policy option {name}={value!r} must be an integer ({lo}..{hi})")
        if not lo <= value <= hi:
            raise ValueError(f"policy option {name}={value!r} is outside {lo}..{hi}")

    for name, lo, hi in (
        ("hidsize", 1, 16384),
        ("attention_heads", 1, 256),
        ("n_recurrence_layers", 1, 64),
        ("attention_memory_size", 2, 1 << 16),
        ("timesteps", 1, 1 << 16),
        ("impala_width", 1, 64),
        ("pointwise_ratio", 1, 16),
        ("cnn_outsize", 1, 16384),
    ):
        check_int(name, values[name], lo, hi)
    chans, img_shape, goal_dim, temperature = (
        values[k] for k in ("impala_chans", "img_shape", "goal_dim", "temperature")
    )
    if not isinstance(chans, tuple) or not 1 <= len(chans) <= 8:
        raise ValueError(f"policy option impala_chans={chans!r} must be 1 to 8 integers")
    for c in chans:
        check_int("impala_chans[i]", c, 1, 1024)
    if not isinstance(img_shape, tuple) or len(img_shape) != 3:
        raise ValueError(f"policy option img_shape={img_shape!r} must be (height, width, channels)")
    for x in img_shape:
        check_int("img_shape[i]", x, 1, 1024)
    if goal_dim is not None:
        check_int("goal_dim", goal_dim, 1, 8192)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not math.isfinite(temperature):
        raise ValueError(f"temperature={temperature!r} must be a finite number")
    # the released 3x model has ~0.5B parameters; refuse sizes that would allocate far beyond that
    d, layers = values["hidsize"], values["n_recurrence_layers"]
    n_params = layers * (4 * d * d + 2 * d * d * values["pointwise_ratio"])
    if n_params > 4_000_000_000:
        raise ValueError(
            f"this policy would have ~{n_params / 1e9:.0f}B transformer parameters (hidsize {d}, {layers} layers); "
            "the released ones have at most ~0.5B: the file is corrupt"
        )


# What each supported option must be, for the keys we do not turn into fields.
FIXED_OPTIONS = {
    "recurrence_type": "transformer",
    "attention_mask_style": "clipped_causal",
    "use_pointwise_layer": True,
    "pointwise_use_activation": False,
    "recurrence_is_residual": True,
    "use_pre_lstm_ln": False,
    "diff_mlp_embedding": False,
    "impala_kwargs": {"post_pool_groups": 1},
    "init_norm_kwargs": {"batch_norm": False, "group_norm_groups": 1},
}
_IGNORED_OPTIONS = {
    "only_img_input",
    "single_output",
    "scale_input_img",
    "input_shape",
    "active_reward_monitors",
}
_FIELD_OPTIONS = {f.name for f in dataclasses.fields(PolicyConfig)} - {
    "raw_kwargs",
    "goal_dim",
    "temperature",
    "cnn_outsize",
}
DEFAULTS_OF_REFERENCE = {"img_statistics": None, "first_conv_norm": False, "obs_processing_width": 256}


def config_from_kwargs(net_kwargs: dict, pi_head_opts: dict | None = None, goal_dim: int | None = None) -> PolicyConfig:
    """Check a `.model` file's `net.args` and build the config; refuse options we do not implement."""
    problems = []
    values = {}
    for key, value in net_kwargs.items():
        if key in _FIELD_OPTIONS:
            values[key] = tuple(value) if isinstance(value, list) else value
        elif key in FIXED_OPTIONS:
            if value != FIXED_OPTIONS[key]:
                problems.append(f"{key}={value!r} (supported: {FIXED_OPTIONS[key]!r})")
        elif key in DEFAULTS_OF_REFERENCE:
            if value != DEFAULTS_OF_REFERENCE[key]:
                problems.append(f"{key}={value!r} (supported: {DEFAULTS_OF_REFERENCE[key]!r})")
        elif key == "mineclip_embed_dim":
            goal_dim = goal_dim or int(value)
        elif key not in _IGNORED_OPTIONS:
            problems.append(f"{key}={value!r} (unknown option)")
    if problems:
        raise ValueError(
            "this policy uses options vpt-lens does not implement: "
            + "; ".join(problems)
            + ". Only the architecture of the released VPT/STEVE-1 checkpoints is supported."
        )
    opts = dict(pi_head_opts or {})
    temperature = float(opts.pop("temperature", 1.0))
    if opts:
        raise ValueError(f"unknown pi_head_opts {sorted(opts)}; only 'temperature' is supported")
    defaults = {f.name: f.default for f in dataclasses.fields(PolicyConfig) if f.name != "raw_kwargs"}
    check_sizes({**defaults, **values, "goal_dim": goal_dim, "temperature": temperature})  # before any type check
    return PolicyConfig(**values, goal_dim=goal_dim, temperature=temperature, raw_kwargs=dict(net_kwargs))


def load_config(model_path: str | Path, goal_dim: int | None = None) -> PolicyConfig:
    """Read a released `.model` file (a pickle, read without executing anything) into a config."""
    obj = load_plain_pickle(model_path)
    try:
        args = obj["model"]["args"]
        net_kwargs = args["net"]["args"]
        pi_head_opts = args.get("pi_head_opts", {})
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"{model_path}: not a VPT '.model' file: expected {{'model': {{'args': {{'net': {{'args': ...}}, "
            f"'pi_head_opts': ...}}}}}}, missing {e}"
        ) from e
    if not isinstance(net_kwargs, dict):
        raise ValueError(f"{model_path}: model.args.net.args is a {type(net_kwargs).__name__}, expected a dict")
    return config_from_kwargs(net_kwargs, pi_head_opts, goal_dim=goal_dim)
