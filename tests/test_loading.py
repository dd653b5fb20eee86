"""Loading official files: the restricted unpickler, strict keys, prefixes, safetensors."""

import os
import pickle

import pytest
import torch
from conftest import fixture_paths

from vptlens.agents import load_config, load_policy
from vptlens.agents.config import config_from_kwargs
from vptlens.agents.loading import read_state_dict
from vptlens.agents.safe_pickle import UnsafePickleError, load_plain_pickle


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.model"
    bad.write_bytes(pickle.dumps({"model": {"args": _RunsShell(marker)}}))
    with pytest.raises(UnsafePickleError, match=r"refused.*(posix|os)\.system"):
        load_config(bad)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError):
        load_policy(bad, fixture_paths("vpt_tiny")[1])
    assert not marker.exists()


def test_plain_pickle_reads(tmp_path):
    path = tmp_path / "plain.model"
    obj = {"a": [1, 2.5, "x", None, True], "b": (1, 2), "c": {"d": {3, 4}}}
    path.write_bytes(pickle.dumps(obj))
    assert load_plain_pickle(path) == obj


def test_truncated_and_missing_model_files(tmp_path):
    good = fixture_paths("vpt_tiny")[0].read_bytes()
    (tmp_path / "cut.model").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a readable pickle"):
        load_config(tmp_path / "cut.model")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_config(tmp_path / "absent.model")
    (tmp_path / "list.model").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="not a VPT '.model' file"):
        load_config(tmp_path / "list.model")


def test_config_of_fixture_and_unsupported_options():
    cfg = load_config(fixture_paths("vpt_tiny")[0])
    assert (cfg.hidsize, cfg.attention_heads, cfg.n_recurrence_layers, cfg.memory_len) == (64, 4, 2, 32)
    assert cfg.temperature == 2.0 and cfg.cnn_chans == (16, 32, 32)
    with pytest.raises(ValueError, match="recurrence_type='lstm'"):
        config_from_kwargs({**cfg.raw_kwargs, "recurrence_type": "lstm"})
    with pytest.raises(ValueError, match="unknown option"):
        config_from_kwargs({**cfg.raw_kwargs, "mystery": 1})


def test_key_mismatch_is_reported_by_name(tmp_path):
    model_path, weights_path = fixture_paths("vpt_tiny")
    state = torch.load(weights_path, weights_only=True)
    state.pop("net.final_ln.bias")
    state["net.extra_layer.weight"] = torch.zeros(3)
    state["pi_head.camera.linear_layer.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "bad.weights")
    with pytest.raises(KeyError) as err:
        load_policy(model_path, tmp_path / "bad.weights")
    message = str(err.value)
    assert "missing (1): net.final_ln.bias" in message
    assert "unexpected (1): net.extra_layer.weight" in message
    assert "pi_head.camera.linear_layer.bias: file (7,) vs model (121,)" in message


def test_steve1_weights_with_vpt_architecture_file(tmp_path):
    # STEVE-1 weights are recognised by mineclip_embed_linear, whatever the .model says.
    policy = load_policy(fixture_paths("vpt_tiny")[0], fixture_paths("steve1_tiny")[1])
    assert policy.cfg.goal_dim == 512


def test_prefixed_and_safetensors_weights_load_identically(tmp_path, steve1_tiny):
    from safetensors.torch import save_file

    model_path, weights_path = fixture_paths("steve1_tiny")
    state = torch.load(weights_path, weights_only=True)
    torch.save({f"module.policy.{k}": v for k, v in state.items()}, tmp_path / "prefixed.weights")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "agent.safetensors")
    for path in (tmp_path / "prefixed.weights", tmp_path / "agent.safetensors"):
        loaded = load_policy(model_path, path)
        for k, v in steve1_tiny.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), k


def test_weights_file_with_code_is_refused(tmp_path):
    torch.save({"net.x": _RunsShell(tmp_path / "pwned")}, tmp_path / "evil.weights")
    with pytest.raises(ValueError, match="weights_only"):
        read_state_dict(tmp_path / "evil.weights")
    assert not (tmp_path / "pwned").exists()


def test_provenance_records_sha256():
    policy = load_policy(*fixture_paths("vpt_tiny"))
    assert len(policy.provenance["weights_sha256"]) == 64
    assert policy.provenance["config"]["hidsize"] == 64


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidsize": "64"}, r"hidsize='64' must be an integer"),
        ({"hidsize": -64}, r"hidsize=-64 is outside"),
        ({"hidsize": 10**9}, r"hidsize=1000000000 is outside"),
        ({"hidsize": 16384, "n_recurrence_layers": 64}, r"B transformer parameters"),
        ({"impala_chans": [16, "x", 32]}, r"impala_chans\[i\]='x'"),
        ({"attention_heads": True}, r"attention_heads=True must be an integer"),
    ],
)
def test_model_sizes_are_checked_before_anything_is_allocated(tmp_path, change, message):
    kwargs = load_config(fixture_paths("vpt_tiny")[0]).raw_kwargs
    path = tmp_path / "bad.model"
    path.write_bytes(pickle.dumps({"model": {"args": {"net": {"args": {**kwargs, **change}}}}}))
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_a_deeply_nested_model_file_is_refused_without_recursing(tmp_path):
    path = tmp_path / "deep.model"
    path.write_bytes(b"(" * 100_000 + b"l" * 100_000 + b".")  # a list nested 100k deep (protocol 0 opcodes)
    with pytest.raises(UnsafePickleError, match="nested over 32 levels"):
        load_config(path)
