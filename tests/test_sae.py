"""Sparse autoencoders: NMSE identities, synthetic dictionary recovery, save/load, the streaming buffer, train/eval."""

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from vptlens.probes.sae import SAE, SAEConfig, SAETrainer, calibrate_thresholds, jumprelu_train, lr_factor
from vptlens.probes.sae import evaluate as sae_eval
from vptlens.probes.sae import train as sae_train
from vptlens.probes.sae.buffer import ActivationBuffer, geometric_median, sample_rows
from vptlens.probes.sae.evaluate import NMSEAccumulator
from vptlens.probes.sae.train import parse_spec
from vptlens.recordings.schema import activation_array
from vptlens.recordings.store import Episode
from vptlens.recordings.writer import ArraySpec, EpisodeWriter

HOOK = "blocks.1.hook_resid_post"


def _cfg(arch: str = "topk", d_in: int = 8, d_sae: int = 32, **kw) -> SAEConfig:
    k = kw.pop("k", 4 if arch in ("topk", "batchtopk") else None)
    l1 = kw.pop("l1_coefficient", 1.0 if arch == "relu" else None)
    l0 = kw.pop("l0_coefficient", 0.1 if arch == "jumprelu" else None)
    return SAEConfig(d_in=d_in, d_sae=d_sae, architecture=arch, k=k, l1_coefficient=l1, l0_coefficient=l0,
                     hook_name=HOOK, **kw)  # fmt: skip


JUMPRELU_L0, JUMPRELU_BW, JUMPRELU_INIT, JUMPRELU_STEPS = 1.0, 0.2, 0.5, 1000  # the defaults, but lambda


# --- NMSE -------------------------------------------------------------------------------------------


def test_nmse_identities():
    rng = np.random.default_rng(0)
    x = 1000.0 + rng.normal(size=(5000, 16))  # a large offset: the naive sum(x^2) - n mean^2 loses digits
    mean = np.broadcast_to(x.mean(0), x.shape)
    acc = NMSEAccumulator(16)
    acc.update(x, mean)
    assert abs(acc.nmse - 1.0) < 1e-12
    assert abs(acc.explained_variance) < 1e-12
    acc = NMSEAccumulator(16)
    acc.update(x, x)
    assert acc.nmse == 0.0
    assert acc.explained_variance == 1.0


def test_nmse_by_hand():
    # mean (1, 1); sum ||x - mean||^2 = 4 x 2 = 8; squared error 1 + 1 = 2 -> 0.25.
    # residual per dim: (1, 0, 0, 0) has centred sum of squares 0.75; two dims -> 1.5; EV = 1 - 1.5/8
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    x_hat = x + np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    acc = NMSEAccumulator(2)
    acc.update(x, x_hat)
    assert acc.nmse == pytest.approx(0.25, abs=1e-15)
    assert acc.explained_variance == pytest.approx(0.8125, abs=1e-15)


def test_nmse_streaming_equals_one_shot():
    rng = np.random.default_rng(1)
    x = 50.0 + rng.normal(size=(1003, 7)) * rng.uniform(0.1, 3, size=7)
    x_hat = x + 0.3 * rng.normal(size=x.shape) + 0.05
    one = NMSEAccumulator(7)
    one.update(x, x_hat)
    chunked = NMSEAccumulator(7)
    cuts = [0, 1, 2, 100, 101, 517, 1003]
    for a, b in zip(cuts[:-1], cuts[1:]):
        chunked.update(x[a:b], x_hat[a:b])
    direct = ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert chunked.nmse == pytest.approx(one.nmse, rel=1e-12)
    assert one.nmse == pytest.approx(direct, rel=1e-12)
    assert chunked.explained_variance == pytest.approx(one.explained_variance, rel=1e-12)


# --- models -----------------------------------------------------------------------------------------


def _synthetic_dictionary(d: int = 32, n_atoms: int = 64, k: int = 3):
    """Unit atoms (Gaussian directions) and a sampler of rows, each the sum of k distinct atoms with coefficients
    uniform in [1, 2], scaled to mean norm sqrt(d) (as training scales inputs). Returns (atoms, batch)."""
    g = torch.Generator().manual_seed(0)
    atoms = torch.randn(n_atoms, d, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)

    def raw(n: int) -> torch.Tensor:
        idx = torch.rand(n, n_atoms, generator=g).argsort(dim=1)[:, :k]
        coef = torch.zeros(n, n_atoms).scatter_(1, idx, 1 + torch.rand(n, k, generator=g))
        return coef @ atoms

    scale = math.sqrt(d) / float(raw(4096).norm(dim=1).mean())
    return atoms, lambda n: raw(n) * scale


def _init_b_dec(sae: SAE, batch) -> None:
    with torch.no_grad():
        sae.b_dec.copy_(torch.from_numpy(geometric_median(batch(2048).double().numpy())).float())


def test_synthetic_dictionary_recovery():
    """Easy setting: d = 32, 64 true unit-norm atoms (Gaussian directions), each sample the sum of exactly 3
    distinct atoms chosen uniformly with coefficients uniform in [1, 2]; no noise. A TopK SAE (k = 3,
    d_sae = 128) trained 600 steps of 512 samples (inputs scaled to mean norm sqrt(d)) must reach a mean
    over true atoms of the best cosine similarity with a decoder row >= 0.9."""
    atoms, batch = _synthetic_dictionary()
    d, k = 32, 3
    sae = SAE(_cfg("topk", d_in=d, d_sae=128, k=k), generator=torch.Generator().manual_seed(1))
    _init_b_dec(sae, batch)
    trainer = SAETrainer(sae, lr=3e-3, n_steps=600, warmup_steps=50, dead_window=512 * 20, aux_k=32)
    for _ in range(600):
        trainer.step(batch(512))
    cos = atoms @ sae.W_dec.detach().T  # (atoms, latents), decoder rows are unit norm
    assert float(cos.max(dim=1).values.mean()) >= 0.9
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(128), atol=1e-5)


def test_jumprelu_pseudo_derivatives_by_hand():
    pre = torch.tensor([[0.5, 1.0, 0.2]], requires_grad=True)
    th = torch.tensor([0.45, 2.0, 0.1])
    log_th = th.log().requires_grad_(True)
    z, l0 = jumprelu_train(pre, log_th, 0.2)
    assert torch.equal(z.detach(), torch.tensor([[0.5, 0.0, 0.2]])) and float(l0.detach()) == 2.0
    z.sum().backward()
    # latent 0 is within bandwidth / 2 of its threshold: d z / d th = -th / bandwidth; the others are not
    assert torch.allclose(log_th.grad, torch.tensor([-0.45 / 0.2 * 0.45, 0.0, 0.0]))
    assert torch.equal(pre.grad, torch.tensor([[1.0, 0.0, 1.0]]))  # through the open gates only
    pre.grad, log_th.grad = None, None
    _, l0 = jumprelu_train(pre, log_th, 0.2)
    l0.sum().backward()
    assert torch.allclose(log_th.grad, torch.tensor([-1 / 0.2 * 0.45, 0.0, 0.0]))
    assert pre.grad is None or not pre.grad.any()  # the L0 term gives pre no gradient


def test_jumprelu_recovers_the_synthetic_dictionary_and_its_sparsity():
    """The TopK recovery setting above (3 of 64 unit atoms per sample, d = 32, d_sae = 128), trained as a JumpReLU
    SAE with an L0 penalty instead of a fixed k: it must find the atoms (mean best cosine >= 0.9) and settle near
    the true sparsity (held-out L0 in [2, 5]) with thresholds it learned."""
    atoms, batch = _synthetic_dictionary()
    d = 32
    cfg = _cfg("jumprelu", d_in=d, d_sae=128, l0_coefficient=JUMPRELU_L0, bandwidth=JUMPRELU_BW,
               init_threshold=JUMPRELU_INIT)  # fmt: skip
    sae = SAE(cfg, generator=torch.Generator().manual_seed(1))
    _init_b_dec(sae, batch)
    n_steps = JUMPRELU_STEPS
    trainer = SAETrainer(sae, lr=3e-3, n_steps=n_steps, warmup_steps=50, l1_warmup_steps=n_steps // 10)
    for _ in range(n_steps):
        stats = trainer.step(batch(512))
    cos = atoms @ sae.W_dec.detach().T
    held_out = sae.encode(batch(4096))
    l0 = float((held_out > 0).sum(-1).float().mean())
    assert float(stats["nmse"]) < 0.2
    assert float(cos.max(dim=1).values.mean()) >= 0.9
    assert 2 <= l0 <= 5
    assert float((sae.thresholds() - JUMPRELU_INIT).abs().max()) > 0.1  # the thresholds were learned


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "relu", "jumprelu"])
def test_decoder_rows_unit_norm_and_parallel_grad_removed(arch):
    torch.manual_seed(0)
    sae = SAE(_cfg(arch))
    trainer = SAETrainer(sae, lr=1e-2, n_steps=20, dead_window=64)
    for _ in range(20):
        stats = trainer.step(torch.randn(64, 8) * 3 + 1)
        assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(32), atol=1e-5)
    assert math.isfinite(float(stats["loss"]))
    loss, _ = trainer.loss(torch.randn(64, 8))
    loss.backward()
    sae.remove_parallel_grad()
    assert float((sae.W_dec.grad * sae.W_dec.detach()).sum(1).abs().max()) < 1e-5


def test_topk_and_batchtopk_activations():
    torch.manual_seed(0)
    topk = SAE(_cfg("topk", k=3))
    z = topk.encode(torch.randn(10, 8))
    assert ((z > 0).sum(1) <= 3).all() and (z >= 0).all()
    batch = SAE(_cfg("batchtopk", k=3))
    trainer = SAETrainer(batch, lr=1e-3, n_steps=30)
    for _ in range(30):
        stats = trainer.step(torch.randn(32, 8))
    assert float(batch.threshold[0]) > 0 and torch.all(batch.threshold == batch.threshold[0])
    assert float(stats["l0"]) == pytest.approx(3.0, abs=1e-6)  # k x batch kept over the whole batch
    x = torch.randn(16, 8)
    z_all = batch.encode(x)
    assert torch.allclose(z_all[:1], batch.encode(x[:1]), atol=1e-6)  # a row ignores the others
    pre = batch.pre_acts(x)
    assert torch.equal(z_all, torch.where(pre > batch.threshold, pre, 0.0))


def test_calibrated_threshold_keeps_k_per_row_on_average():
    torch.manual_seed(0)
    sae = SAE(_cfg("batchtopk", k=3, d_in=8, d_sae=64))
    one = torch.randn(100, 8)
    (th,) = calibrate_thresholds([sae], [one])
    # one batch: exactly the k x b largest are >= th; strictly above it, one fewer (no ties in random data)
    assert int((sae.pre_acts(one) > th).sum()) == 3 * 100 - 1 and float(sae.threshold.max()) == th
    batches = [torch.randn(256, 8) for _ in range(8)]
    calibrate_thresholds([sae], iter(batches))  # streamed
    held_out = sae.encode(torch.randn(4096, 8))
    assert float((held_out > 0).sum(-1).float().mean()) == pytest.approx(3.0, rel=0.1)
    with pytest.raises(ValueError, match="batchtopk"):
        calibrate_thresholds([SAE(_cfg("topk"))], batches)


def test_auxk_engages_only_on_dead_latents():
    torch.manual_seed(0)
    sae = SAE(_cfg("topk", k=2, d_sae=32))
    with torch.no_grad():
        sae.b_enc[16:] = -100.0  # latents 16.. can never fire: they go dead after `dead_window` rows
    trainer = SAETrainer(sae, lr=1e-3, n_steps=10, dead_window=64, aux_k=4)
    x = torch.randn(32, 8)
    first, second, third = (trainer.step(x) for _ in range(3))
    assert float(first["aux"]) == 0.0 and float(second["aux"]) == 0.0  # 32, then 64 rows seen before the step
    assert float(third["aux"]) > 0 and float(third["dead_fraction"]) >= 0.5
    assert bool((trainer.rows_since_fired[16:] == 96).all())


@settings(max_examples=20, deadline=None)
@given(
    arch=st.sampled_from(["topk", "batchtopk", "relu", "jumprelu"]),
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=3),
    d_in=st.integers(1, 6),
    mult=st.integers(1, 3),
)
def test_encode_decode_shapes(arch, lead, d_in, mult):
    sae = SAE(_cfg(arch, d_in=d_in, d_sae=d_in * mult, k=1 if arch in ("topk", "batchtopk") else None))
    x = torch.randn(*lead, d_in)
    z = sae.encode(x)
    assert z.shape == (*lead, d_in * mult) and (z >= 0).all()
    assert sae.decode(z).shape == x.shape and sae(x).shape == x.shape


def test_bad_configs():
    with pytest.raises(ValueError, match="architecture must be one of"):
        _cfg("gated")
    with pytest.raises(ValueError, match="l0_coefficient"):
        _cfg("jumprelu", l0_coefficient=None)
    with pytest.raises(ValueError, match="bandwidth"):
        _cfg("jumprelu", bandwidth=0.0)
    with pytest.raises(ValueError, match="k"):
        _cfg("topk", k=0)
    with pytest.raises(ValueError, match="l1_coefficient"):
        _cfg("relu", l1_coefficient=None)
    with pytest.raises(ValueError, match="topk:k=INT"):
        parse_spec("topk:l1=3")
    assert parse_spec("relu:l1=5") == ("relu-l1_5", "relu", None, 5.0)
    assert parse_spec("batchtopk:k=32") == ("batchtopk-k_32", "batchtopk", 32, None)
    assert parse_spec("jumprelu:l0=0.5") == ("jumprelu-l0_0.5", "jumprelu", None, 0.5)
    with pytest.raises(ValueError, match="jumprelu:l0=FLOAT"):
        parse_spec("jumprelu:l1=3")


def test_lr_schedule():
    assert lr_factor(0, 100, 10, "linear", 0.2) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "linear", 0.2) == 1.0
    assert lr_factor(79, 100, 10, "linear", 0.2) == 1.0
    assert lr_factor(90, 100, 10, "linear", 0.2) == pytest.approx(0.5)
    assert lr_factor(10, 100, 10, "cosine", 0.2) == 1.0
    assert lr_factor(55, 100, 10, "cosine", 0.2) == pytest.approx(0.5)


# --- save / load ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "relu", "jumprelu"])
def test_save_load_round_trip_folds_scale(tmp_path, arch):
    torch.manual_seed(0)
    sae = SAE(_cfg(arch))
    trainer = SAETrainer(sae, lr=1e-2, n_steps=10)
    scale = 0.37
    x = torch.randn(64, 8) * 5 + 2
    for _ in range(10):
        trainer.step(x * scale)
    raw = sae.fold_scale(scale)
    raw.save(tmp_path / "sae", {"run": "/runs/r", "steps": 10, "seed": 0, "episodes": ["episode_000000.zarr"]})
    loaded = SAE.load(tmp_path / "sae")
    with torch.no_grad():
        expected = sae(x * scale) / scale  # the trained model on scaled inputs, mapped back to raw units
        assert torch.allclose(loaded(x), expected, atol=1e-5, rtol=1e-5)
        assert torch.allclose(loaded.encode(x), sae.encode(x * scale) / scale, atol=1e-5, rtol=1e-5)
        assert torch.equal(loaded(x), raw(x))
    assert torch.allclose(loaded.W_dec.norm(dim=1), torch.ones(32), atol=1e-5)
    assert loaded.cfg == sae.cfg and loaded.cfg.provenance["steps"] == 10
    cfg_json = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg_json["d_in"] == 8 and cfg_json["d_sae"] == 32 and cfg_json["hook_name"] == HOOK
    assert cfg_json["hook_layer"] == 1 and cfg_json["normalize_activations"] == "none"
    assert cfg_json["vptlens_architecture"] == arch and cfg_json["provenance"]["run"] == "/runs/r"
    names = set(load_file(str(tmp_path / "sae" / "sae_weights.safetensors")))
    thresholded = arch in ("batchtopk", "jumprelu")  # SAELens's JumpReLU layout: `threshold`, in raw units
    assert names == {"W_enc", "W_dec", "b_enc", "b_dec"} | ({"threshold"} if thresholded else set())
    if arch == "jumprelu":
        assert cfg_json["architecture"] == "jumprelu" and cfg_json["l0_coefficient"] == 0.1
        assert torch.allclose(loaded.thresholds(), sae.log_threshold.exp().detach() / scale)
        bad = {**load_file(str(tmp_path / "sae" / "sae_weights.safetensors")), "threshold": torch.zeros(32)}
        save_file(bad, str(tmp_path / "sae" / "sae_weights.safetensors"))
        with pytest.raises(ValueError, match="must all be > 0"):
            SAE.load(tmp_path / "sae")


def test_load_refuses_bad_files(tmp_path):
    sae = SAE(_cfg("topk"))
    sae.save(tmp_path / "ok", {})
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        SAE.load(tmp_path / "missing")
    bad = tmp_path / "corrupt"
    sae.save(bad, {})
    (bad / "sae_weights.safetensors").write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        SAE.load(bad)
    wrong = tmp_path / "wrong_shape"
    sae.save(wrong, {})
    tensors = {n: p.detach() for n, p in sae.named_parameters()}
    save_file({**tensors, "W_enc": torch.zeros(8, 16)}, str(wrong / "sae_weights.safetensors"))
    with pytest.raises(ValueError, match="'W_enc' has shape"):
        SAE.load(wrong)
    extra = tmp_path / "extra_key"
    sae.save(extra, {})
    save_file({**tensors, "threshold": torch.zeros(32)}, str(extra / "sae_weights.safetensors"))
    with pytest.raises(ValueError, match="has exactly"):
        SAE.load(extra)
    foreign = tmp_path / "foreign"
    sae.save(foreign, {})
    cfg = json.loads((foreign / "cfg.json").read_text())
    del cfg["vptlens_format"]
    (foreign / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a vpt-lens SAE"):
        SAE.load(foreign)


# --- the buffer -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def numbered_episodes(tmp_path_factory):
    """3 episodes (100, 64, 37 steps), rows (episode, step, 0, 1): every row unique and exact in float16."""
    root = tmp_path_factory.mktemp("numbered")
    specs = {activation_array(HOOK): ArraySpec((4,), "float16", chunk_steps=16)}
    paths = []
    for i, n in enumerate((100, 64, 37)):
        path = root / f"episode_{i:06d}.zarr"
        with EpisodeWriter(path, specs) as w:
            for t in range(n):
                w.append({activation_array(HOOK): np.array([i, t, 0, 1], dtype=np.float16)})
            w.close("complete")
        paths.append(path)
    return [Episode(p) for p in paths]


def _rows(batches) -> list[tuple]:
    return [tuple(r) for b in batches for r in b.numpy().tolist()]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_buffer_yields_every_row_once_per_epoch(numbered_episodes, prefetch):
    everything = Counter((float(i), float(t), 0.0, 1.0) for i, n in enumerate((100, 64, 37)) for t in range(n))
    buf = ActivationBuffer(numbered_episodes, HOOK, batch_size=10, capacity=40, seed=3, n_epochs=2, block_steps=16)
    buf.prefetch_batches = prefetch
    batches = list(buf)
    assert all(b.dtype == torch.float32 and b.shape[1] == 4 for b in batches)
    rows = _rows(batches)
    assert len(rows) == 2 * 201
    # the last batch of an epoch may be short, so find the boundary by count
    assert Counter(rows[:201]) == everything and Counter(rows[201:]) == everything
    assert buf.max_rows_held <= 40
    assert rows[:201] != sorted(rows[:201])  # shuffled


def test_buffer_deterministic(numbered_episodes):
    def order(seed, prefetch):
        buf = ActivationBuffer(numbered_episodes, HOOK, 8, 32, seed=seed, n_epochs=1, prefetch_batches=prefetch)
        return _rows(buf)

    assert order(5, 0) == order(5, 0) == order(5, 3)
    assert order(5, 0) != order(6, 0)


def test_buffer_errors(numbered_episodes):
    with pytest.raises(KeyError, match="no activation"):
        ActivationBuffer(numbered_episodes, "blocks.9.hook_resid_post", 8, 32)
    with pytest.raises(ValueError, match="capacity"):
        ActivationBuffer(numbered_episodes, HOOK, 8, 15)


def test_sample_rows_reads_a_bounded_sample(numbered_episodes):
    rows = sample_rows(numbered_episodes, HOOK, 80, seed=0)
    assert rows.shape == (80, 4) and rows.dtype == np.float64
    assert len({tuple(r) for r in rows.tolist()}) == 80  # distinct rows of the store
    assert set(rows[:, 0].tolist()) <= {0.0, 1.0, 2.0}


def test_geometric_median():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [100.0, 100.0]])
    # Fermat point of a right isosceles triangle plus a far outlier: robust, unlike the mean (25.25, 25.25)
    gm = geometric_median(x, n_iter=1000, tol=1e-12)
    dist = lambda y: np.linalg.norm(x - y, axis=1).sum()
    assert dist(gm) <= dist(x.mean(0)) and all(dist(gm) <= dist(gm + e) for e in 1e-4 * np.eye(2))
    assert np.linalg.norm(gm) < 1.0


# --- train and eval on the tiny run -----------------------------------------------------------------


def test_train_and_eval_main(tiny_run, tmp_path):
    out = tmp_path / "saes"
    cfg = sae_train.TrainConfig(
        run=tiny_run,
        hook=HOOK,
        out=out,
        architectures=("topk:k=4", "batchtopk:k=4", "relu:l1=0.5", "jumprelu:l0=0.1"),
        expansion_factor=2,
        batch_size=64,
        buffer_rows=256,
        total_activations=64 * 30,
        warmup_steps=5,
        val_fraction=0.25,
        log_every=10,
        dead_window=640,
        block_steps=64,
        prefetch_batches=2,
    )
    log = sae_train.main(cfg)
    assert (out / "train_log.json").is_file() and (out / "train_curves.png").stat().st_size > 0
    assert len(log["provenance"]["episodes"]) == 3 and len(log["provenance"]["val_episodes"]) == 1
    for name in ("topk-k_4", "batchtopk-k_4", "relu-l1_0.5", "jumprelu-l0_0.1"):
        sae = SAE.load(out / name)
        assert sae.cfg.d_sae == 128 and sae.cfg.provenance["steps"] == 30 and sae.cfg.provenance["hook"] == HOOK
        val = log["saes"][name]["val"]
        assert val["n_rows"] == 128 and 0 <= val["nmse"] < 1.5
        result = sae_eval.main(sae_eval.EvalConfig(sae=out / name, out=tmp_path / "eval" / name))
        rec = result["reconstruction"]
        assert result["episodes"] == log["provenance"]["val_episodes"]
        assert all(math.isfinite(rec[k]) for k in ("nmse", "explained_variance", "l0", "dead_fraction"))
        assert rec["nmse"] == pytest.approx(val["nmse"], rel=1e-9)
        assert (tmp_path / "eval" / name / "eval.json").is_file()
        assert (tmp_path / "eval" / name / "latent_frequency.png").stat().st_size > 0
        behaviour = result["behaviour"]
        assert behaviour["mean_splice"]["kl_total"] > 0 and behaviour["sae_splice"]["kl_total"] >= 0
        assert behaviour["sae_splice"]["replay_max_abs_logprob_error"] < 1e-3
        assert math.isfinite(behaviour["kl_recovered"])
    assert log["saes"]["topk-k_4"]["val"]["l0"] <= 4
    # BatchTopK's threshold was set with the final weights, on batches after the last step
    threshold = SAE.load(out / "batchtopk-k_4").cfg.provenance["threshold_scaled_inputs"]
    assert threshold["calibrated"] > 0 and threshold["calibrated"] != threshold["running_average"]


def test_reconstruction_metrics_mean_predictor(tiny_run):
    """An SAE whose output is the eval mean (W_dec = 0, b_dec = mean) scores NMSE 1 on the real store path."""
    from vptlens.recordings.store import Run

    episodes = Run(tiny_run).episodes()[:2]
    x = np.concatenate([e.activation(HOOK)[:] for e in episodes]).astype(np.float64)
    sae = SAE(_cfg("relu", d_in=64, d_sae=8, dtype="float64"))
    with torch.no_grad():
        sae.W_dec.zero_()
        sae.b_dec.copy_(torch.from_numpy(x.mean(0)))
    metrics = sae_eval.reconstruction_metrics(sae, episodes, HOOK, batch_size=50, block_steps=64)
    assert abs(metrics["nmse"] - 1.0) < 1e-12 and metrics["n_rows"] == len(x)


def test_an_exact_sae_recovers_all_behaviour(tiny_run, tmp_path):
    """relu([x, -x]) decoded by [I; -I] is x again: splicing it in changes nothing, so KL recovered is 1."""
    d = 64
    sae = SAE(_cfg("relu", d_in=d, d_sae=2 * d))
    with torch.no_grad():
        eye = torch.eye(d)
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    sae.save(tmp_path / "exact", {"run": str(tiny_run), "val_episodes": ["episode_000003.zarr"]})
    result = sae_eval.main(sae_eval.EvalConfig(sae=tmp_path / "exact", behaviour_max_steps=64))
    assert result["reconstruction"]["nmse"] < 1e-12
    assert result["behaviour"]["sae_splice"]["kl_total"] < 1e-9
    assert result["behaviour"]["kl_recovered"] == pytest.approx(1.0, abs=1e-6)


def test_train_and_eval_refuse_bad_inputs_before_writing(tiny_run, tmp_path):
    """An unrecorded hook or an existing --out fails before any work, and nothing is written."""
    out = tmp_path / "saes"
    kw = dict(run=tiny_run, out=out, expansion_factor=2, batch_size=64, buffer_rows=256, total_activations=64 * 2)
    with pytest.raises(KeyError, match="recorded hooks: .*blocks.1.hook_resid_post"):
        sae_train.main(sae_train.TrainConfig(hook="blocks.0.hook_mlp_out", **kw))
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        sae_train.main(sae_train.TrainConfig(hook=HOOK, **kw))
    with pytest.raises(ValueError, match="holds the input"):
        sae_train.main(sae_train.TrainConfig(hook=HOOK, **{**kw, "out": tiny_run.parent}, overwrite=True))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(ValueError, match="val_fraction"):
        sae_train.TrainConfig(hook=HOOK, val_fraction=1.0, **kw)

    sae = SAE(_cfg("topk", d_in=64, d_sae=16))
    sae.save(tmp_path / "sae", {"run": str(tiny_run), "val_episodes": ["episode_000003.zarr"]})
    (tmp_path / "sae" / "eval.json").write_text("{}")  # an earlier evaluation
    with pytest.raises(FileExistsError, match="--overwrite"):
        sae_eval.main(sae_eval.EvalConfig(sae=tmp_path / "sae", behaviour=False))
    with pytest.raises(FileExistsError, match="--overwrite"):
        sae_eval.main(sae_eval.EvalConfig(sae=tmp_path / "sae", out=out, behaviour=False))
    assert (tmp_path / "sae" / "eval.json").read_text() == "{}"
    result = sae_eval.main(sae_eval.EvalConfig(sae=tmp_path / "sae", behaviour=False, overwrite=True))
    assert result["reconstruction"]["n_rows"] == 128 and (tmp_path / "sae" / "cfg.json").is_file()
