"""An experiment's report.html: the table with intervals and tests, a forest plot, Kaplan-Meier curves, thumbnails.

Every number comes from `interventions.analysis`; this module only draws. Thumbnails show, per
cell, the agent's frame at its first hit of the target (or its closest look at it) in the first
seeds, each with the command that replays that episode with its attention.
"""

import functools
import math
from pathlib import Path

import numpy as np

from vptlens.interventions.metrics import TimeToEvent
from vptlens.interventions.stats import kaplan_meier
from vptlens.probes.report import Raw, esc, fmt, img, new_figure, page, save_figure, save_png, table

N_THUMBS = 3
_f = functools.partial(fmt, digits=3)


def _num(x) -> float:
    return math.nan if x is None or not isinstance(x, int | float) else float(x)


def forest_plot(result, path: Path) -> Path | None:
    """Each comparison's effect (difference in rate, or mean paired difference) with its interval: one panel per
    metric, each on its own scale."""
    rows = [r for r in result.comparisons if r["kind"] != "time_to_event"]
    if not rows:
        return None
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    heights = [len([r for r in rows if r["metric"] == m]) + 1.2 for m in metrics]
    fig = new_figure(figsize=(8, 0.3 * sum(heights) + 0.6))
    axes = fig.subplots(len(metrics), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics):
        mine = [r for r in rows if r["metric"] == metric]
        for y, r in enumerate(mine):
            effect, low, high = _num(r["effect"]), _num(r["low"]), _num(r["high"])
            color = "C3" if r.get("significant") else "C0"
            if math.isfinite(low) and math.isfinite(high):
                ax.plot([low, high], [-y, -y], color=color, lw=2)
            ax.plot([effect], [-y], "o", color=color)
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set_yticks([-y for y in range(len(mine))], [f"{r['treatment']} vs {r['control']}" for r in mine], fontsize=7)
        ax.set_ylim(-len(mine) + 0.4, 0.6)
        kind = "rate difference" if mine[0]["kind"] == "binary" else "mean paired difference"
        ax.set_title(f"{metric} ({kind})", fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle("Against the control, 95% intervals (red: significant after Holm)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def km_plot(result, metric: str, path: Path) -> Path | None:
    """Kaplan-Meier curves of a time-to-event metric, one per cell."""
    fig = new_figure(figsize=(7.5, 4))
    ax = fig.add_subplot()
    drew = False
    for outcome in result.cells:
        values = [v for v in outcome.values.get(metric, {}).values() if isinstance(v, TimeToEvent)]
        if not values:
            continue
        km = kaplan_meier(values)
        times = [0.0, *km.times]
        survival = [1.0, *km.survival]
        ax.step(times, survival, where="post", label=f"{outcome.cell.label} (events {km.n_events}/{km.n})")
        drew = True
    if not drew:
        return None
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("P(no event yet)")
    ax.set_title(f"Kaplan-Meier: {metric} (censored at the episode's end)", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, path)


def dose_plot(entry: dict, path: Path) -> Path:
    """One swept metric: the outcome per strength with its 95% interval, and Spearman's trend test."""
    result = entry["result"]
    xs, ys, lows, highs = [], [], [], []
    for level in result["levels"]:
        est = level.rate if level.rate is not None else level.mean
        value = est.estimate if level.rate is not None else est.mean
        xs.append(level.strength)
        ys.append(_num(value))
        lows.append(_num(est.low))
        highs.append(_num(est.high))
    fig = new_figure(figsize=(5, 3.2))
    ax = fig.add_subplot()
    ys_a, lo_a, hi_a = np.array(ys), np.array(lows), np.array(highs)
    ax.errorbar(xs, ys_a, yerr=[np.nan_to_num(ys_a - lo_a), np.nan_to_num(hi_a - ys_a)], fmt="o-", capsize=3)
    ax.set_xlabel(entry["param"])
    ax.set_ylabel(("rate of " if entry["kind"] == "binary" else "mean ") + entry["metric"])
    rho, p = result["spearman_rho"], result["p_value"]
    trend = f"Spearman rho {rho:.2f}, p {p:.3g}" if isinstance(rho, float) and isinstance(p, float) else "no trend test"
    ax.set_title(f"{entry['sweep']} in {entry['scene']}: {trend}", fontsize=9)
    return save_figure(fig, path)


def _thumbnail_step(episode, values: dict) -> int:
    """The step to show: the first hit of the target if any, else the middle of the episode."""
    hit = values.get("steps_to_first_hit")
    if isinstance(hit, TimeToEvent) and hit.observed:
        return min(hit.steps, len(episode) - 1)
    return len(episode) // 2


def thumbnails(result, img_dir: Path) -> list:
    rows = []
    for outcome in result.cells:
        cells = []
        for seed in sorted(outcome.episodes)[:N_THUMBS]:
            episode = outcome.episodes[seed]
            values = {m: outcome.values[m].get(seed) for m in outcome.values}
            t = _thumbnail_step(episode, values)
            frame = np.asarray(episode.frames[t])
            name = f"cell{outcome.cell.index:03d}_seed{seed}.png"
            save_png(frame, img_dir / name)
            rel = episode.path.relative_to(result.out)
            command = f"vptlens replay {rel} --out {rel.with_suffix('.mp4')}"
            cells.append(Raw(f"{img(f'img/{name}', f'seed {seed} step {t}')}<br><span class=small>seed {seed}, "
                             f"step {t}</span><br><code class=small>{esc(command)}</code>"))  # fmt: skip
        rows.append([outcome.cell.label, *cells])
    return rows


def _cell_table(result) -> Raw:
    headers = ["cell", "metric", "n", "estimate", "95% interval", "note"]
    rows = []
    for s in result.summaries:
        r = s["result"]
        estimate = r.get("estimate", r.get("mean", r.get("median")))
        low, high = r.get("low"), r.get("high")
        interval = "" if isinstance(low, tuple | list) else f"[{_f(low)}, {_f(high)}]"
        note = r.get("reason") or r.get("median_reason") or ""
        if s["kind"] == "time_to_event":
            estimate, note = r.get("median"), f"median step; events {r.get('n_events')}/{r.get('n')}"
        rows.append([f"{s['cell']}: {s['scene']}, {s['edit']}, {s['agent']}", s["metric"], s["n"], _f(estimate),
                     interval, str(note)])  # fmt: skip
    return table(headers, rows, left=(0, 1, 5))


def _comparison_table(result) -> Raw:
    headers = ["metric", "factor", "treatment", "control", "pairs", "effect", "95% interval", "p", "p (Holm)"]
    rows = [
        [r["metric"], r["factor"], r["treatment"], r["control"], r["n_pairs"], _f(r["effect"]),
         "" if r["low"] is None else f"[{_f(r['low'])}, {_f(r['high'])}]", _f(r["p_value"]), _f(r.get("p_holm"))]
        for r in result.comparisons
    ]  # fmt: skip
    return table(headers, rows, left=(0, 1, 2, 3))


def write_report(result) -> Path:
    out = result.out
    img_dir = out / "img"
    img_dir.mkdir(exist_ok=True)
    spec = result.spec
    parts = [
        Raw(f"<h1>Experiment {esc(spec.name)}</h1>"),
        Raw(f"<p class=small>{esc(spec.description)}</p>") if spec.description else "",
        Raw(
            f"<p>{len(result.cells)} cells x {spec.n_seeds} seeds (the same seeds in every cell, so comparisons are "
            f"paired), {spec.n_steps} steps per episode. Controls: "
            + esc(", ".join(f"{f} = {spec.control_level(f)}" for f in ("agent", "scene", "edit")))
            + ". Data: <a href='results.csv'>results.csv</a>, <a href='results.json'>results.json</a>.</p>"
        ),
        Raw("<h2>Outcomes per cell</h2>"),
        _cell_table(result),
        Raw(
            "<h2>Against the control</h2><p class=small>Binary: rate difference with Newcombe's interval and "
            "exact McNemar; counts and continuous: mean paired difference with a BCa bootstrap interval and the "
            "Wilcoxon signed-rank test; time to event: log-rank. Holm's correction within each metric and factor."
            "</p>"
        ),
        _comparison_table(result) if result.comparisons else "No comparisons: every factor has one level.",
    ]
    if result.beyond_blind:
        headers = ["metric", "agent", "scene", "vs scene", "pairs", "agent's change", "blind's change",
                   "beyond blind", "95% interval", "p", "p (Holm)"]  # fmt: skip
        rows = [
            [r["metric"], r["agent"], r["scene"], r["versus_scene"], r["n_pairs"], _f(r["agent_change"]),
             _f(r["blind_change"]), _f(r["effect"]), "" if r["low"] is None else f"[{_f(r['low'])}, {_f(r['high'])}]",
             _f(r["p_value"]), _f(r.get("p_holm"))]
            for r in result.beyond_blind
        ]  # fmt: skip
        parts += [
            Raw(
                "<h2>Beyond the input-blind control</h2><p class=small>The blind control replays, per seed, the "
                "agent's actions from one scene in every scene, whatever it shows. Per seed: (agent in the scene - "
                "agent in the reference scene) - (blind in the scene - blind in the reference scene), what the scene "
                "changed because of what the agent saw; mean with a BCa bootstrap interval, Wilcoxon signed-rank "
                "test, Holm within each metric.</p>"
            ),
            table(headers, rows, left=(0, 1, 2, 3)),
        ]
    forest = forest_plot(result, img_dir / "forest.png")
    if forest is not None:
        parts.append(img("img/forest.png", "forest plot"))
    for metric in spec.metrics:
        if any(isinstance(v, TimeToEvent) for c in result.cells for v in c.values.get(metric, {}).values()):
            km = km_plot(result, metric, img_dir / f"km_{metric}.png")
            if km is not None:
                parts += [Raw(f"<h2>{esc(metric)}</h2>"), img(f"img/km_{metric}.png", f"Kaplan-Meier {metric}")]
    if result.open_loop:
        headers = ["edit", "scene", "agent", "episodes", "mean dP(attack)", "mean |dP(attack)|", "KL buttons",
                   "KL camera"]  # fmt: skip
        rows = [
            [r["edit"], r["scene"], r["agent"], r["n_episodes"],
             *(f"{_f(r[m]['mean'])} [{_f(r[m]['low'])}, {_f(r[m]['high'])}]" for m in
               ("d_p_attack", "abs_d_p_attack", "kl_buttons", "kl_camera"))]
            for r in result.open_loop
        ]  # fmt: skip
        parts += [
            Raw("<h2>Open loop</h2><p class=small>Each edit applied to the control cell's recorded episodes (the same "
                "frames, so the behaviour cannot diverge): per step the change in P(attack) and the KL of both "
                "heads, averaged over the episode's steps; mean over episodes with a bootstrap 95% interval.</p>"),
            table(headers, rows, left=(0, 1, 2)),
        ]  # fmt: skip
    for i, entry in enumerate(result.dose_responses):
        name = f"dose_{i:03d}.png"
        dose_plot(entry, img_dir / name)
        if i == 0:
            parts.append(Raw("<h2>Dose-response</h2>"))
        parts.append(img(f"img/{name}", f"dose-response {entry['sweep']} {entry['metric']}"))
    if result.fractions:
        rows = [[f["factor"], f["metric"], f"{f['n_significant']}/{f['n']}"] for f in result.fractions]
        parts += [Raw("<h2>Interventions that move behaviour</h2>"), table(["factor", "metric", "significant"], rows)]
    thumbs = thumbnails(result, img_dir)
    parts += [Raw("<h2>Examples</h2><p class=small>The frame of the first hit on the target (else mid-episode)."
                  "</p>"), table(["cell", *[f"seed {i + 1}" for i in range(N_THUMBS)]], thumbs)]  # fmt: skip
    path = out / "report.html"
    path.write_text(page(f"vpt-lens experiment {spec.name}", *parts))
    return path
