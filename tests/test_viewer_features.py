"""The viewer's SAE feature browser, steering and experiment pages, through the HTTP API, against brute force."""

import httpx
import numpy as np
import pytest
import torch
from test_viewer_helpers import D_SAE, HOOK, served, start, wait_job, wait_ready

from vptlens.agents.actions import VPT_BUTTONS, class_to_buttons
from vptlens.agents.policy import N_BUTTON_CLASSES, N_CAMERA_CLASSES
from vptlens.probes.labels import compute_label
from vptlens.probes.sae import SAE
from vptlens.probes.sae.dashboard_data import lift
from vptlens.recordings.replayer import EpisodeReplayer, load_recording_policy
from vptlens.recordings.store import Run
from vptlens.viewer.actions import LABELS, key_probabilities
from vptlens.viewer.app import make_app
from vptlens.viewer.registry import Registry


@pytest.fixture(scope="module")
def data(tiny_run, tmp_path_factory):
    return served(tiny_run, tmp_path_factory.getbasetemp() / "viewer")


@pytest.fixture(scope="module")
def client(data, tmp_path_factory):
    registry = Registry.from_paths([data.run, data.sae, data.experiment])
    url, stop = start(make_app(registry, tmp_path_factory.mktemp("work")))
    with httpx.Client(base_url=url, timeout=120) as c:
        yield c
    stop()


@pytest.fixture(scope="module")
def codes(data):
    """Every step's latent codes, computed in one go: (steps, latents), the run's episodes in order."""
    episodes = Run.open(data.run).episodes()
    acts = np.concatenate([np.asarray(e.activation(HOOK)[:], np.float32) for e in episodes])
    with torch.no_grad():
        return SAE.load(data.sae).encode(torch.from_numpy(acts)).numpy(), episodes


def test_every_latent_is_listed_with_its_statistics(client, codes):
    z, episodes = codes
    first = client.get("/api/saes/s0/latents")
    assert first.status_code in (200, 202)  # the index is built in the background
    latents = wait_ready(client, "/api/saes/s0/latents").json()
    cols = latents["columns"]
    assert latents["d_sae"] == D_SAE and latents["n_steps"] == len(z) == 512
    fires = z > 0
    np.testing.assert_array_equal(cols["n_fire"], fires.sum(0))
    np.testing.assert_allclose(cols["firing_rate"], fires.mean(0), atol=1e-6)
    np.testing.assert_allclose(cols["max_act"], z.max(0), rtol=1e-4)
    with np.errstate(invalid="ignore"):
        mean = np.where(fires.any(0), (z * fires).sum(0) / fires.sum(0), np.nan)
    np.testing.assert_allclose(np.array(cols["mean_act"], float), mean, rtol=1e-4)
    assert len(cols["top"]) == D_SAE and "attack" in latents["keys"]
    (sae,) = client.get("/api/saes").json()["saes"]
    assert sae["run"] == "r0" and sae["hook"] == HOOK and sae["problem"] is None


def test_lift_and_correlation_columns_match_brute_force(client, codes):
    z, episodes = codes
    wait_ready(client, "/api/saes/s0/latents")
    fires = z > 0
    attack = np.concatenate([np.asarray(e.minerl_action("attack")[:]) > 0 for e in episodes])
    got = np.array(client.get("/api/saes/s0/column?name=lift:key:attack").json()["values"], float)
    expected = lift((fires & attack[:, None]).sum(0), fires.sum(0), np.full(D_SAE, attack.sum()), len(z))
    np.testing.assert_allclose(got, expected, rtol=1e-3)

    values, valid = zip(*(compute_label("villager_visible", e) for e in episodes))
    y, ok = np.concatenate(values), np.concatenate(valid)
    corr = np.array(client.get("/api/saes/s0/column?name=corr:villager_visible").json()["values"], float)
    for s in np.flatnonzero(fires.sum(0) > 1)[:10]:
        if np.std(y[ok]) > 0:
            np.testing.assert_allclose(corr[s], np.corrcoef(z[ok, s], y[ok])[0, 1], atol=1e-3)
    for bad in ("lift:key:nope", "corr:nope", "sum:all"):
        answer = client.get(f"/api/saes/s0/column?name={bad}")
        assert answer.status_code == 422 and ("give" in answer.json()["error"] or "unknown" in answer.json()["error"])


def test_a_latent_page_has_its_examples_trace_and_histogram(client, codes):
    z, episodes = codes
    wait_ready(client, "/api/saes/s0/latents")
    s = int(np.argmax((z > 0).sum(0)))
    page = client.get(f"/api/saes/s0/latents/{s}").json()
    assert "error" not in page, page["error"]
    column = z[:, s]
    assert page["n_fire"] == int((column > 0).sum()) and page["histogram"]["counts"][0] >= 0
    assert sum(page["histogram"]["counts"]) == page["n_fire"]
    top = np.argsort(-column, kind="stable")[:16]
    assert [(e["episode"], e["step"]) for e in page["top"]] == [(f"r0e{g // 128}", int(g % 128)) for g in top]
    for example in page["top"][:3]:
        g = int(example["episode"][3:]) * 128 + example["step"]
        assert example["activation"] == pytest.approx(column[g], rel=1e-4)
        window = column[g - (example["step"] - example["context_start"]) :][: len(example["context"])]
        np.testing.assert_allclose(example["context"], window, atol=1e-3)
    for interval in page["quantiles"]:
        assert all(interval["lo"] < e["activation"] <= interval["hi"] + 1e-6 for e in interval["examples"])
    assert sum(i["count"] for i in page["quantiles"]) == page["n_fire"]
    trace = client.get(f"/api/saes/s0/latents/{s}/trace?episode=r0e2").json()["values"]
    np.testing.assert_allclose(trace, column[256:384], atol=1e-3)
    assert client.get(f"/api/saes/s0/latents/{D_SAE}").status_code == 422
    assert client.get(f"/api/saes/s0/latents/{s}/trace?episode=r9e0").status_code == 422


def test_a_latents_effect_reads_as_per_key_probabilities(client, codes):
    z, _ = codes
    wait_ready(client, "/api/saes/s0/latents")
    s = int(np.argmax((z > 0).sum(0)))
    effect = client.get(f"/api/saes/s0/latents/{s}/effect").json()
    assert effect["labels"] == list(LABELS) and effect["n_examples"] == 8
    clean, without = np.array(effect["clean"]), np.array(effect["without_latent"])
    assert np.all((clean >= 0) & (clean <= 1)) and np.all((without >= 0) & (without <= 1))
    np.testing.assert_allclose(effect["delta"], without - clean, atol=2e-5)
    assert effect["kl_buttons"] >= 0 and effect["kl_camera"] >= 0


def test_key_probabilities_by_hand():
    pressed, camera_off = class_to_buttons(np.arange(N_BUTTON_CLASSES))
    # all the mass on one class that presses forward + attack with the camera on, the camera head on "left and up"
    target = int(
        np.flatnonzero(
            pressed[:, VPT_BUTTONS.index("forward")]
            & pressed[:, VPT_BUTTONS.index("attack")]
            & ~camera_off
            & (pressed.sum(1) == 2)
        )[0]
    )
    buttons = torch.full((N_BUTTON_CLASSES,), -1e9)
    buttons[target] = 0
    camera = torch.full((N_CAMERA_CLASSES,), -1e9)
    camera[2 * 11 + 1] = 0  # pitch bin 2 (up), yaw bin 1 (left)
    p = dict(zip(LABELS, key_probabilities(buttons, camera)))
    assert p["forward"] == p["attack"] == p["camera moves"] == p["camera ←"] == p["camera ↑"] == pytest.approx(1)
    assert p["back"] == p["jump"] == p["camera →"] == p["camera ↓"] == pytest.approx(0)
    uniform = dict(zip(LABELS, key_probabilities(torch.zeros(N_BUTTON_CLASSES), torch.zeros(N_CAMERA_CLASSES))))
    assert uniform["camera ←"] == pytest.approx(uniform["camera moves"] * 55 / 121)


def test_open_loop_steering_from_a_step(client, data):
    start, n = 40, 12
    ablate = client.post(
        "/api/episodes/r0e1/steer",
        json={"edit": {"kind": "head_ablation", "heads": ["1.*"]}, "start": start, "n_steps": n},
    )
    assert ablate.status_code == 200, ablate.text
    result = ablate.json()
    assert result["steps"] == list(range(start, start + n)) and result["labels"] == list(LABELS)
    # the clean row is the recording's agent stepping from the recorded memory
    episode = Run.open(data.run).episodes()[1]
    replayer = EpisodeReplayer(episode, policy=load_recording_policy(episode))
    ((_, state),) = replayer.states([start])
    reference = []
    with torch.no_grad():
        for t in range(start, start + n):
            out, state = replayer.step(t, state)
            reference.append(key_probabilities(out.buttons_logits[0], out.camera_logits[0]))
    np.testing.assert_allclose(result["clean"], reference, atol=1e-4)
    assert max(result["kl_buttons"]) > 0 and not np.allclose(result["clean"], result["edited"])
    # an edit that changes nothing changes nothing
    same = client.post(
        "/api/episodes/r0e1/steer",
        json={
            "edit": {"kind": "latent_clamp", "sae": "s0", "latents": [0, 1, 2], "scale": 1.0},
            "start": start,
            "n_steps": 4,
        },
    ).json()
    np.testing.assert_array_equal(same["clean"], same["edited"])
    steer = client.post(
        "/api/episodes/r0e1/steer",
        json={
            "edit": {"kind": "steering", "sae": "s0", "latent": 3, "strength": 50.0},
            "start": 0,
            "n_steps": 3,
        },
    ).json()
    assert steer["edit"].startswith(f"steer {HOOK}") and max(steer["kl_buttons"]) > 0
    for body, status, words in (
        ({"edit": {"kind": "head_ablation", "heads": ["1.0"]}, "start": 500}, 422, "out of range"),
        ({"edit": {"kind": "latent_clamp", "sae": "s7", "latents": [0], "value": 0}}, 404, "no SAE"),
        ({"edit": {"kind": "patch", "hook": HOOK}}, 422, "the viewer makes"),
        ({"edit": {"kind": "head_ablation", "heads": ["5.0"]}}, 422, "layers 0..1"),
    ):
        answer = client.post("/api/episodes/r0e1/steer", json=body)
        assert answer.status_code == status and words in answer.json()["error"], answer.text


def test_the_experiment_page_links_cells_to_their_episodes(client):
    x = client.get("/api/experiments/x0").json()
    assert x["title"] == "tiny_study" and [c["edit"] for c in x["cells"]] == ["none", "ablate_L1"]
    for cell in x["cells"]:
        assert len(cell["episodes"]) == 2
        for episode in cell["episodes"]:
            assert set(episode["metrics"]) >= {"target_hit", "hits"}
            assert client.get(f"/api/episodes/{episode['id']}").json()["length"] == 16
    assert {c["factor"] for c in x["results"]["comparisons"]} == {"edit"}


def test_closed_loop_launch_records_an_experiment_it_then_serves(client):
    answer = client.post(
        "/api/episodes/r0e0/closed_loop", json={"edit": {"kind": "head_ablation", "heads": ["0.1"]}, "n_steps": 8}
    )
    assert answer.status_code == 202, answer.text
    job = wait_job(client, answer.json()["pending"])
    assert job["status"] == "done", job
    x = client.get(f"/api/experiments/{job['result']['experiment']}").json()
    assert [c["edit"] for c in x["cells"]] == ["none", "edit"]
    (edited,) = x["cells"][1]["episodes"]
    view = client.get(f"/api/episodes/{edited['id']}").json()
    assert view["length"] == 8 and view["intervention"]["heads"] == ["0.1"]
    assert view["seed"] == client.get("/api/episodes/r0e0").json()["seed"]
    assert any(j["id"] == job["id"] for j in client.get("/api/jobs").json()["jobs"])


def _reference_saliency(episode, t: int) -> np.ndarray:
    """|d log pi(a_t) / d frame_t|, channel max, blurred: computed here from the replayer directly."""
    import cv2

    from vptlens.agents.distributions import log_prob

    replayer = EpisodeReplayer(episode, policy=load_recording_policy(episode))
    ((_, state),) = replayer.states([t])
    frame = replayer.frames(t, t + 1)[0].float().requires_grad_(True)
    buttons = torch.tensor([int(episode.action("buttons")[t])])
    camera = torch.tensor([int(episode.action("camera")[t])])
    with torch.enable_grad():
        out, _ = replayer.step(t, state, frame=frame)
        (grad,) = torch.autograd.grad(log_prob(out, buttons, camera).sum(), frame)
    return cv2.GaussianBlur(grad.abs().amax(-1).numpy(), (0, 0), 2.0)


def test_saliency_overlay_is_the_replayed_gradient_on_one_scale(client, data):
    import cv2

    scale = client.get("/api/episodes/r0e2/saliency_scale").json()
    assert scale["scale"] > 0 and scale["samples"] == 8
    episode = Run.open(data.run).episodes()[2]
    for block, step in ((2, 40), (3, 61)):  # block 3 continues from the state block 2 left
        png = client.get(f"/api/episodes/r0e2/saliency/{block}")
        assert png.headers["content-type"] == "image/png"
        sprite = cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_UNCHANGED)
        assert sprite.shape == (512, 512, 4)
        i = step - 16 * block
        alpha = sprite[(i // 4) * 128 : (i // 4 + 1) * 128, (i % 4) * 128 : (i % 4 + 1) * 128, 3].astype(float)
        expected = 0.7 * 255 * np.clip(_reference_saliency(episode, step) / scale["scale"], 0, 1)
        assert np.abs(alpha - expected).max() <= 2
    assert client.get("/api/episodes/r0e2/saliency/8").status_code == 422
