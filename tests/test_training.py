"""The model organism's machinery: released-layout checkpoints, the demonstration stream, BC with DAgger, resume."""

import json
import os
import pickle
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import fixture_paths, load_script

from vptlens.agents.actions import minerl_to_factored
from vptlens.agents.agent import preprocess_frames
from vptlens.agents.config import PolicyConfig, load_config
from vptlens.agents.distributions import log_prob
from vptlens.agents.loading import load_policy, make_random_policy
from vptlens.agents.safe_pickle import load_plain_pickle
from vptlens.envs.blockworld import BlockWorldConfig
from vptlens.training import bc
from vptlens.training.checkpoint import load_train_state, save_policy, save_train_state, write_model_file
from vptlens.training.stream import TRAIN_SEED_BASE, DemoStream, StreamWorker, episode_seed

SMALL = {"hidsize": 32, "attention_heads": 2, "n_recurrence_layers": 2}


def small_bc(tmp_path, **overrides) -> bc.BCConfig:
    kw = dict(out=tmp_path / "bc", frames_per_round=(32, 32), betas=(1.0, 0.0), rows=2, chunk=8, episode_steps=10,
              **SMALL)  # fmt: skip
    return bc.BCConfig(**{**kw, **overrides})


def test_a_written_model_file_is_plain_data_and_reads_back_as_the_released_ones_do(tmp_path):
    released = load_config(fixture_paths("vpt_tiny")[0])
    path = write_model_file(tmp_path / "x.model", released)
    assert load_config(path) == released
    raw = load_plain_pickle(path)  # the restricted unpickler: plain containers and numbers only
    kwargs = raw["model"]["args"]["net"]["args"]
    assert raw["model"]["args"]["pi_head_opts"] == {"temperature": 2.0}
    assert kwargs["impala_chans"] == list(released.impala_chans) and kwargs["recurrence_type"] == "transformer"
    opcodes = {op.name for op, _, _ in __import__("pickletools").genops(path.read_bytes())}
    assert not opcodes & {"GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ"}


def test_saved_policies_load_strictly_with_the_same_numbers(tmp_path):
    policy = make_random_policy(PolicyConfig(**SMALL, impala_chans=(8, 16, 16), impala_width=1), seed=3)
    model, weights = save_policy(policy, tmp_path / "ckpt" / "agent")
    loaded = load_policy(model, weights)
    frames = torch.randint(0, 255, (1, 4, 128, 128, 3), dtype=torch.uint8)
    first = torch.tensor([[True, False, False, False]])
    a, _ = policy(frames, first, policy.initial_state(1))
    b, _ = loaded(frames, first, loaded.initial_state(1))
    assert torch.equal(a.buttons_logits, b.buttons_logits) and torch.equal(a.camera_logits, b.camera_logits)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["agent.model", "agent.weights"]


def test_train_state_is_read_without_running_code(tmp_path):
    path = tmp_path / "train_state.pt"
    save_train_state(path, {"optimizer": {"state": {}, "param_groups": []}, "meta": {"frames": 3}})
    assert load_train_state(path)["meta"] == {"frames": 3}

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path.write_bytes(pickle.dumps({"meta_json": "{}", "x": Evil()}, protocol=2))
    with pytest.raises(ValueError, match="not a readable training state"):
        load_train_state(path)


def test_head_biases_start_at_the_expert_marginals():
    policy = make_random_policy(PolicyConfig(**SMALL), seed=0)
    buttons = np.array([5] * 80 + [7] * 20)
    camera = np.array([60] * 90 + [61] * 10)
    bc.init_head_biases(policy, buttons, camera)
    for name, expected in (("buttons", {5: 0.8, 7: 0.2}), ("camera", {60: 0.9, 61: 0.1})):
        layer = policy.pi_head[name].linear_layer
        probs = torch.softmax(layer.bias.detach() / policy.cfg.temperature, -1)  # a zero residual: the bias alone
        for cls, p in expected.items():
            assert float(probs[cls]) == pytest.approx(p, abs=0.01)  # 1% of the mass is spread over unseen classes
        assert float(probs.sum() - sum(probs[c] for c in expected)) == pytest.approx(0.01, abs=1e-3)


def test_the_stream_labels_every_step_with_the_expert_and_starts_episodes_with_first():
    env = BlockWorldConfig(height=128, width=128, max_steps=12)
    stream = DemoStream(2, env, seed=5)
    chunk = stream.next_chunk(16, 1.0, None, torch.Generator())
    assert chunk.frames.shape == (2, 16, 128, 128, 3) and chunk.frames.dtype == np.uint8
    assert chunk.first[:, 0].all() and chunk.first[:, 12].all() and chunk.first.sum() == 4  # 12-step episodes
    assert not chunk.learner_driven.any()
    assert stream.episodes_done == [1, 1]
    # the same stream seed, the same data
    again = DemoStream(2, env, seed=5).next_chunk(16, 1.0, None, torch.Generator())
    assert np.array_equal(again.frames, chunk.frames) and np.array_equal(again.buttons, chunk.buttons)
    seeds = {episode_seed(5, r, e) for r in range(2) for e in range(50)}
    assert len(seeds) == 100 and min(seeds) >= TRAIN_SEED_BASE
    # a policy with a smaller input sees the worlds' 128x128 frames resized as the agent resizes them when recorded
    small = DemoStream(2, env, seed=5, frame_size=(64, 64)).next_chunk(16, 1.0, None, torch.Generator())
    assert small.frames.shape == (2, 16, 64, 64, 3)
    assert np.array_equal(small.frames, preprocess_frames(chunk.frames, (64, 64)))
    assert np.array_equal(small.buttons, chunk.buttons) and np.array_equal(small.camera, chunk.camera)
    seeing = DemoStream(1, env, seed=5, sight="visible", explore="look")  # BCConfig.expert_sight, expert_explore
    seeing.next_chunk(2, 1.0, None, torch.Generator())  # reach every episode's expert
    assert seeing.experts[0].sight == "visible" and stream.experts[0].sight == "oracle"
    assert seeing.experts[0].explore == "look" and stream.experts[0].explore == "walk"


def test_the_stream_marks_the_frames_where_the_expert_holds_attack_on_a_log():
    env = BlockWorldConfig(height=128, width=128, terrain="forest", max_steps=300)
    stream = DemoStream(2, env, seed=3, frame_size=(32, 32), sight="visible")
    chunk = stream.next_chunk(300, 1.0, None, torch.Generator())
    marked = chunk.log_in_reach
    assert marked.shape == (2, 300) and 0.3 < marked.mean() < 1  # in forest the teacher chops most of the time
    attack, no_turn = minerl_to_factored({"attack": 1, "camera": [0.0, 0.0]})
    holds = (chunk.buttons == attack[0]) & (chunk.camera == no_turn[0])
    assert holds[marked].mean() > 0.95  # the exceptions: a tree given up on, a mob in the line
    assert holds[~marked].mean() < 0.5


def test_the_hold_weight_is_a_weighted_mean_of_the_frames_nll(tmp_path):
    policy = make_random_policy(PolicyConfig(**SMALL, img_shape=(32, 32, 3)), seed=0)
    frames = torch.randint(0, 255, (2, 4, 32, 32, 3), dtype=torch.uint8)
    first = torch.zeros(2, 4, dtype=torch.bool)
    first[:, 0] = True
    buttons, camera = torch.randint(0, 8641, (2, 4)), torch.randint(0, 121, (2, 4))
    out, _ = policy(frames, first, policy.initial_state(2))
    nll = -log_prob(out, buttons, camera).detach()
    marked = torch.tensor([[True, False, False, True], [False, False, True, False]])
    weights = torch.where(marked, 3.0, 1.0)
    loss, _, _ = bc.bc_loss(policy, frames, first, policy.initial_state(2), buttons, camera, weights)
    expected = (3 * nll[marked].sum() + nll[~marked].sum()) / (3 * 3 + 5)
    torch.testing.assert_close(loss.detach(), expected)
    plain, _, _ = bc.bc_loss(policy, frames, first, policy.initial_state(2), buttons, camera)
    torch.testing.assert_close(plain.detach(), nll.mean())
    with pytest.raises(ValueError, match="--hold-weight"):
        small_bc(tmp_path, hold_weight=0.0)
    with pytest.raises(ValueError, match="--turn-weight"):
        small_bc(tmp_path, turn_weight=-1.0)
    cfg = small_bc(tmp_path, hold_weight=3.0, max_minutes=0.0)  # the trainer weighs its chunks' marked frames
    bc.main(cfg)
    (row,) = [json.loads(line) for line in (cfg.out / "log.jsonl").read_text().splitlines()]
    assert 0 <= row["log_in_reach"] <= 1 and np.isfinite(row["loss"])


def test_frame_weights_weigh_holds_then_turns():
    _, still = minerl_to_factored({"camera": [0.0, 0.0]})
    _, turn = minerl_to_factored({"camera": [0.0, 10.0]})
    chunk = SimpleNamespace(
        camera=np.array([[still[0], turn[0], turn[0], still[0]]]),
        log_in_reach=np.array([[True, True, False, False]]),
    )
    assert bc.frame_weights(chunk, 3.0, 2.0).tolist() == [[3.0, 3.0, 2.0, 1.0]]  # on a log, the hold weight wins
    assert bc.frame_weights(chunk, 1.0, 1.0).tolist() == [[1.0, 1.0, 1.0, 1.0]]
    assert bc.frame_weights(chunk, 3.0, 2.0).dtype == np.float32


def test_feeders_share_the_rows_and_an_expert_round_is_the_same_data_whatever_their_number():
    env = BlockWorldConfig(height=128, width=128, max_steps=12)
    policy = make_random_policy(PolicyConfig(**SMALL, img_shape=(64, 64, 3)), seed=0)
    weights = policy.state_dict()
    got = {}
    for feeders in (1, 2):
        worker = StreamWorker(3, env, 5, [0, 4, 1], policy.cfg.to_dict(), feeders=feeders)
        try:
            worker.request(16, 1.0, 0, None)
            expert = worker.receive()
            worker.request(16, 0.5, 1, weights)  # a DAgger chunk: who drives a new episode is decided per row
            dagger = worker.receive()
        finally:
            worker.close()
        got[feeders] = expert, dagger
    (chunk, done), (other, other_done) = got[1][0], got[2][0]
    assert chunk.frames.shape == (3, 16, 64, 64, 3) and done == other_done == [1, 5, 2]
    for field in ("frames", "first", "buttons", "camera", "learner_driven"):
        assert np.array_equal(getattr(chunk, field), getattr(other, field)), field
    assert chunk.logs_broken == other.logs_broken
    assert np.array_equal(got[1][1][0].learner_driven, got[2][1][0].learner_driven)
    alone = DemoStream(1, env, seed=5, episodes_done=[4], first_row=1, frame_size=(64, 64))  # the second row alone
    assert np.array_equal(alone.next_chunk(16, 1.0, None, torch.Generator()).frames, chunk.frames[1:2])


def test_dagger_rows_are_driven_by_the_learner_and_still_labelled_by_the_expert():
    env = BlockWorldConfig(height=128, width=128, max_steps=200)
    learner = make_random_policy(PolicyConfig(**SMALL), seed=1)
    expert_run = DemoStream(2, env, seed=9).next_chunk(12, 1.0, None, torch.Generator())
    dagger_run = DemoStream(2, env, seed=9).next_chunk(12, 0.0, learner, torch.Generator().manual_seed(0))
    assert dagger_run.learner_driven.all()
    assert np.array_equal(dagger_run.frames[:, 0], expert_run.frames[:, 0])  # same worlds ...
    assert not np.array_equal(dagger_run.frames[:, -1], expert_run.frames[:, -1])  # ... moved by another policy
    with pytest.raises(ValueError, match="needs the learner"):
        DemoStream(1, env, seed=9).next_chunk(4, 0.5, None, torch.Generator())


def test_the_learner_steps_only_the_rows_it_drives_each_with_its_own_memory():
    env = BlockWorldConfig(height=128, width=128, max_steps=200)
    learner = make_random_policy(PolicyConfig(**SMALL), seed=1).eval()
    stream = DemoStream(4, env, seed=9)
    chunk = stream.next_chunk(6, 0.5, learner, torch.Generator().manual_seed(0))
    driven = chunk.learner_driven[:, 0]
    assert driven.any() and not driven.all()  # a mixed chunk (this seed)
    for row in np.flatnonzero(driven):  # its memory is what stepping that row alone gives
        alone = learner.initial_state(1)
        for t in range(6):
            step = [torch.from_numpy(x[row : row + 1, t]) for x in (chunk.frames, chunk.first)]
            _, alone = learner.step(*step, alone)
        mine = stream._state.select([int(row)])
        for a, b in zip((*mine.keys, *mine.values), (*alone.keys, *alone.values), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # batch 1 against a few rows: rounding only
        assert torch.equal(mine.valid, alone.valid)
    assert not stream._state.valid[torch.from_numpy(~driven)].any()  # the expert's rows were never stepped


def test_bc_overfits_one_chunk():
    """The loss and its gradient are right if a policy can memorise a few labelled frames."""
    policy = make_random_policy(PolicyConfig(**SMALL, impala_chans=(8, 16, 16), impala_width=1), seed=0).train()
    chunk = DemoStream(2, BlockWorldConfig(height=128, width=128), seed=2).next_chunk(8, 1.0, None, torch.Generator())
    args = [torch.from_numpy(x) for x in (chunk.frames, chunk.first)]
    labels = [torch.from_numpy(x) for x in (chunk.buttons, chunk.camera)]
    bc.init_head_biases(policy, chunk.buttons, chunk.camera)  # the first loss is that of the label marginals
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss, parts, _ = bc.bc_loss(policy, *args, policy.initial_state(2), *labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]  # measured: 2.39 -> 0.46 nats
    assert parts["buttons_acc"] == 1.0


def test_the_cnn_in_passes_gives_the_same_loss_and_gradients():
    """Training runs the CNN a few frames at a time (faster on a CPU); the numbers must not change. In float64: in
    float32 the first conv's weight gradient (a sum over 16 x 128 x 128 positions that nearly cancels) is itself
    ~1% off, either way."""
    policy = make_random_policy(PolicyConfig(**SMALL, impala_chans=(8, 16, 16), impala_width=1), seed=0)
    policy = policy.double().train()
    chunk = DemoStream(2, BlockWorldConfig(height=128, width=128), seed=2).next_chunk(8, 1.0, None, torch.Generator())
    args = [torch.from_numpy(x) for x in (chunk.frames, chunk.first, chunk.buttons, chunk.camera)]
    results = []
    for frames_per_pass in (None, 3):  # 16 frames: passes of 3, 3, 3, 3, 3 and 1
        policy.net.img_process.frames_per_pass = frames_per_pass
        policy.zero_grad()
        loss, _, _ = bc.bc_loss(policy, *args[:2], policy.initial_state(2), *args[2:])
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in policy.parameters() if p.grad is not None]))
    (loss_once, grads_once), (loss_passes, grads_passes) = results
    torch.testing.assert_close(loss_passes, loss_once, rtol=1e-12, atol=1e-12)
    assert len(grads_once) > 50  # the CNN's parameters among them
    for a, b in zip(grads_passes, grads_once, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_bc_trains_resumes_and_writes_a_released_layout_checkpoint(tmp_path):
    cfg = small_bc(tmp_path, max_minutes=0.0)  # stops after its first update
    bc.main(cfg)
    first_log = (cfg.out / "log.jsonl").read_text().splitlines()
    assert len(first_log) == 1
    with pytest.raises(FileExistsError, match="--resume"):
        small_bc(tmp_path)
    with pytest.raises(ValueError, match="lr: 0.0003 then, 0.001 now"):
        bc.Trainer(small_bc(tmp_path, resume=True, lr=1e-3))
    with pytest.raises(ValueError, match="frames_per_round"):
        bc.Trainer(small_bc(tmp_path, resume=True, frames_per_round=(16, 48)))  # a planned round changed
    with pytest.raises(ValueError, match="expert_sight: 'oracle' then, 'visible' now"):
        bc.Trainer(small_bc(tmp_path, resume=True, expert_sight="visible"))  # another teacher
    bc.main(small_bc(tmp_path, resume=True))
    rows = [json.loads(line) for line in (cfg.out / "log.jsonl").read_text().splitlines()]
    assert [r["frames"] for r in rows] == [16, 32, 48, 64]
    assert [r["beta"] for r in rows] == [1.0, 1.0, 0.0, 0.0]
    # who drives is decided at an episode's start: the DAgger round's new episodes are the learner's
    assert rows[1]["learner_driven"] == 0.0 and rows[-1]["learner_driven"] > 0
    policy = load_policy(cfg.out / "policy.model", cfg.out / "policy.weights")
    assert policy.cfg == cfg.policy_config()
    provenance = json.loads((cfg.out / "provenance.json").read_text())
    assert provenance["frames"] == 64 and provenance["config"]["frames_per_round"] == [32, 32]
    assert set(provenance["files"]) == {"policy.model", "policy.weights"}
    assert (cfg.out / "curves.png").stat().st_size > 0
    bc.main(small_bc(tmp_path, resume=True, frames_per_round=(32, 32, 16), betas=(1.0, 0.0, 0.0)))  # one more round
    assert json.loads((cfg.out / "provenance.json").read_text())["frames"] == 80
    assert sorted(p.name for p in (cfg.out / "rounds").iterdir())[:4] == [
        "policy-32.model", "policy-32.weights", "policy-64.model", "policy-64.weights"]  # fmt: skip


def test_sigterm_stops_training_after_the_update_and_saves(tmp_path, monkeypatch):
    update = bc.Trainer._update

    def update_then_signal(self, round_index):
        row = update(self, round_index)
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` would, in the middle of the run
        return row

    monkeypatch.setattr(bc.Trainer, "_update", update_then_signal)
    previous = signal.getsignal(signal.SIGTERM)
    bc.main(small_bc(tmp_path))
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler lasts as long as the training
    state = load_train_state(tmp_path / "bc" / "train_state.pt")
    assert (state["meta"]["frames"], state["meta"]["updates"]) == (16, 1)
    assert len((tmp_path / "bc" / "log.jsonl").read_text().splitlines()) == 1


def test_bc_trains_a_policy_with_a_smaller_input_on_frames_resized_to_it(tmp_path):
    cfg = small_bc(tmp_path, img_size=32, frames_per_round=(16,), betas=(0.0,))  # the learner drives: it steps at 32
    bc.main(cfg)
    policy = load_policy(cfg.out / "policy.model", cfg.out / "policy.weights")
    assert policy.cfg.img_shape == (32, 32, 3) and policy.cfg == cfg.policy_config()
    with pytest.raises(ValueError, match="img_size: 32 then, 128 now"):
        bc.Trainer(small_bc(tmp_path, resume=True, frames_per_round=(16,), betas=(0.0,)))


def test_resume_drops_log_rows_of_updates_after_the_last_save(tmp_path):
    bc.main(small_bc(tmp_path, max_minutes=0.0))  # saved after update 1
    log = tmp_path / "bc" / "log.jsonl"
    row = json.loads(log.read_text())
    with log.open("a") as f:  # a kill after two more updates, the second row cut mid-write
        f.write(json.dumps({**row, "update": 2}) + "\n" + json.dumps({**row, "update": 3})[:20])
    bc.Trainer(small_bc(tmp_path, resume=True))
    assert [json.loads(line)["update"] for line in log.read_text().splitlines()] == [1]


def test_init_from_starts_a_run_from_another_runs_checkpoint(tmp_path):
    first = small_bc(tmp_path, max_minutes=0.0)
    bc.main(first)
    stem = first.out / "policy"
    second = small_bc(tmp_path, out=tmp_path / "dagger", frames_per_round=(16,), betas=(0.0,), init_from=stem)
    trainer = bc.Trainer(second)
    start = load_policy(f"{stem}.model", f"{stem}.weights")
    for (name, a), b in zip(trainer.policy.state_dict().items(), start.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    bc.main(small_bc(tmp_path, out=tmp_path / "dagger2", frames_per_round=(16,), betas=(0.0,),
                     init_from=stem.with_suffix(".model")))  # fmt: skip
    provenance = json.loads((tmp_path / "dagger2" / "provenance.json").read_text())
    assert set(provenance["init_from"]) == {"policy.model", "policy.weights"}
    assert provenance["frames"] == 16
    with pytest.raises(ValueError, match="architecture"):
        bc.Trainer(small_bc(tmp_path, out=tmp_path / "other", hidsize=64, init_from=stem))
    with pytest.raises(FileNotFoundError, match="--init-from"):
        small_bc(tmp_path, out=tmp_path / "none", init_from=tmp_path / "nowhere")


def test_bc_options_are_checked_before_anything_is_written(tmp_path):
    for kw, message in (
        ({"betas": (1.0,)}, "one --betas value per"),
        ({"betas": (1.0, 1.5)}, "0..1"),
        ({"rows": 0}, "--rows must be at least 1"),
        ({"img_size": 8}, "--img-size must be at least 16"),
        ({"feeders": 3}, "--feeders 3 is more than --rows 2"),
        ({"attention_heads": 5}, "not divisible"),
        ({"resume": True}, "no training to resume"),
        ({"terrain": "jungle"}, "terrain 'jungle' unknown; use 'hills' or 'forest' or 'flat'"),
        ({"trunks": "purple"}, "trunks 'purple' unknown; use 'bark' or 'cleric'"),
    ):
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            small_bc(tmp_path, **kw)
    assert not (tmp_path / "bc").exists()


def test_expert_demos_are_a_normal_run_without_policy_outputs(tmp_path):
    from vptlens.agents.actions import VPT_BUTTONS, class_to_buttons
    from vptlens.recordings.store import Run
    from vptlens.training import demos

    cfg = demos.ExpertDemosConfig(out=tmp_path / "demos", n_episodes=2, n_steps=80, scene="tree_at_spot", n_envs=2)
    assert demos.main(cfg)["complete"] == 2
    for episode in Run.open(cfg.out).episodes():
        assert episode.meta.agent.scripted == "chopper" and episode.meta.sampling == "scripted (chopper)"
        assert not episode.has_policy_outputs and episode.layers == []
        events = [e for step in episode.ground_truth("events")[:] for e in step]
        assert sum(e["type"] == "block_broken" and e["block"] == "oak_log" for e in events) == 1  # at step 60
        assert not any(e["type"] == "entity_attacked" for e in events)
        buttons, attack = np.asarray(episode.action("buttons")[:]), np.asarray(episode.minerl_action("attack")[:])
        pressed, _ = class_to_buttons(buttons)
        assert np.array_equal(pressed[:, VPT_BUTTONS.index("attack")], attack.astype(bool))  # classes match keys
    with pytest.raises(ValueError, match="--scripted is set by"):
        from vptlens.recordings import recorder

        recorder.main(recorder.RecordConfig(scripted="chopper", out=tmp_path / "x"))


def test_an_experiment_runs_the_expert_beside_a_policy_paired_by_seed(tmp_path):
    from vptlens.interventions.analysis import analyse
    from vptlens.interventions.runner import run_experiment
    from vptlens.interventions.spec import SpecError, spec_from_dict

    model, weights = fixture_paths("vpt_tiny")
    raw = {
        "name": "teacher",
        "agents": [{"name": "expert", "scripted": "chopper"}, {"name": "tiny", "model": str(model),
                                                                "weights": str(weights)}],
        "env": {"kind": "blockworld", "height": 128, "width": 128},
        "scenes": ["tree_at_spot"],
        "edits": [{"name": "none", "kind": "none"}],
        "control": {"agent": "expert"},
        "seeds": {"start": 0, "count": 2},
        "n_steps": 70,
        "n_envs": 2,
        "metrics": ["logs_broken"],
    }  # fmt: skip
    with pytest.raises(SpecError, match="scripted agents: chopper"):
        spec_from_dict({**raw, "agents": [{"name": "e", "scripted": "lumberjack"}]})
    ablate = {"name": "ablate", "kind": "head_ablation", "heads": ["0.0"], "mode": "zero"}
    from vptlens.interventions.runner import check_edits

    with pytest.raises(SpecError, match="a scripted or blind agent has no activations"):
        check_edits(spec_from_dict({**raw, "edits": [raw["edits"][0], ablate]}))
    out = tmp_path / "exp"
    spec = spec_from_dict(raw)
    run_experiment(spec, out)
    result = analyse(out)
    logs = {c.cell.agent.name: c.values["logs_broken"] for c in result.cells}
    assert logs["expert"] == {0: 1, 1: 1}  # the trunk's first log breaks at step 60
    assert set(logs["tiny"]) == {0, 1}
    (row,) = [r for r in result.comparisons if r["factor"] == "agent"]  # the policy against the expert, by seed
    assert (row["treatment"], row["control"], row["n_pairs"]) == ("tiny", "expert", 2)


def test_ship_organism_ships_a_checkpoint_under_its_own_name_with_a_command_that_replans_it(tmp_path, monkeypatch):
    from vptlens.cli import parse

    ship = load_script("scripts/ship_organism.py")
    cfg = small_bc(tmp_path, img_size=32, frames_per_round=(16,), betas=(1.0,), terrain="forest", threads=1,
                   hold_weight=2.0)  # fmt: skip
    bc.main(cfg)
    shipped_dir = tmp_path / "organism"
    shipped_dir.mkdir()
    (shipped_dir / "candidate-extra.weights").write_bytes(b"another entry's file")  # must not be listed
    monkeypatch.setattr(ship, "SHIPPED_DIR", shipped_dir)
    argv = ["ship_organism.py", str(cfg.out / "policy"), "--train-dir", str(cfg.out), "--name", "candidate"]
    monkeypatch.setattr("sys.argv", [*argv, "--no-untrained"])
    ship.main()
    assert sorted(p.name for p in shipped_dir.iterdir()) == [
        "candidate-extra.weights", "candidate.json", "candidate.model", "candidate.weights"
    ]  # fmt: skip
    provenance = json.loads((shipped_dir / "candidate.json").read_text())
    assert sorted(provenance["files"]) == ["candidate.model", "candidate.weights"]
    assert provenance["name"] == "candidate" and "not shipped" in provenance["untrained"]
    assert load_policy(shipped_dir / "candidate.model", shipped_dir / "candidate.weights").cfg.img_shape == (32, 32, 3)
    assert "--img-size 32" in provenance["reproduce"] and "--threads" not in provenance["reproduce"]
    assert "--hold-weight 2.0" in provenance["reproduce"]
    assert provenance["training"]["init_from"] is None  # begun from scratch: no checkpoint's digests
    # the command plans the same training (runtime options aside)
    command = ship.reproduce_command(provenance["training"]["config"], str(tmp_path / "again"))
    replanned, _ = parse(command.split()[1:])
    same = {f: getattr(cfg, f) for f in ("frames_per_round", "betas", "rows", "chunk", "episode_steps", "img_size",
                                         "hold_weight")}  # fmt: skip
    assert {f: getattr(replanned, f) for f in same} == same
    assert replanned.policy_config() == cfg.policy_config() and replanned.terrain == "forest"
    with pytest.raises(SystemExit):  # a name that is not a zoo-style stem
        monkeypatch.setattr("sys.argv", [*argv[:-1], "Bad Name"])
        ship.main()
