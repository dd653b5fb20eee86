"""Make the MineCLIP and STEVE-1-prior reference fixtures by running the authors' own code.

What it writes (each folder well under 5 MB; the tests hold vpt-lens to it at 1e-4):

    tests/fixtures/mineclip_tiny/      tokenization.json, attn_tiny.pth (a MineCLIP with the released
                                       architecture at small widths, in the released checkpoint layout),
                                       config.json, reference.safetensors, clip_20fps.avi, released_keys.json
    tests/fixtures/steve1_prior_tiny/  prior_tiny.pt, config.json, reference.safetensors, released_keys.json

The authors' code, at the commits the fixtures were made from:

    MineDojo/MineCLIP           e6c06a0245fac63dceb38bc9bd4fecd033dae735
    Shalev-Lifshitz/STEVE-1     903b244796322f4d0073a8f62c05f51eac3aed52

It runs in its own environment, never in the project's (their code pins other versions):

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0                 # first: the CPU build on this machine's disk
    /tmp/refenv/bin/pip install "numpy<2.3" x_transformers==0.27.1 einops "transformers==4.46.3" dm-tree \
        kornia opencv-python-headless==5.0.0.93 av pillow typing_extensions ftfy regex safetensors
    /tmp/refenv/bin/pip install --no-deps open-clip-torch==3.3.0   # only for CLIP's BPE vocabulary file
    git clone https://github.com/MineDojo/MineCLIP /tmp/ref/MineCLIP             # at the commit above
    git clone https://github.com/Shalev-Lifshitz/STEVE-1 /tmp/ref/STEVE-1        # at the commit above
    OMP_NUM_THREADS=1 /tmp/refenv/bin/python scripts/make_mineclip_fixtures.py \
        --mineclip-repo /tmp/ref/MineCLIP --steve1-repo /tmp/ref/STEVE-1 --out tests/fixtures

What is stubbed, and why (nothing that computes a number):
- `mineclip/__init__.py` imports MineDojo's env wrappers (gym, minedojo); the `mineclip` package is
  registered empty so that `mineclip.mineclip` (the model) imports without them.
- MineCLIP's tokenizer is `AutoTokenizer.from_pretrained("openai/clip-vit-base-patch16")` (the fast one),
  which downloads from a hub this machine cannot reach. `get_tokenizer` is patched to return
  `CLIPTokenizerFast` built by transformers from `vocab.json` + `merges.txt` written from CLIP's
  `bpe_simple_vocab_16e6.txt.gz` (the files the hub's copy was converted from); the script checks the
  ids CLIP's documentation states, and that OpenAI's own tokenizer (open_clip's copy, which builds its
  vocabulary by itself) gives the same ids on plain ASCII prompts. `tokenize_batch`, the padding and the
  text model are the authors'.
- `MineCLIP.__init__` hard-codes ViT-B/16 sizes (~150M parameters, too big to store). The tiny model is
  wired from the authors' classes (`CLIP`, `TemporalPooling`, `CLIPScoreHead`, `VideoRewardBase`) exactly
  as `MineCLIP.__init__` wires them, at small widths; `encode_text`, `encode_video` and
  `forward_reward_head` are then the authors' methods. The full-size model is built once, through
  `MineCLIP(**steve1.config.MINECLIP_CONFIG)`, only to list the released checkpoint's keys and shapes.
- STEVE-1's `process_frame_mineclip` lives in a module that imports MineRL; the function is taken from
  the file's source alone (ast) and run as written. `load_video_to_lst`, `get_prior_embed` and
  `TranslatorVAE` are imported from STEVE-1 as they are.

Weights are random (a fixed seed), LayerNorm gains and every bias included, and rounded to float16 values
so the stored checkpoint can be float16 (half the size) while both sides compute in float32 on equal
numbers.
"""

import argparse
import ast
import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

PROMPTS = [
    "chop a tree",
    "chop down the tree, gather wood, pick up wood, chop it down, break tree",
    "break tall grass, break grass, collect seeds, punch the ground, run around in circles getting seeds from bushes",
    "Go   explore!!!",
    "don't punch the villager's house",
    "I'LL dig 3 holes at x=12,y=64.",
    "x's it's 'tis rock'n'roll ''s WOOD'S 'S",
    "café naïve façade",
    "ÉCOLE Straße ΟΔΟΣ İstanbul",
    "decomposed e\u0301 cafe\u0301",
    "日本語のテキスト",
    "🌲🪓 chop 🌲 emoji 👍🏽 family 👨\u200d👩\u200d👧",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "numbers 1234567890 ½ ² Ⅻ",
    "tab\tnew\nline  spaces\r\n",
    "\u00a0nbsp\u3000ideographic\u2003em\u2028sep\x85nel",
    "ctrl\x1cfile\x1dgroup\x1frecord\x0bvt\x0cff",
    '<html> &amp; "quotes" (brackets) [x] {y} @#$%^&*_+=~`|\\/',
    "supercalifragilisticexpialidocious" * 6,
    " ".join(["mine"] * 75),
    " ".join(["mine"] * 76),
    " ".join(["chop the big oak tree and collect its logs"] * 9),
    "",
    "   ",
]
"""Tokenised by the authors' tokenizer; the ones over 75 BPE tokens, and empty ones, are refused by vpt-lens (the
authors truncate silently, or encode nothing): their ids are still compared."""

CLIP_DOC_IDS = {"a photo of a cat": [320, 1125, 539, 320, 2368]}
"""Ids CLIP's documentation shows (49406 ... 49407 around them): an anchor for the vocabulary files."""

TINY_CLIP = {
    "embed_dim": 32,
    "image_resolution": 224,
    "vision_layers": 2,
    "vision_width": 128,
    "vision_patch_size": 16,
    "context_length": 77,
    "vocab_size": 49408,
    "text_layers": 2,
    "text_width": 16,
    "text_heads": 2,
}
TINY_POOL = "attn.d2.nh2.glusw"
RESOLUTION = (160, 256)
N_VIDEO_ADAPTER_LAYERS = 2  # mlp_adapter_spec "v0-2.t0", as released
PRIOR_TINY = {"input_dim": 32, "hidden_dim": 24, "latent_dim": 8}
PRIOR_SEEDS = (0, 1, 7)
VIDEO_SEED = 0


# ------------------------------------------------------------------------------ the authors' code


def import_authors_code(mineclip_repo: Path, steve1_repo: Path) -> dict:
    """Import the modules the fixtures need from the two repositories (see the stubs in the header)."""
    sys.path[:0] = [str(mineclip_repo), str(steve1_repo)]
    package = types.ModuleType("mineclip")
    package.__path__ = [str(mineclip_repo / "mineclip")]
    sys.modules["mineclip"] = package
    from mineclip.mineclip import tokenization
    from mineclip.mineclip.base import VideoRewardBase
    from mineclip.mineclip.clip import CLIP
    from mineclip.mineclip.head import CLIPScoreHead
    from mineclip.mineclip.mineclip import MineCLIP
    from mineclip.mineclip.pooling import TemporalPooling
    from steve1 import config as steve1_config
    from steve1.data.text_alignment.vae import TranslatorVAE
    from steve1.utils.embed_utils import get_prior_embed
    from steve1.utils.video_utils import load_video_to_lst

    source = (steve1_repo / "steve1/data/generation/gen_mixed_agents.py").read_text()
    (node,) = [n for n in ast.parse(source).body if getattr(n, "name", None) == "process_frame_mineclip"]
    namespace = {"np": np, "cv2": __import__("cv2")}
    exec(compile(ast.Module(body=[node], type_ignores=[]), "gen_mixed_agents.py", "exec"), namespace)
    return {
        "tokenization": tokenization,
        "CLIP": CLIP,
        "TemporalPooling": TemporalPooling,
        "CLIPScoreHead": CLIPScoreHead,
        "VideoRewardBase": VideoRewardBase,
        "MineCLIP": MineCLIP,
        "MINECLIP_CONFIG": steve1_config.MINECLIP_CONFIG,
        "PRIOR_INFO": steve1_config.PRIOR_INFO,
        "TranslatorVAE": TranslatorVAE,
        "get_prior_embed": get_prior_embed,
        "load_video_to_lst": load_video_to_lst,
        "process_frame_mineclip": namespace["process_frame_mineclip"],
    }


def make_hf_tokenizer(work_dir: Path):
    """transformers' CLIPTokenizerFast from vocab.json + merges.txt written from CLIP's BPE file."""
    from transformers import CLIPTokenizerFast

    dist = importlib.metadata.distribution("open_clip_torch")
    (entry,) = [f for f in dist.files if f.name == "bpe_simple_vocab_16e6.txt.gz"]
    lines = gzip.decompress(Path(dist.locate_file(entry)).read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_chars = [chr(c) for c in _byte_alphabet()]
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (work_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (work_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizerFast(vocab_file=str(work_dir / "vocab.json"), merges_file=str(work_dir / "merges.txt"))
    for text, ids in CLIP_DOC_IDS.items():
        assert tok(text, add_special_tokens=False)["input_ids"] == ids, "the vocabulary files are not CLIP's"
    assert (tok.bos_token_id, tok.eos_token_id) == (49406, 49407)
    # OpenAI's own tokenizer (open_clip's copy, loaded from its file: the package imports torchvision) builds its
    # vocabulary by itself; on plain ASCII, where its ftfy/HTML clean-up changes nothing, the ids must agree
    spec = importlib.util.spec_from_file_location("openai_tokenizer", dist.locate_file("open_clip/tokenizer.py"))
    openai_tokenizer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(openai_tokenizer)
    simple = openai_tokenizer.SimpleTokenizer(bpe_path=str(dist.locate_file(entry)))
    for text in PROMPTS[:7]:
        assert simple.encode(text) == tok(text, add_special_tokens=False)["input_ids"], text
    return tok


def _byte_alphabet() -> list[int]:
    """Code points GPT-2/CLIP byte-level BPE gives the 256 bytes, in vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return printable + [256 + i for i in range(len(extra))]


# ------------------------------------------------------------------------------ random weights


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Random weights everywhere (LayerNorm gains and every bias too), rounded to float16 values."""
    gen = torch.Generator().manual_seed(seed)
    norms = {id(p) for m in module.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters()}
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("logit_scale"):
                p.copy_(math.log(1 / 0.07) + 0.1 * noise)
            elif name.endswith("residual_weight"):
                p.copy_(noise)
            elif id(p) in norms:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)
            elif p.ndim == 1 and not name.endswith("cls_token"):
                p.copy_(0.05 * noise)
            elif "embedding" in name or "pos_emb" in name or "cls_token" in name:
                p.copy_(0.02 * noise)
            else:
                p.copy_(noise / p[0].numel() ** 0.5)
            p.copy_(p.half().float())


def make_tiny_mineclip(code: dict):
    """MineCLIP wired as `MineCLIP.__init__` does, with the small CLIP sizes of TINY_CLIP."""
    clip = code["CLIP"](**TINY_CLIP)
    clip.vision_model.resize_pos_embed(list(RESOLUTION))
    dim = TINY_CLIP["embed_dim"]
    temporal = code["TemporalPooling"](
        pool_type=TINY_POOL, input_dim=dim, hidden_dim=dim, output_dim=dim, layers_before_pool=0, max_seq_len=32
    )
    head = code["CLIPScoreHead"](
        clip, video_adapter_layers=N_VIDEO_ADAPTER_LAYERS, text_adapter_layers=0, feature_dim=dim
    )
    model = code["MineCLIP"].__new__(code["MineCLIP"])
    code["VideoRewardBase"].__init__(
        model, image_encoder=clip.vision_model, temporal_encoder=temporal, reward_head=head
    )
    model.clip_model = clip
    randomize_(model, seed=0)
    return model.eval()


# ------------------------------------------------------------------------------ fixtures


def write_tokenization(code: dict, tok, out_dir: Path) -> list[str]:
    """Ids of every prompt, and the authors' padded (77) tokens of those vpt-lens accepts; returns the latter."""
    code["tokenization"].get_tokenizer = lambda *args, **kwargs: tok
    bpe_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    accepted = [p for p, ids in zip(PROMPTS, bpe_ids) if 0 < len(ids) <= 75]
    tokens = code["tokenization"].tokenize_batch(accepted, max_length=77, language_model="clip")
    (out_dir / "tokenization.json").write_text(
        json.dumps(
            {"prompts": PROMPTS, "bpe_ids": bpe_ids, "accepted": accepted, "tokens": tokens.tolist()},
            ensure_ascii=False,
            indent=1,
        )
        + "\n"
    )
    return accepted


def write_clip_video(path: Path) -> None:
    """24 frames of 90x160 at 20 fps, PNG in AVI: lossless RGB, so every decoder reads the same pixels."""
    import av

    h, w = 90, 160
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=20)
        stream.width, stream.height, stream.pix_fmt = w, h, "rgb24"
        for i in range(24):
            frame = np.stack(
                [(xx * 255 // w + 7 * i) % 256, (yy * 255 // h + 3 * i) % 256, ((xx + yy + 11 * i) * 2) % 256], -1
            ).astype(np.uint8)
            frame[20 + i : 40 + i, 30 + 2 * i : 60 + 2 * i] = (200, 30, 90)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def random_videos() -> np.ndarray:
    """(2, 16, 3, 160, 256) uint8 from the legacy RandomState, whose stream numpy keeps fixed."""
    return np.random.RandomState(VIDEO_SEED).randint(0, 256, size=(2, 16, 3, *RESOLUTION), dtype=np.uint8)


def write_mineclip(code: dict, accepted: list[str], out_dir: Path) -> None:
    model = make_tiny_mineclip(code)
    halves: dict[int, torch.Tensor] = {}  # aliases of one parameter stay one tensor: stored once
    state = {f"model.{k}": halves.setdefault(v.data_ptr(), v.half()) for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 0}, out_dir / "attn_tiny.pth")

    write_clip_video(out_dir / "clip_20fps.avi")
    frames = code["load_video_to_lst"](str(out_dir / "clip_20fps.avi"), to_rgb=True)[-16:]
    clip_video = torch.Tensor(np.array([code["process_frame_mineclip"](f) for f in frames])).unsqueeze(0)
    videos = torch.from_numpy(random_videos())
    with torch.no_grad():
        text = model.encode_text(accepted)
        image = model.forward_image_features(videos)
        video = model.forward_video_features(image)
        logits_per_video, _ = model.forward_reward_head(video, text_tokens=text)
        outputs = {
            "text_features": text,
            "image_features": image,
            "video_features": video,
            "video_features_direct": model.encode_video(videos),
            "clip_video_features": model.encode_video(clip_video),
            "logits_per_video": logits_per_video,
        }
    save_file({k: v.contiguous() for k, v in outputs.items()}, out_dir / "reference.safetensors")
    config = {
        "clip": TINY_CLIP,
        "pool_type": TINY_POOL,
        "resolution": RESOLUTION,
        "mlp_adapter_spec": f"v0-{N_VIDEO_ADAPTER_LAYERS}.t0",
        "video_seed": VIDEO_SEED,
        "clip_frames_sha256": hashlib.sha256(clip_video.to(torch.uint8).numpy().tobytes()).hexdigest(),
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=1) + "\n")

    full_cfg = {k: v for k, v in code["MINECLIP_CONFIG"].items() if k != "ckpt"}
    released = code["MineCLIP"](**full_cfg).state_dict()
    keys = [[f"model.{k}", list(v.shape)] for k, v in released.items()]
    (out_dir / "released_keys.json").write_text(json.dumps({"mineclip_config": full_cfg, "keys": keys}) + "\n")


def write_prior(code: dict, accepted: list[str], mineclip_dir: Path, out_dir: Path) -> None:
    vae_cls = code["TranslatorVAE"]
    prior = vae_cls(**PRIOR_TINY)
    randomize_(prior, seed=1)
    prior.eval()
    torch.save(prior.state_dict(), out_dir / "prior_tiny.pt")

    rng = np.random.RandomState(3)
    text = torch.from_numpy(rng.standard_normal((3, PRIOR_TINY["input_dim"])).astype(np.float32))
    visual = torch.from_numpy(rng.standard_normal((3, PRIOR_TINY["input_dim"])).astype(np.float32))
    outputs = {"text_embeds": text, "visual_embeds": visual}
    with torch.no_grad():
        outputs["encoded"] = prior.encode(visual, text)
        outputs["decoded_mean"] = prior(text, deterministic=True)
        for seed in PRIOR_SEEDS:
            torch.manual_seed(seed)
            outputs[f"sampled_seed{seed}"] = prior(text)

    mineclip = make_tiny_mineclip(code)
    for i, prompt in enumerate(accepted[:3]):
        for seed in PRIOR_SEEDS:
            torch.manual_seed(seed)  # the prior draws its latent from torch's global generator
            goal = code["get_prior_embed"](prompt, mineclip, prior, "cpu")
            outputs[f"prompt{i}_seed{seed}"] = torch.from_numpy(goal)
    save_file({k: v.contiguous() for k, v in outputs.items()}, out_dir / "reference.safetensors")
    config = {**PRIOR_TINY, "seeds": list(PRIOR_SEEDS), "prompts": accepted[:3], "mineclip": str(mineclip_dir)}
    (out_dir / "config.json").write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n")

    info = code["PRIOR_INFO"]
    released = vae_cls(input_dim=info["mineclip_dim"], hidden_dim=info["hidden_dim"], latent_dim=info["latent_dim"])
    keys = [[k, list(v.shape)] for k, v in released.state_dict().items()]
    (out_dir / "released_keys.json").write_text(json.dumps({"prior_info": info, "keys": keys}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mineclip-repo", type=Path, required=True)
    parser.add_argument("--steve1-repo", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    code = import_authors_code(args.mineclip_repo.resolve(), args.steve1_repo.resolve())
    mineclip_dir, prior_dir = args.out / "mineclip_tiny", args.out / "steve1_prior_tiny"
    mineclip_dir.mkdir(parents=True, exist_ok=True)
    prior_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tok = make_hf_tokenizer(Path(tmp))
        accepted = write_tokenization(code, tok, mineclip_dir)
        write_mineclip(code, accepted, mineclip_dir)
        write_prior(code, accepted, mineclip_dir.name, prior_dir)
    for folder in (mineclip_dir, prior_dir):
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{folder}: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
