"""Hook points in TransformerLens's grammar: read (cache) or replace any activation by name.

A `HookPoint` is a plain callable placed on the forward path. With no function attached
it returns its input untouched (one attribute test: no measurable cost). With functions
attached each is called as `fn(x, *, hook) -> x | None`; a returned tensor replaces the
activation and flows on, into later layers and into the attention memory, so an edit at
step t changes every later step.

Every hook declares its dimensions with the shape legend of STYLE.md. The policy runs
everything with a time axis `t`; in step mode (one frame per environment) the hook
functions see the tensor without that axis, as documented for each name.
"""

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

HookFn = Callable[..., Tensor | None]


class _HookMode:
    """Shared by all hook points of one policy: whether the current call is a single step."""

    __slots__ = ("step",)

    def __init__(self):
        self.step = False


class HookPoint:
    """A named point on the forward path where activations can be read or replaced."""

    __slots__ = ("name", "dims", "fns", "_mode")

    def __init__(self, name: str, dims: str, mode: _HookMode):
        self.name = name
        self.dims = dims
        self.fns: list[HookFn] = []
        self._mode = mode

    @property
    def active(self) -> bool:
        return bool(self.fns)

    @property
    def step_dims(self) -> str:
        """Dimensions a hook function sees in step mode (the `t` axis dropped)."""
        return " ".join(d for d in self.dims.split() if d != "t")

    def __call__(self, x: Tensor) -> Tensor:
        if not self.fns:
            return x
        t_axis = self.dims.split().index("t") if self._mode.step and "t" in self.dims.split() else None
        y = x.squeeze(t_axis) if t_axis is not None else x
        for fn in self.fns:
            out = fn(y, hook=self)
            if out is not None:
                if out.shape != y.shape:
                    raise ValueError(
                        f"hook function on '{self.name}' returned shape {tuple(out.shape)}, expected "
                        f"{tuple(y.shape)} ({self.step_dims if t_axis is not None else self.dims})"
                    )
                y = out.to(dtype=y.dtype)
        return y.unsqueeze(t_axis) if t_axis is not None else y

    def __repr__(self) -> str:
        return f"HookPoint({self.name!r}, dims={self.dims!r}, n_fns={len(self.fns)})"


class HookedMixin:
    """Gives a module a registry of hook points, name selection, temporary hooks and caching."""

    def _init_hooks(self) -> None:
        self._hook_mode = _HookMode()
        self._hook_points: dict[str, HookPoint] = {}
        self._selections: dict[tuple[str, ...], tuple[str, ...]] = {}  # a recorder selects the same names every step

    def _make_hook(self, name: str, dims: str) -> HookPoint:
        assert name not in self._hook_points, name
        hook = HookPoint(name, dims, self._hook_mode)
        self._hook_points[name] = hook
        self._selections.clear()
        return hook

    @property
    def hook_names(self) -> list[str]:
        return list(self._hook_points)

    def hook_dims(self, step: bool = True) -> dict[str, str]:
        """Each hook's dimensions, as its functions see them in step mode (default) or sequence mode."""
        return {n: (h.step_dims if step else h.dims) for n, h in self._hook_points.items()}

    def select_hooks(self, names: str | Iterable[str]) -> list[str]:
        """Expand names and wildcards (`blocks.*.attn.hook_pattern`) to hook names, in model order."""
        patterns = (names,) if isinstance(names, str) else tuple(names)
        if patterns not in self._selections:
            self._selections[patterns] = tuple(self._select(patterns))
        return list(self._selections[patterns])

    def _select(self, patterns: tuple[str, ...]) -> list[str]:
        selected = []
        for pattern in patterns:
            matches = [n for n in self._hook_points if fnmatch.fnmatchcase(n, pattern)]
            if not matches:
                close = difflib.get_close_matches(pattern, self._hook_points, n=3)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise KeyError(
                    f"no hook matches '{pattern}'.{hint} `vptlens info MODEL WEIGHTS` lists every hook name."
                )
            selected += [m for m in matches if m not in selected]
        order = {n: i for i, n in enumerate(self._hook_points)}
        return sorted(selected, key=order.__getitem__)

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str, HookFn]]) -> Iterator[None]:
        """Attach `fn(x, *, hook) -> x | None` to hooks (names or wildcards) for the `with` block."""
        attached: list[tuple[HookPoint, HookFn]] = []
        try:
            for pattern, fn in fwd_hooks:
                if not callable(fn):
                    raise TypeError(f"hook function for '{pattern}' is not callable: {fn!r}")
                for name in self.select_hooks(pattern):
                    hook = self._hook_points[name]
                    hook.fns.append(fn)
                    attached.append((hook, fn))
            yield
        finally:
            for hook, fn in attached:
                hook.fns.remove(fn)

    def reset_hooks(self) -> None:
        """Remove every hook function (for use after an interrupted session)."""
        for hook in self._hook_points.values():
            hook.fns.clear()

    @contextmanager
    def _caching(self, names: str | Iterable[str], detach: bool) -> Iterator[dict[str, list[Tensor]]]:
        store: dict[str, list[Tensor]] = {n: [] for n in self.select_hooks(names)}

        def save(x: Tensor, *, hook: HookPoint) -> None:
            store[hook.name].append(x.detach() if detach else x)

        with self.hooks([(n, save) for n in store]):
            yield store

    @contextmanager
    def _step_mode(self, step: bool) -> Iterator[None]:
        previous = self._hook_mode.step
        self._hook_mode.step = step
        try:
            yield
        finally:
            self._hook_mode.step = previous


def concat_cache(store: dict[str, list[Tensor]], dims: dict[str, str]) -> dict[str, Tensor]:
    """Join the per-chunk activations of a sequence call along their time axis (every hook has one)."""
    return {
        name: chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=dims[name].split().index("t"))
        for name, chunks in store.items()
        if chunks
    }
