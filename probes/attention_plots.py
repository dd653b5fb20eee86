"""The figures and the index page of `vptlens attention`, drawn from an `AttentionResult` (see `attention.py`)."""

from pathlib import Path

import numpy as np

from vptlens.probes import report
from vptlens.probes.attention_stats import lag_order, valid_lags
from vptlens.recordings.store import Episode


def _positive(v: np.ndarray) -> np.ndarray:
    """NaN where not > 0: a log axis drops the masked lags instead of clipping them."""
    return np.where(v > 0, v, np.nan)


def _head_of(name: str) -> tuple[int, int]:
    layer, head = name[1:].split("H")
    return int(layer), int(head)


def plot_profiles(result, layer: int, cfg, path: Path) -> Path:
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    prof, n_heads = result.profiles[layer], result.n_heads
    kinds = {h["head"]: h for h in result.heads if h["layer"] == layer}
    n_cols = min(n_heads, 4)
    n_rows = -(-n_heads // n_cols)
    fig = report.new_figure(figsize=(3.6 * n_cols, 2.7 * n_rows + 0.6), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False).ravel()
    lags = np.arange(result.memory_length + 1)
    band = f"{cfg.confidence:.0%} CI, bootstrap over episodes"
    for head, ax in enumerate(axes):
        if head >= n_heads:
            ax.set_visible(False)
            continue
        ax.fill_between(
            lags, _positive(prof["ci_low"][head]), _positive(prof["ci_high"][head]), alpha=0.3, color="C0", lw=0
        )
        ax.plot(lags, _positive(prof["mean"][head]), color="C0", lw=1.4, marker=".", ms=3)
        ax.axvspan(-0.5, cfg.recent_lags - 0.5, color="C1", alpha=0.12, lw=0)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        share = kinds[head]["features"]["recent_share"]
        share = "n/a" if share is None else f"{share:.2f}"
        ax.set_title(f"head {head}: {kinds[head]['kind']} (last {cfg.recent_lags}: {share})", fontsize=10)
        ax.grid(alpha=0.3, which="both", lw=0.5)
    for ax in axes[-n_cols:]:
        ax.set_xlabel("lag (frames back)")
    for ax in axes[::n_cols]:
        ax.set_ylabel("mean attention")
    fig.suptitle(f"Layer {layer}: attention by lag (line: mean over valid steps; band: {band}; "
                 f"orange: last {cfg.recent_lags} frames)", fontsize=10)  # fmt: skip
    return report.save_figure(fig, path, dpi=100)


def plot_heatmap(result, path: Path) -> Path:
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    layers, n_heads = result.layers, result.n_heads
    stack = np.stack([result.profiles[layer]["mean"] for layer in layers])
    positive = stack[np.isfinite(stack) & (stack > 0)]
    norm = LogNorm(vmin=max(positive.min(), positive.max() * 1e-4), vmax=positive.max()) if positive.size else None
    cmap = colormaps["magma"].with_extremes(bad="0.85")
    fig = report.new_figure(figsize=(10, 0.9 + (0.28 * n_heads + 0.7) * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), 1, squeeze=False)[:, 0]
    for ax, layer, grid in zip(axes, layers, stack, strict=True):
        im = ax.imshow(np.where(grid > 0, grid, np.nan), aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_ylabel(f"L{layer} head")
        ax.set_yticks(range(n_heads))
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel("lag (frames back)")
    fig.colorbar(im, ax=list(axes), label="mean attention (log)", shrink=0.9)
    fig.suptitle("Mean attention by lag, heads x lag per layer (grey: no mass, e.g. the masked lag M)", fontsize=10)
    return report.save_figure(fig, path, dpi=100)


def plot_clusters(result, path: Path) -> Path:
    """One panel per cluster of heads: each member's lag-profile shape (thin) and the cluster's mean (thick)."""
    clusters = result.clusters
    fig = report.new_figure(figsize=(3.6 * len(clusters), 3.2), layout="constrained")
    axes = fig.subplots(1, len(clusters), squeeze=False)[0]
    lags = np.arange(result.memory_length + 1)
    for ax, cluster in zip(axes, clusters, strict=True):
        for name in cluster["heads"]:
            layer, head = _head_of(name)
            ax.plot(lags, _positive(result.profiles[layer]["shape"][head]), lw=0.6, alpha=0.5, color="C0")
        ax.plot(lags, _positive(cluster["mean_shape"]), lw=2.0, color="C3")
        ax.set_yscale("log")
        kinds = ", ".join(f"{k} {n}" for k, n in cluster["kinds"].items() if n)
        n = len(cluster["heads"])
        ax.set_title(f"cluster {cluster['cluster']}: {n} head{'s' if n != 1 else ''}\n({kinds})", fontsize=9)
        ax.set_xlabel("lag (frames back)")
    axes[0].set_ylabel("share of the head's mass (log)")
    fig.suptitle("Heads clustered by lag-profile shape (average linkage, Hellinger distance); red: cluster mean",
                 fontsize=10)  # fmt: skip
    return report.save_figure(fig, path, dpi=100)


def plot_shares(result, cfg, path: Path) -> Path:
    layers, n_heads = result.layers, result.n_heads
    fig = report.new_figure(figsize=(max(6.0, 0.35 * n_heads * len(layers) + 2), 3.6), layout="constrained")
    ax = fig.subplots()
    x, labels = 0, []
    for i, layer in enumerate(layers):
        sh = result.shares[layer]
        xs = np.arange(n_heads) + x
        err = np.stack([sh["mean"] - sh["ci_low"], sh["ci_high"] - sh["mean"]])
        ax.bar(xs, sh["mean"], yerr=err, color=f"C{i % 10}", capsize=2, label=f"layer {layer}")
        labels += [f"L{layer}h{h}" for h in range(n_heads)]
        x += n_heads + 1
    ticks = [j + (n_heads + 1) * i for i in range(len(layers)) for j in range(n_heads)]
    ax.set_xticks(ticks, labels, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.axhline(cfg.recent_head_min_share, color="grey", ls="--", lw=0.8)
    ax.set_ylabel(f"share on last {cfg.recent_lags} frames")
    ax.set_title(f"Share of attention on lags 0..{cfg.recent_lags - 1}\n(error bars: {cfg.confidence:.0%} CI, "
                 "bootstrap over episodes; dashed: 'recent' head threshold)", fontsize=10)  # fmt: skip
    ax.legend(fontsize=8, loc="upper right")
    return report.save_figure(fig, path, dpi=100)


def plot_raster(result, episode: Episode, pos: int, cfg, path: Path) -> Path:
    from matplotlib.colors import LogNorm

    layers = [layer for layer in (cfg.raster_layers or result.layers) if layer in result.layers]
    what = "mean over heads" if cfg.raster_head is None else f"head {cfg.raster_head}"
    fig = report.new_figure(figsize=(11, 0.8 + 3.0 * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), 1, squeeze=False, sharex=True)[:, 0]
    for ax, layer in zip(axes, layers, strict=True):
        a = lag_order(episode.attention(layer)[:])
        img = a.mean(1) if cfg.raster_head is None else a[:, cfg.raster_head]
        img = np.where(valid_lags(*img.shape) & (img > 0), img, np.nan)
        finite = img[np.isfinite(img)]
        norm = LogNorm(vmin=max(finite.min(), finite.max() * 1e-3), vmax=finite.max()) if finite.size else None
        im = ax.imshow(img.T, origin="lower", aspect="auto", cmap="viridis", norm=norm, interpolation="nearest")
        fig.colorbar(im, ax=ax, label="attention (log)", pad=0.01)
        hits = [
            (t, t - kf["step"])
            for kf in result.key_frames
            if kf["episode"] == pos
            for t, det_layer, det_head, _ in kf["detections"]
            if det_layer == layer and (cfg.raster_head is None or det_head == cfg.raster_head)
        ]
        if hits:
            ts, ks = np.array(hits).T
            ax.scatter(ts, ks, s=16, facecolors="none", edgecolors="red", lw=1.0, label="key-frame detection")
            ax.legend(fontsize=8, loc="upper left")
        ax.set_ylabel(f"L{layer}: lag (frames back)")
    axes[-1].set_xlabel("step t")
    fig.suptitle(f"{episode.path.name}: attention of each step over its memory ({what}); "
                 "a key frame shows as a diagonal (its lag grows with t)", fontsize=10)  # fmt: skip
    return report.save_figure(fig, path, dpi=100)


def _crosshair_text(crosshair: dict | None) -> str:
    if not crosshair:
        return "-"
    what = crosshair.get("block") or crosshair.get("type") or crosshair.get("entity_type") or ""
    dist = crosshair.get("distance")
    return f"{crosshair.get('kind', '?')} {what}" + (f" at {dist:.1f}" if isinstance(dist, float | int) else "")


def _caption(kf: dict) -> str:
    at = kf["at_max"]
    events = ", ".join(e.get("type", "?") for e in kf["events"] or []) or "none"
    keys = " ".join(kf["keys"] or []) or "-"
    cam = "-" if kf["camera"] is None else f"({kf['camera'][0]:+.0f}, {kf['camera'][1]:+.0f}) deg"
    return (
        f"ep {kf['episode_index']} step {kf['step']} <- t={at['step']} (lag {at['lag']})\n"
        f"ratio {kf['max_ratio']:.1f}, mass {at['mass']:.2f}, L{at['layer']}h{at['head']}\n"
        f"attended {kf['n_steps_attended']} steps, {kf['first_step']}..{kf['last_step']}\n"
        f"events: {events}\nkeys: {keys}, camera {cam}\ncrosshair: {_crosshair_text(kf['crosshair'])}"
    )


def plot_gallery(result, cfg, path: Path) -> Path:
    items = result.key_frames[: cfg.n_gallery]
    if not items:
        fig = report.new_figure(figsize=(6, 1.5))
        fig.text(0.5, 0.5, f"No key frames (ratio >= {cfg.key_ratio}, mass >= {cfg.key_floor}, lag >= "
                 f"{cfg.key_min_lag}).", ha="center", va="center")  # fmt: skip
        return report.save_figure(fig, path, dpi=100)
    n_cols = min(len(items), 3)
    n_rows = -(-len(items) // n_cols)
    fig = report.new_figure(figsize=(4.6 * n_cols, 3.5 * n_rows + 0.5), layout="constrained")
    grids = fig.subfigures(n_rows, n_cols, squeeze=False).ravel()
    for sub, kf in zip(grids, items + [None] * (len(grids) - len(items)), strict=True):
        if kf is None:
            continue
        episode = result.episodes[kf["episode"]]
        left, right = sub.subplots(1, 2)
        for ax, step, title in ((left, kf["step"], "key frame"), (right, kf["at_max"]["step"], "attended from")):
            ax.imshow(np.asarray(episode.frames[step]))
            ax.set_title(f"{title} s={step}" if ax is left else f"{title} t={step}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        sub.supxlabel(_caption(kf), fontsize=8, ha="center")
    fig.suptitle(f"Key frames: past frames drawing >= {cfg.key_ratio}x the head's mean at that lag "
                 f"(and >= {cfg.key_floor}), most detected first", fontsize=11)  # fmt: skip
    return report.save_figure(fig, path, dpi=100)


def plot_events(ev, path: Path) -> Path:
    """Left: the head-mean event-triggered ratio per layer with its band; right: key frames near events against
    the circular-shift null. `ev` is an `attention_events.EventsResult`."""
    fig = report.new_figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    fig.suptitle(f"Attention around {ev.event}", fontsize=11)
    if ev.reason is not None:  # the same panels, empty, so that every run's report has the figure
        for ax, text in ((left, ev.reason.replace(" in the ", "\nin the ")), (right, "no key-frame test")):
            ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        return report.save_figure(fig, path, dpi=100)
    for i, (layer, c) in enumerate(ev.triggered.items()):
        left.fill_between(ev.lags, _positive(c["mean_ratio_ci_low"]), _positive(c["mean_ratio_ci_high"]),
                          color=f"C{i % 10}", alpha=0.25, lw=0)  # fmt: skip
        left.plot(ev.lags, _positive(c["mean_ratio"]), color=f"C{i % 10}", lw=1.4, label=f"layer {layer}")
    left.axhline(1.0, color="grey", ls="--", lw=0.8)
    left.set_yscale("log")
    left.set_xlabel("lag d (query at event step + d)")
    left.set_ylabel("weight on the event frame / lag profile")
    left.set_title(f"{ev.n_events} event steps: mean over heads (band: {ev.confidence:.0%} CI, bootstrap over "
                   "event steps)", fontsize=9)  # fmt: skip
    left.legend(fontsize=8)
    en = ev.enrichment
    n_key = en["n_key_frames"]
    if n_key:
        dist = en["null_distribution"]
        right.bar(dist["n_near"] / n_key, dist["count"] / dist["count"].sum(), width=0.8 / n_key, color="0.6",
                  label=f"{en['n_permutations']} circular shifts")  # fmt: skip
        right.axvline(en["observed_fraction"], color="C3", lw=2, label="observed")
        ratio = en["enrichment"]
        ratio = "n/a" if isinstance(ratio, report.Null) else f"{ratio:.2f}x"
        right.set_title(f"{en['n_near']} of {n_key} key frames within {en['window']} steps of an event\n(chance "
                        f"{en['expected_fraction']:.3f}; {ratio}; p = {en['p_value']:.3g})", fontsize=9)  # fmt: skip
        right.legend(fontsize=8)
    else:
        right.text(0.5, 0.5, "no key frames", ha="center", va="center", transform=right.transAxes)
    right.set_xlabel("fraction of key frames near an event")
    right.set_ylabel("share of shifts")
    return report.save_figure(fig, path, dpi=100)


def render_figures(result, cfg, out_dir: Path) -> dict[str, str]:
    """Every figure into `out_dir`: {title: file name}."""
    figures = {}
    for layer in result.layers:
        path = plot_profiles(result, layer, cfg, out_dir / f"lag_profiles_L{layer}.png")
        figures[f"lag profiles, layer {layer}"] = path.name
    figures["lag heatmap"] = plot_heatmap(result, out_dir / "lag_heatmap.png").name
    figures["head clusters"] = plot_clusters(result, out_dir / "head_clusters.png").name
    figures["recent share"] = plot_shares(result, cfg, out_dir / "recent_share.png").name
    pos = cfg.raster_episode
    raster_path = out_dir / f"raster_episode{pos}.png"
    figures["raster"] = plot_raster(result, result.episodes[pos], pos, cfg, raster_path).name
    figures["key-frame gallery"] = plot_gallery(result, cfg, out_dir / "key_frames.png").name
    if result.events is not None:
        figures["attention around events"] = plot_events(result.events, out_dir / "attention_events.png").name
    return figures


def _near(ev) -> str:
    if ev.reason is not None:
        return ev.reason
    en = ev.enrichment
    if not en["n_key_frames"]:
        return f"no key frames ({ev.n_events} event steps)"
    return (f"{en['n_near']} of {en['n_key_frames']} within {en['window']} steps (chance "
            f"{en['expected_fraction']:.3f}, p = {en['p_value']:.3g}; {ev.n_events} event steps)")  # fmt: skip


def write_index(out_dir: Path, result, cfg, figures: dict[str, str], summary: dict) -> Path:
    """index.html: the run in numbers, a table of heads (kind, features, cluster), the top key frames, the figures."""
    overview = report.table(
        ["", ""],
        [
            ["episodes", summary["n_episodes"]],
            ["steps", summary["n_steps"]],
            ["layers", ", ".join(map(str, result.layers))],
            ["heads per layer", result.n_heads],
            ["memory length M", result.memory_length],
            ["head kinds", ", ".join(f"{k} {n}" for k, n in result.head_kinds.items())],
            ["key frames (detections)", f"{len(result.key_frames)} ({result.n_detections})"],
            *([] if result.events is None else [[f"key frames near {result.events.event}", _near(result.events)]]),
        ],
    )
    head_rows = []
    for h in result.heads:
        f = h["features"]
        band = result.shares[h["layer"]]
        share = f"{report.fmt(f['recent_share'], 3)} [{report.fmt(band['ci_low'][h['head']], 3)}, " \
                f"{report.fmt(band['ci_high'][h['head']], 3)}]"  # fmt: skip
        head_rows.append([f"L{h['layer']}H{h['head']}", h["kind"], share, f["mean_lag"], f["key_frame_rate"],
                          f["far_peakiness"], f["period"] or "-", f["period_acf"], h["cluster"],
                          h["reason"]])  # fmt: skip
    heads = report.table(
        ["head", "kind", f"share on last {cfg.recent_lags} ({cfg.confidence:.0%} CI)", "mean lag", "key-frame rate",
         "far peakiness", "period", "period acf", "cluster", "why"],
        head_rows, left=(0, 1, 9),
    )  # fmt: skip
    key_rows = [
        [kf["episode_path"], kf["step"], kf["n_steps_attended"], f"{kf['first_step']}..{kf['last_step']}",
         kf["n_detections"], kf["max_ratio"], f"L{kf['at_max']['layer']}H{kf['at_max']['head']}",
         ", ".join(e.get("type", "?") for e in kf["events"] or []) or "-"]
        for kf in result.key_frames[: cfg.n_gallery]
    ]  # fmt: skip
    keys = report.table(["episode", "step", "steps attended", "from..to", "detections", "max ratio", "strongest head",
                         "events"], key_rows, left=(0, 7))  # fmt: skip
    parts = [
        report.Raw("<h1>Attention over time</h1>"),
        report.Raw(f"<p>All numbers: {report.link('attention.json', 'attention.json')}</p>"),
        overview,
        report.Raw("<h2>Heads</h2>"),
        heads,
        report.Raw(f"<h2>Key frames (the {len(key_rows)} most detected)</h2>"),
        keys,
    ]
    for name, file in figures.items():
        parts += [report.Raw(f"<h2>{report.esc(name)}</h2>"), report.Raw(f"<p>{report.img(file, name)}</p>")]
    return report.write_page(out_dir / "index.html", "vpt-lens attention", *parts)
