"""SAE feature dashboards: streaming statistics against brute force, lift, direct effect, the pages."""

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fixture_paths, record_guided_steve1

import vptlens
from vptlens.agents.actions import INVENTORY_CLASS, MINERL_BUTTONS, VPT_BUTTONS
from vptlens.probes import report
from vptlens.probes.sae import SAE, SAEConfig
from vptlens.probes.sae import dashboard as D
from vptlens.probes.sae import dashboard_data as DD
from vptlens.probes.sae import dashboard_html as H
from vptlens.probes.sae import direct_effect as E
from vptlens.probes.sae.splice import kl_divergence
from vptlens.recordings.replayer import EpisodeReplayer
from vptlens.recordings.store import Run


def open_episodes(path):
    return Run.open(path).episodes()


HOOK = "blocks.1.hook_resid_post"


def _sae(d_in: int = 64, d_sae: int = 32, k: int = 4, seed: int = 0) -> SAE:
    """A TopK SAE with random weights (the tied init of `SAE`), reading blocks.1.hook_resid_post."""
    cfg = SAEConfig(d_in=d_in, d_sae=d_sae, architecture="topk", k=k, l1_coefficient=None, hook_name=HOOK)
    return SAE(cfg, generator=torch.Generator().manual_seed(seed))


def _cfg(tmp_path: Path, run: Path, **kw) -> D.DashboardConfig:
    return D.DashboardConfig(sae=tmp_path / "sae", run=run, out=tmp_path / "out", **kw)


def _brute_force(sae, episodes):
    """Every step's latent activations, action keys and event types, in run order, computed in one go."""
    acts = np.concatenate([np.asarray(e.activation(HOOK)[:], np.float32) for e in episodes])
    with torch.no_grad():
        z = sae.encode(torch.from_numpy(acts)).numpy()
    keys = MINERL_BUTTONS
    key_arr = np.concatenate(
        [np.stack([np.asarray(e.minerl_action(k)[:]) > 0 for k in keys], 1) for e in episodes]
    ).astype(np.float64)
    events = [[ev["type"] for ev in step] for e in episodes for step in e.ground_truth("events")[:]]
    return z, key_arr, events


# ---------------------------------------------------------------------------------------------- pass 1


def test_streaming_stats_match_brute_force(tiny_run, tmp_path):
    episodes = open_episodes(tiny_run)
    sae = _sae()
    # blocks of 64 steps inside 128-step episodes, batches of 50 rows across block boundaries
    cfg = _cfg(tmp_path, tiny_run, n_top=5, block_steps=64, batch_size=50)
    stats, offsets = DD.first_pass(sae, episodes, cfg)
    z, key_arr, events = _brute_force(sae, episodes)
    n = len(z)
    assert stats.n_steps == n == 4 * 128
    assert offsets.tolist() == [0, 128, 256, 384]

    fires = z > 0
    np.testing.assert_array_equal(stats.fire_count.numpy(), fires.sum(0))
    np.testing.assert_allclose(stats.max_act.numpy(), z.max(0), rtol=1e-6)
    np.testing.assert_allclose(stats.act_sum.numpy(), z.astype(np.float64).sum(0), rtol=1e-5)
    hist = stats.histogram()
    for s in range(sae.cfg.d_sae):
        expected = np.bincount(
            np.searchsorted(DD.HIST_EDGES, z[fires[:, s], s], side="right"), minlength=DD.N_HIST_BINS
        )
        np.testing.assert_array_equal(hist[s], expected)
    assert hist.sum() == fires.sum()

    # top-k: same values as a top-k over the whole run, and the same steps where the k-th value is not tied
    values, index = stats.top_values.numpy(), stats.top_index.numpy()
    for s in range(sae.cfg.d_sae):
        order = np.argsort(-z[:, s], kind="stable")
        np.testing.assert_allclose(values[:, s], z[order[:5], s], rtol=1e-6)
        if z[order[4], s] - z[order[5], s] > 1e-4:
            assert set(index[:, s].tolist()) == set(order[:5].tolist())
        for g, v in zip(index[:, s], values[:, s]):  # each index points at the step holding its value
            assert z[g, s] == pytest.approx(v, rel=1e-6)

    # action co-occurrence counts and event counts
    cols = [MINERL_BUTTONS.index(k) for k in stats.action_keys]
    np.testing.assert_array_equal(stats.key_fire.numpy(), fires.T.astype(np.float64) @ key_arr[:, cols])
    np.testing.assert_array_equal(stats.key_total.numpy(), key_arr[:, cols].sum(0))
    for j, t in enumerate(stats.event_types):
        per_step = np.array([ev.count(t) for ev in events], np.float64)
        np.testing.assert_array_equal(stats.event_fire.numpy()[:, j], fires.T.astype(np.float64) @ per_step)
        assert stats.event_total[j] == per_step.sum()


def test_lift_hand_built():
    # 100 steps; the key is pressed at 20; the latent fires at 10, 6 of them with the key: lift = 0.6 / 0.2 = 3
    assert DD.lift(np.array([6.0]), np.array([10.0]), np.array([20.0]), 100)[0] == pytest.approx(3.0)
    out = DD.lift(np.array([0.0, 0.0]), np.array([0.0, 5.0]), np.array([3.0, 0.0]), 10)
    assert np.isnan(out).all()  # never fires / key never pressed

    # the same through the accumulator: 4 steps, latent 0 fires at steps 0 and 1, latent 1 at step 3
    stats = DD.LatentStats(2, 2, ["forward", "attack"], torch.device("cpu"))
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0], [0.0, 3.0]])
    keys = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    events = [["block_broken"], [], ["block_broken", "player_hurt"], ["block_broken"]]
    stats.update(z[:3], torch.arange(3), keys[:3], events[:3])  # two batches, an event type first seen late
    stats.update(z[3:], torch.arange(3, 4), keys[3:], events[3:])
    np.testing.assert_array_equal(stats.key_fire.numpy(), [[2, 1], [0, 1]])
    np.testing.assert_array_equal(stats.key_total.numpy(), [2, 2])
    lifts = DD.lift(stats.key_fire.numpy()[0], np.full(2, 2.0), stats.key_total.numpy(), stats.n_steps)
    np.testing.assert_allclose(lifts, [(2 / 2) / (2 / 4), (1 / 2) / (2 / 4)])  # forward x2, attack x1
    assert stats.event_types == ["block_broken", "player_hurt"]
    np.testing.assert_array_equal(stats.event_fire.numpy(), [[1, 0], [1, 0]])
    np.testing.assert_array_equal(stats.event_total.numpy(), [3, 1])
    np.testing.assert_array_equal(stats.top_values.numpy(), [[2.0, 3.0], [1.0, 0.0]])
    assert stats.top_index.numpy()[:, 0].tolist() == [1, 0] and stats.top_index.numpy()[0, 1] == 3


def test_merge_topk_equals_global_topk():
    g = torch.Generator().manual_seed(1)
    data = torch.randn(300, 7, generator=g)
    values = torch.full((0, 7), -math.inf)
    index = torch.zeros((0, 7), dtype=torch.int64)
    for a in range(0, 300, 37):
        block = data[a : a + 37]
        values, index = DD.merge_topk(values, index, block, torch.arange(a, a + len(block)), 6)
    top = data.topk(6, dim=0)
    assert torch.equal(values, top.values) and torch.equal(index, top.indices)


# ---------------------------------------------------------------------------------------------- pass 2


def test_quantile_edges_and_samples(tiny_run, tmp_path):
    # all mass in one log bin [1, 10^0.1): quartile edges interpolate log-linearly inside it
    hist = np.zeros(DD.N_HIST_BINS, np.int64)
    i = int(np.searchsorted(DD.HIST_EDGES, 1.0, side="right"))
    hist[i] = 8
    lo, hi = float(DD.HIST_EDGES[i - 1]), float(DD.HIST_EDGES[i])
    edges = DD.quantile_edges(hist, 1.2, 4)
    np.testing.assert_allclose(edges[1:3], [lo * (hi / lo) ** 0.25, lo * (hi / lo) ** 0.5], rtol=1e-6)
    assert edges[0] == 0 and edges[-1] == 1.2 and np.all(np.diff(edges) >= 0)

    episodes = open_episodes(tiny_run)
    sae = _sae()
    cfg = _cfg(tmp_path, tiny_run, block_steps=64, batch_size=50, n_per_quantile=5, n_quantile_bins=3)
    stats, offsets = DD.first_pass(sae, episodes, cfg)
    z, _, _ = _brute_force(sae, episodes)
    latents = DD.select_latents(stats.fire_count.numpy(), D.DashboardConfig(sae=Path("x"), run=Path("y"), n_latents=4))
    assert latents == sorted(latents, key=lambda s: (-(z[:, s] > 0).sum(), s))
    hist, max_act = stats.histogram(), stats.max_act.numpy()
    edges = np.stack([DD.quantile_edges(hist[s], float(max_act[s]), 3) for s in latents])
    counts, picked, sampled_z = DD.quantile_samples(sae, episodes, cfg, latents, edges, offsets)
    for j, s in enumerate(latents):
        firing = z[:, s][z[:, s] > 0]
        assert counts[j].sum() == len(firing)
        for q in range(3):  # exact counts per interval (e_q, e_q+1], and every sample inside its interval
            inside = (firing > edges[j, q]) & (firing <= edges[j, q + 1] * (1 + 1e-6))
            assert abs(counts[j, q] - inside.sum()) <= 1
            got = picked[:, j, q][picked[:, j, q] >= 0]
            assert len(got) == min(5, counts[j, q]) and len(set(got.tolist())) == len(got)
            assert np.all((z[got, s] > edges[j, q] * (1 - 1e-6)) & (z[got, s] <= edges[j, q + 1] * (1 + 1e-6)))
            np.testing.assert_allclose(sampled_z[: len(got), j, q], z[got, s], rtol=1e-5)
        # quantile intervals hold about equal shares (edges exact to within a histogram bin)
        assert counts[j].min() >= 0.5 * len(firing) / 3 - 2


# ---------------------------------------------------------------------------------------------- direct effect


def _manual_edit(policy, episode, sae, t: int, latent: int | None):
    """Log-probabilities at step t of a batch-1 replay, with latent's contribution removed at t (None: clean)."""
    frames = torch.from_numpy(np.asarray(episode.frames[: t + 1]))
    state = policy.initial_state(1)
    first = torch.zeros((1, t), dtype=torch.bool)
    first[0, 0] = True
    with torch.no_grad():
        if t:
            _, state = policy.forward(frames[None, :t], first, state)

        def remove(x, *, hook):
            z = sae.encode(x)[:, latent]
            return x - z[:, None] * sae.W_dec[latent]

        hooks = [] if latent is None else [(HOOK, remove)]
        with policy.hooks(hooks):
            out, _ = policy.step(frames[t : t + 1], torch.tensor([t == 0]), state)
    return out.buttons_logits[0].double(), out.camera_logits[0].double()


def test_direct_effect_batched_equals_alone_and_zero_is_exact(tiny_run, vpt_tiny):
    episode = open_episodes(tiny_run)[1]
    sae = _sae()
    t = 40  # past the memory length (32): the state is a full window
    x = torch.from_numpy(np.asarray(episode.activation(HOOK)[t], np.float32))
    z_t = sae.encode(x[None])[0].detach()
    *firing, zeroed = [int(s) for s in torch.nonzero(z_t > 0)[:, 0]]
    silent = int(torch.nonzero(z_t == 0)[0, 0])
    assert len(firing) == 3
    with torch.no_grad():
        sae.W_dec[zeroed] = 0.0  # fires at t but contributes nothing
    examples = [(t, s) for s in firing] + [(t, silent), (t, zeroed), (5, firing[0])]
    rows = E.direct_effects(vpt_tiny, episode, sae, examples, batch_size=4, replay_tolerance=1e-3)  # 2 batches at t
    by_key = {(r.step, r.latent): r for r in rows}
    assert len(rows) == len(examples)

    # removing a zero contribution (z = 0, or a zero decoder row) changes nothing, exactly
    for s in (silent, zeroed):
        r = by_key[(t, s)]
        assert not r.delta_buttons.any() and not r.delta_camera.any() and r.kl_buttons == 0.0
    assert by_key[(t, silent)].z == 0.0 and by_key[(t, zeroed)].z > 0

    # each batched row equals the edited step run alone (batch 1, its own replay)
    clean_b, clean_c = _manual_edit(vpt_tiny, episode, sae, t, None)
    np.testing.assert_allclose(by_key[(t, firing[0])].clean_buttons, clean_b.numpy(), atol=1e-4)
    for s in firing:
        edit_b, edit_c = _manual_edit(vpt_tiny, episode, sae, t, s)
        r = by_key[(t, s)]
        np.testing.assert_allclose(r.delta_buttons, (edit_b - clean_b).numpy(), atol=1e-4)
        np.testing.assert_allclose(r.delta_camera, (edit_c - clean_c).numpy(), atol=1e-4)
        kl = float(kl_divergence(clean_b[None], edit_b[None])[0])
        assert r.kl_buttons == pytest.approx(kl, rel=1e-3, abs=1e-9)
        assert np.abs(r.delta_buttons).max() > 0  # a firing latent with a nonzero decoder row does something
        # z is the latent's value on the live activation; the store holds it rounded to float16
        assert r.z == pytest.approx(float(z_t[s]), rel=1e-2)
    edit_b, _ = _manual_edit(vpt_tiny, episode, sae, 5, firing[0])
    clean5_b, _ = _manual_edit(vpt_tiny, episode, sae, 5, None)
    np.testing.assert_allclose(by_key[(5, firing[0])].delta_buttons, (edit_b - clean5_b).numpy(), atol=1e-4)

    # a policy that did not record the run fails the replay check
    other = copy.deepcopy(vpt_tiny)
    with torch.no_grad():
        other.pi_head["buttons"].linear_layer.bias.add_(1.0 * torch.arange(8641) / 8641)
    with pytest.raises(ValueError, match="not the one that recorded"):
        E.direct_effects(other, episode, sae, [(3, firing[0])])


def test_direct_effect_equals_a_step_from_the_replayers_state(tiny_run, vpt_tiny):
    """One (step, latent): what `direct_effects` reports equals a step computed by hand from the clean memory that
    `EpisodeReplayer.states` gives, with the latent's decoder contribution subtracted in a hook."""
    episode = open_episodes(tiny_run)[2]
    sae = _sae()
    t = 50
    x_t = torch.from_numpy(np.asarray(episode.activation(HOOK)[t], np.float32))
    s = int(torch.argmax(sae.encode(x_t[None])[0]))
    (row,) = E.direct_effects(vpt_tiny, episode, sae, [(t, s)], batch_size=1)

    ((t_state, state),) = list(EpisodeReplayer(episode, policy=vpt_tiny).states([t]))
    assert t_state == t
    frame = torch.from_numpy(np.asarray(episode.frames[t]))[None]
    first = torch.tensor([False])
    z_live = []

    def remove(x, *, hook):
        z = sae.encode(x)[:, s]
        z_live.append(float(z[0]))
        return x - z[:, None] * sae.W_dec[s]

    with torch.no_grad():
        clean, _ = vpt_tiny.step(frame, first, state)
        with vpt_tiny.hooks([(HOOK, remove)]):
            edited, _ = vpt_tiny.step(frame, first, state)
    delta_b = (edited.buttons_logits - clean.buttons_logits)[0].double().numpy()
    delta_c = (edited.camera_logits - clean.camera_logits)[0].double().numpy()
    np.testing.assert_allclose(row.delta_buttons, delta_b, atol=1e-5)
    np.testing.assert_allclose(row.delta_camera, delta_c, atol=1e-5)
    np.testing.assert_allclose(row.clean_buttons, clean.buttons_logits[0].double().numpy(), atol=1e-5)
    kl = float(kl_divergence(clean.buttons_logits.double(), edited.buttons_logits.double())[0])
    assert row.kl_buttons == pytest.approx(kl, abs=1e-5)
    assert row.z == pytest.approx(z_live[0], abs=1e-5) and row.z > 0
    assert np.abs(delta_b).max() > 0


def test_direct_effect_guided_steve1(tmp_path):
    """STEVE-1 with classifier-free guidance: both streams edited; batched rows equal the edited step alone."""
    from vptlens.agents import load_policy

    run = tmp_path / "run"
    goal_np = record_guided_steve1(run, goal_seed=0, cond_scale=2.0, n_episodes=1, n_steps=40, n_envs=1, seed=3,
                                   hooks=("img.hook_out",))  # fmt: skip
    episode = open_episodes(run)[0]
    policy = load_policy(*fixture_paths("steve1_tiny"))
    sae = _sae(k=16)
    t = 36
    rows = E.direct_effects(policy, episode, sae, [(t, s) for s in range(6)], batch_size=4)
    goal = torch.from_numpy(goal_np)[None]
    frames = torch.from_numpy(np.asarray(episode.frames[: t + 1]))
    with torch.no_grad():
        state = policy.initial_state(1, guided=True)
        for i in range(t):
            _, state = policy.step(frames[i : i + 1], torch.tensor([i == 0]), state, goal, 2.0)
        clean, _ = policy.step(frames[t : t + 1], torch.tensor([False]), state, goal, 2.0)
        n_firing = 0
        for r in rows:
            s = r.latent

            def remove(x, *, hook, s=s):
                return x - sae.encode(x)[:, s, None] * sae.W_dec[s]

            with policy.hooks([(HOOK, remove)]):
                edited, _ = policy.step(frames[t : t + 1], torch.tensor([False]), state, goal, 2.0)
            expected = (edited.buttons_logits - clean.buttons_logits)[0].double().numpy()
            np.testing.assert_allclose(r.delta_buttons, expected, atol=1e-4)
            n_firing += r.z > 0
            # z is the conditional stream's; the unconditional stream is edited with its own z
            assert r.z == 0 or np.abs(r.delta_buttons).max() > 0
    assert n_firing >= 1


def test_action_labels():
    assert E.button_label(0) == "noop"
    assert E.button_label(INVENTORY_CLASS) == "inventory"
    from vptlens.agents.actions import buttons_to_class

    pressed = np.zeros((1, 20), bool)
    pressed[0, [VPT_BUTTONS.index("forward"), VPT_BUTTONS.index("attack")]] = True
    c = int(buttons_to_class(pressed, np.array([True]))[0])
    assert E.button_label(c) == "attack+forward, camera"
    assert E.camera_label(60) == "pitch +0.00°, yaw +0.00°"
    assert E.camera_label(10) == "pitch -10.00°, yaw +10.00°"


# ---------------------------------------------------------------------------------------------- pages


def test_html_escapes_text():
    nasty = '<script>alert("x")</script>'
    table = report.table(["h<1>"], [[nasty]])
    assert "<script>" not in table and "&lt;script&gt;" in table and "h&lt;1&gt;" in table
    latent = {
        "id": 3,
        "n_fire": 1,
        "firing_rate": 0.5,
        "max_act": 1.0,
        "mean_act_when_firing": 1.0,
        "top_examples": [],
        "quantile_intervals": [],
        "actions": [{"key": nasty, "n_both": 1, "p_key_given_fire": 1.0, "p_key": 0.5, "lift": 2.0}],
        "events": [
            {"type": nasty, "n_when_firing": 1, "rate_when_firing": 1.0, "n_total": 1, "rate_overall": 0.5, "lift": 2.0}
        ],
    }
    context = {"title": nasty, "hook_name": nasty, "episode_names": [nasty]}
    for page in (H.latent_page(latent, {"hist": "h.png"}, context), H.index_page([latent], context)):
        assert "<script>" not in page and "&lt;script&gt;" in page


def test_main_writes_pages(tiny_run, tmp_path):
    sae = _sae()
    dead = 5
    with torch.no_grad():
        sae.b_enc[dead] = -1e4  # never among the top k: a dead latent
    sae.save(tmp_path / "sae", provenance={"run": str(tiny_run), "note": "random weights <test>"})
    episodes = open_episodes(tiny_run)
    z, _, _ = _brute_force(sae, episodes)
    busiest = int(np.argsort(-(z > 0).sum(0), kind="stable")[0])

    cfg = _cfg(
        tmp_path,
        tiny_run,
        latents=(busiest, dead),
        n_top=6,
        n_quantile_bins=2,
        n_per_quantile=3,
        n_effect_examples=2,
        block_steps=64,
        batch_size=100,
    )
    report = D.main(cfg)
    out = cfg.out
    assert (out / "index.html").is_file() and (out / "dashboard.json").is_file()
    assert json.loads((out / "dashboard.json").read_text()) == report
    prov = report["provenance"]
    assert prov["package_version"] == vptlens.__version__ and prov["sae_cfg"]["hook_name"] == HOOK
    assert prov["sae_cfg"]["provenance"]["note"] == "random weights <test>" and prov["run"] == str(tiny_run)
    assert report["n_steps"] == len(z) and report["firing_counts"] == (z > 0).sum(0).tolist()

    index = (out / "index.html").read_text()
    for s in (busiest, dead):
        page_path = out / f"latent_{s}.html"
        assert f'href="latent_{s}.html"' in index and page_path.is_file()
        page = page_path.read_text()
        images = re.findall(r'src="(img/[^"]+)"', page)
        assert images and all((out / src).is_file() and (out / src).stat().st_size > 1000 for src in images)
    lat, dead_lat = report["latents"]
    assert lat["id"] == busiest and lat["n_fire"] == int((z[:, busiest] > 0).sum())
    assert lat["firing_rate"] == pytest.approx(lat["n_fire"] / len(z))
    assert [x["activation"] for x in lat["top_examples"]] == pytest.approx(np.sort(z[:, busiest])[::-1][:6], rel=1e-5)
    assert sum(iv["count"] for iv in lat["quantile_intervals"]) == lat["n_fire"]
    assert set(lat["images"]) == {"hist", "top", "quantile_0", "quantile_1", "effect"}
    effect = lat["direct_effect"]
    assert effect["n_examples"] == 2 and effect["mean_kl_buttons"] > 0
    used = sorted((e["episode"], e["step"]) for e in effect["examples"])
    assert used == sorted((x["episode"], x["step"]) for x in lat["top_examples"][:2])
    assert all(
        e["z"] == pytest.approx(x["activation"], rel=1e-2)
        for e in effect["examples"]
        for x in lat["top_examples"]
        if (x["episode"], x["step"]) == (e["episode"], e["step"])
    )
    arrays = np.load(out / "direct_effect.npz")
    assert arrays[f"buttons_{busiest}"].shape == (8641,) and arrays[f"camera_{busiest}"].shape == (121,)
    top_up = effect["buttons_up"][0]
    assert top_up["mean_delta_logprob"] == pytest.approx(float(arrays[f"buttons_{busiest}"].max()), rel=1e-5)
    assert top_up["label"] == E.button_label(top_up["class"])

    assert dead_lat["n_fire"] == 0 and dead_lat["top_examples"] == [] and dead_lat["direct_effect"] == {"n_examples": 0}
    assert "never fires" in (out / f"latent_{dead}.html").read_text()
    assert set(dead_lat["images"]) == {"hist"}

    # default selection: the most frequently firing latents
    report = D.main(_cfg(tmp_path, tiny_run, n_latents=3, direct_effect=False, n_per_quantile=0, overwrite=True))
    order = np.argsort(-(z > 0).sum(0), kind="stable")[:3]
    assert [lat["id"] for lat in report["latents"]] == order.tolist()


def test_main_refuses_a_run_without_the_hook(tiny_run, tmp_path):
    sae = SAE(
        SAEConfig(d_in=64, d_sae=8, architecture="topk", k=2, l1_coefficient=None, hook_name="blocks.0.hook_mlp_out")
    )
    sae.save(tmp_path / "sae", provenance={})
    with pytest.raises(KeyError, match="no activation of 'blocks.0.hook_mlp_out'"):
        D.main(_cfg(tmp_path, tiny_run))


def test_dashboard_refuses_bad_inputs_before_writing(tiny_run, tmp_path, capsys):
    """An unrecorded hook or an existing --out fails before any work, and nothing is written."""
    from vptlens.cli import entrypoint

    unrecorded = SAE(
        SAEConfig(d_in=64, d_sae=8, architecture="topk", k=2, l1_coefficient=None, hook_name="blocks.0.hook_mlp_out")
    )
    unrecorded.save(tmp_path / "unrecorded", provenance={})
    _sae().save(tmp_path / "sae", provenance={})
    out = tmp_path / "out"
    with pytest.raises(KeyError, match="recorded hooks: .*blocks.1.hook_resid_post"):
        D.main(D.DashboardConfig(sae=tmp_path / "unrecorded", run=tiny_run, out=out))
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        D.main(_cfg(tmp_path, tiny_run))
    with pytest.raises(ValueError, match="holds the input"):
        D.main(D.DashboardConfig(sae=tmp_path / "sae", run=tiny_run, out=tiny_run.parent, overwrite=True))
    with pytest.raises(ValueError, match="out of range"):
        D.main(_cfg(tmp_path, tiny_run, latents=(99,), overwrite=True))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(["sae", "dashboard", str(tmp_path / "sae"), str(tiny_run), "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
