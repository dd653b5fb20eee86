"""The dashboard rendered: frame grids and plots (PNG), one HTML page per latent and an index, through the shared
report layer (`probes/report.py`). Everything here reads the records `dashboard.compute` returns."""

import math
from pathlib import Path

import cv2
import numpy as np
from jaxtyping import UInt8

from vptlens.probes.report import Raw, esc, fmt, img, link, new_figure, page, save_figure, save_png, table
from vptlens.probes.sae.dashboard_data import HIST_EDGES

# ---------------------------------------------------------------------------------------------- images


def make_grid(
    thumbs: list[UInt8[np.ndarray, "h w 3"]], captions: list[list[str]], columns: int, size: int
) -> UInt8[np.ndarray, "H W 3"]:
    """Thumbnails in rows of `columns`, each with its caption lines on a dark strip below (RGB)."""
    line_h = max(12, size // 9)
    scale = line_h / 30.0
    n_lines = max((len(c) for c in captions), default=1)
    cell_h, pad = size + n_lines * line_h + 6, 4
    n = max(1, len(thumbs))
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    grid = np.full((rows * (cell_h + pad) + pad, cols * (size + pad) + pad, 3), 255, np.uint8)
    for k, (thumb, lines) in enumerate(zip(thumbs, captions)):
        y, x = pad + (k // cols) * (cell_h + pad), pad + (k % cols) * (size + pad)
        grid[y : y + size, x : x + size] = thumb
        grid[y + size : y + cell_h, x : x + size] = 30
        for j, line in enumerate(lines):
            baseline = y + size + (j + 1) * line_h
            cv2.putText(grid, line, (x + 3, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return grid


def plot_histogram(hist: np.ndarray, max_act: float, edges_q: np.ndarray, title: str, path: Path) -> str:
    """The latent's nonzero activations over the fixed log-spaced bins, with its quantile-interval edges."""
    fig = new_figure(figsize=(6.4, 2.8), dpi=100)
    ax = fig.add_subplot()
    nonzero = np.flatnonzero(hist)
    if len(nonzero):
        lo, hi = nonzero[0], nonzero[-1] + 1
        edges = np.concatenate([[HIST_EDGES[0] / 10], HIST_EDGES, [max(10 * HIST_EDGES[-1], max_act)]])
        ax.stairs(hist[lo:hi], edges[lo : hi + 1], fill=True, color="tab:blue")
        for e in edges_q[1:-1]:
            ax.axvline(e, color="tab:orange", lw=1, ls="--")
        ax.axvline(max_act, color="tab:red", lw=1)
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "never fires", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("activation (log scale; dashed: quantile-interval edges, red: max)")
    ax.set_ylabel("steps")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return path.name


def plot_effects(summary: dict, title: str, path: Path) -> str:
    """Bars of the mean change in log-probability of the most increased and decreased button and camera classes."""
    fig = new_figure(figsize=(11, 0.32 * 2 * len(summary["buttons_up"]) + 1.6), dpi=100)
    for k, head in enumerate(("buttons", "camera")):
        ax = fig.add_subplot(1, 2, k + 1)
        items = summary[f"{head}_up"] + summary[f"{head}_down"][::-1]
        values = [it["mean_delta_logprob"] for it in items]
        y = np.arange(len(items))[::-1]
        ax.barh(y, values, color=["tab:green" if v > 0 else "tab:red" for v in values])
        ax.set_yticks(y, [it["label"] for it in items], fontsize=8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("mean change in log-prob (nats)")
        ax.set_title(f"{head} classes", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return path.name


# ---------------------------------------------------------------------------------------------- HTML


def _img(src: str, alt: str) -> Raw:
    return img(f"img/{src}", alt)


def latent_page(latent: dict, images: dict[str, str], context: dict) -> str:
    s = latent["id"]
    parts = [
        Raw(f"<p>{link('index.html', '← all latents')}</p><h1>Latent {esc(s)}</h1>"),
        Raw(f"<p class=small>{esc(context['title'])}</p>"),
        table(
            ["firing steps", "firing rate", "max activation", "mean activation when firing"],
            [[latent["n_fire"], latent["firing_rate"], latent["max_act"], latent["mean_act_when_firing"]]],
            left=(),
        ),
        Raw("<h2>Activation histogram</h2>" + _img(images["hist"], f"histogram of latent {s}")),
        Raw("<h2>Top-activating frames</h2>"),
    ]
    if latent["top_examples"]:
        parts.append(_img(images["top"], f"top-activating frames of latent {s}"))
        rows = [
            [k, context["episode_names"][x["episode"]], x["step"], x["activation"]]
            for k, x in enumerate(latent["top_examples"])
        ]
        examples = table(["#", "episode", "step", "activation"], rows, (1,))
        parts.append(Raw(f"<details><summary>examples</summary>{examples}</details>"))
    else:
        parts.append("This latent never fires on the run.")
    parts.append(
        Raw(
            "<h2>Quantile-interval samples</h2><p class=small>Intervals holding equal shares of the nonzero "
            "activations (edges from the histogram); uniform random samples within each.</p>"
        )
    )
    for q, interval in enumerate(latent["quantile_intervals"]):
        head = f"interval {q + 1}: ({fmt(interval['lo'])}, {fmt(interval['hi'])}], {interval['count']} steps"
        parts.append(Raw(f"<h3>{esc(head)}</h3>"))
        if f"quantile_{q}" in images:
            parts.append(_img(images[f"quantile_{q}"], head))
    parts.append(Raw("<h2>Actions when it fires</h2>"))
    rows = [[a["key"], a["n_both"], a["p_key_given_fire"], a["p_key"], a["lift"]] for a in latent["actions"]]
    parts.append(table(["MineRL key", "steps firing with key", "P(key | fires)", "P(key)", "lift"], rows))
    parts.append(Raw("<h2>Env events when it fires</h2>"))
    if latent["events"]:
        rows = [
            [v["type"], v["n_when_firing"], v["rate_when_firing"], v["n_total"], v["rate_overall"], v["lift"]]
            for v in latent["events"]
        ]
        headers = ["event", "events at firing steps", "per firing step", "events in run", "per step", "lift"]
        parts.append(table(headers, rows))
    else:
        parts.append("No events recorded in the run.")
    parts.append(Raw("<h2>Direct effect on the action heads</h2>"))
    effect = latent.get("direct_effect")
    if effect is None:
        parts.append("Not computed.")
    elif effect["n_examples"] == 0:
        parts.append("No examples (the latent never fires).")
    else:
        parts.append(
            Raw(
                f"<p class=small>Removing z·W_dec[{esc(s)}] from {esc(context['hook_name'])} at each of "
                f"{effect['n_examples']} top steps (mean z {esc(fmt(effect['mean_z']))}): mean KL(clean‖edited) "
                f"buttons {esc(fmt(effect['mean_kl_buttons']))}, camera {esc(fmt(effect['mean_kl_camera']))} nats.</p>"
            )
        )
        parts.append(_img(images["effect"], f"direct effect of latent {s}"))
        for head in ("buttons", "camera"):
            for direction in ("up", "down"):
                rows = [
                    [it["label"], it["class"], it["mean_delta_logprob"], it["mean_clean_prob"]]
                    for it in effect[f"{head}_{direction}"]
                ]
                word = "raised" if direction == "up" else "lowered"
                parts.append(Raw(f"<h3>{esc(head)} classes most {word}</h3>"))
                parts.append(table([f"{head} action", "class", "mean Δ log-prob", "mean clean prob"], rows))
    return page(f"latent {s}", *parts)


def index_page(latents: list[dict], context: dict) -> str:
    rows = []
    for lat in latents:
        actions = [a for a in lat["actions"] if not math.isnan(a["lift"]) and a["n_both"] > 0][:3]
        events = [v for v in lat["events"] if not math.isnan(v["lift"]) and v["n_when_firing"] > 0][:3]
        rows.append(
            [
                lat["id"],
                lat["firing_rate"],
                lat["max_act"],
                ", ".join(f"{v['type']} ×{v['lift']:.2f} ({v['n_when_firing']})" for v in events),
                ", ".join(f"{a['key']} ×{a['lift']:.2f} ({a['n_both']})" for a in actions),
                link(f"latent_{lat['id']}.html", "page"),
            ]
        )
    headers = ["latent", "firing rate", "max act", "top events: lift (count)", "top actions: lift (count)", ""]
    return page(
        "SAE dashboard",
        Raw(f"<h1>SAE latents</h1><p class=small>{esc(context['title'])}</p>"),
        table(headers, rows, (3, 4)),
    )


# ---------------------------------------------------------------------------------------------- writing it all


def _grid(examples: list[dict], thumbs: dict, cfg, path: Path) -> str:
    captions = [[f"ep{x['episode']} t{x['step']}", f"act {x['activation']:.3g}"] for x in examples]
    grid = make_grid([thumbs[(x["episode"], x["step"])] for x in examples], captions, cfg.grid_columns, cfg.thumb_size)
    return save_png(grid, path).name


def write_pages(out: Path, latents: list[dict], thumbs: dict, context: dict, cfg) -> None:
    """Images into out/img/, latent_<id>.html and index.html into `out`; adds each latent's `images` (paths relative
    to `out`). `cfg`: a DashboardConfig (grid_columns, thumb_size)."""
    (out / "img").mkdir(parents=True, exist_ok=True)
    n_steps = context["n_steps"]
    for lat in latents:
        s = lat["id"]
        images = {}
        images["hist"] = plot_histogram(
            np.asarray(lat["histogram"]),
            lat["max_act"],
            np.array([iv["lo"] for iv in lat["quantile_intervals"]] + [lat["max_act"]]),
            f"latent {s}: fires at {lat['n_fire']} of {n_steps} steps ({100 * lat['firing_rate']:.2f}%), "
            f"max {lat['max_act']:.3g}",
            out / "img" / f"hist_{s}.png",
        )
        if lat["top_examples"]:
            images["top"] = _grid(lat["top_examples"], thumbs, cfg, out / "img" / f"top_{s}.png")
        for q, interval in enumerate(lat["quantile_intervals"]):
            if interval["samples"]:
                images[f"quantile_{q}"] = _grid(interval["samples"], thumbs, cfg, out / "img" / f"quantile_{s}_{q}.png")
        effect = lat.get("direct_effect")
        if effect is not None and effect["n_examples"]:
            images["effect"] = plot_effects(
                effect,
                f"latent {s}: direct effect over {effect['n_examples']} top examples",
                out / "img" / f"effect_{s}.png",
            )
        lat["images"] = {k: f"img/{v}" for k, v in images.items()}
        (out / f"latent_{s}.html").write_text(latent_page(lat, images, context))
    (out / "index.html").write_text(index_page(latents, context))
