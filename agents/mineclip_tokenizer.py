"""CLIP's byte-level BPE tokenizer as MineCLIP runs it, in plain Python.

MineCLIP tokenises a prompt with transformers' fast CLIP tokenizer (`openai/clip-vit-base-patch16`,
special tokens off), then lays it out as `[<|startoftext|>, ids..., <|endoftext|>, 0, 0, ...]`, 77 long.
That tokenizer's pipeline, step for step:

1. normalise: Unicode NFC, each run of whitespace to one space, lowercase (character by character, so
   a final capital sigma becomes `σ`, not `ς`);
2. split into words with CLIP's pattern `'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^\\s\\p{L}\\p{N}]+`,
   dropping whitespace;
3. write each word's UTF-8 bytes in GPT-2's printable byte alphabet, with `</w>` on its last symbol;
4. merge adjacent pairs, lowest merge rank first, and look the pieces up in the vocabulary.

There is no ftfy repair and no HTML unescaping: OpenAI's original tokenizer does both, the one in
MineCLIP's released code (which STEVE-1 calls) does neither, and 5 of the fixture's 24 prompts come out
differently for it.

The vocabulary is CLIP's `bpe_simple_vocab_16e6.txt.gz` (48,894 merges; 49,408 tokens), read from the
installed open-clip-torch distribution: located through its metadata, never imported, because importing
`open_clip` imports torchvision, which this project neither needs nor can pin against its torch.
"""

import functools
import gzip
import hashlib
import importlib.metadata
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import torch
from jaxtyping import Int64
from torch import Tensor

CONTEXT_LENGTH = 77
"""Tokens MineCLIP's text encoder reads, its start and end tokens included."""
SOT_ID, EOT_ID, PAD_ID = 49406, 49407, 0
"""`<|startoftext|>`, `<|endoftext|>`, and the padding MineCLIP uses (0, not the end token)."""
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
N_MERGES = 49152 - 256 - 2
VOCAB_DIST, VOCAB_FILE = "open_clip_torch", "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
"""sha256 of CLIP's `bpe_simple_vocab_16e6.txt.gz`, as OpenAI released it and open-clip-torch ships it."""
INSTALL_HINT = "pip install --no-deps 'open-clip-torch>=2.20'"

_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")  # in the pattern's order, after an apostrophe
_WHITESPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    map(chr, range(0x2000, 0x200B))
)
"""Unicode's White_Space characters: what `\\s` matches in the Oniguruma patterns the fast tokenizer runs."""


def _byte_alphabet() -> list[str]:
    """GPT-2's stand-in character for each byte 0..255: printable bytes stand for themselves, the rest are
    moved to 256 and up, so no byte becomes whitespace or a control character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(moved)) for b in range(256)]


def find_vocab_file() -> Path:
    """CLIP's BPE file inside the installed open-clip-torch, found without importing the package."""
    try:
        dist = importlib.metadata.distribution(VOCAB_DIST)
    except importlib.metadata.PackageNotFoundError as e:
        raise ModuleNotFoundError(
            f"MineCLIP's tokenizer needs CLIP's BPE vocabulary ({VOCAB_FILE}), which vpt-lens reads from the "
            f"open-clip-torch package without importing it. Install it with: {INSTALL_HINT} (--no-deps: only that "
            "file is read, so its torchvision and timm would go unused)"
        ) from e
    entries = [f for f in dist.files or () if f.name == VOCAB_FILE]
    if not entries:
        raise FileNotFoundError(f"the installed {VOCAB_DIST} {dist.version} has no {VOCAB_FILE}; {INSTALL_HINT}")
    return Path(dist.locate_file(entries[0]))


def read_merges(path: Path) -> list[tuple[str, str]]:
    """The merges of a `bpe_simple_vocab_16e6.txt.gz`, checked to be CLIP's own file."""
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != VOCAB_SHA256:
        raise ValueError(
            f"{path}: not CLIP's {VOCAB_FILE} (sha256 differs), so tokens would not be MineCLIP's. "
            f"Reinstall open-clip-torch ({INSTALL_HINT})."
        )
    lines = gzip.decompress(data).decode("utf-8").split("\n")[1 : N_MERGES + 1]  # line 0 is a version header
    return [tuple(line.split()) for line in lines]


class ClipTokenizer:
    """Prompt -> CLIP token ids, exactly as MineCLIP's (transformers' fast CLIP) tokenizer gives them."""

    def __init__(self, merges: Sequence[tuple[str, str]]):
        symbols = sorted(_byte_alphabet(), key=ord)  # vocabulary order: by code point
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + list(SPECIAL_TOKENS)
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.byte_symbols = _byte_alphabet()
        self._word_ids = functools.lru_cache(maxsize=65536)(self._bpe)
        assert (self.encoder[SPECIAL_TOKENS[0]], self.encoder[SPECIAL_TOKENS[1]]) == (SOT_ID, EOT_ID)

    def encode(self, text: str) -> list[int]:
        """The BPE ids of `text`, without start/end tokens (what `tokenizer(text, add_special_tokens=False)` gives)."""
        ids: list[int] = []
        for word in split_words(normalize(text)):
            ids.extend(self._word_ids(word))
        return ids

    def tokenize(self, prompts: str | Sequence[str]) -> Int64[Tensor, "b L"]:
        """Prompts -> (B, 77) ids laid out as MineCLIP does; an empty or over-long prompt is refused.

        MineCLIP would encode an empty prompt as nothing, and cut a long one to its first 75 tokens without
        a word; both make a goal the user did not ask for, so both raise a ValueError here.
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("no prompts given")
        out = torch.full((len(prompts), CONTEXT_LENGTH), PAD_ID, dtype=torch.int64)
        for row, prompt in enumerate(prompts):
            ids = self._checked_ids(prompt)
            out[row, : len(ids) + 2] = torch.tensor([SOT_ID, *ids, EOT_ID])
        return out

    def _checked_ids(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str):
            raise TypeError(f"a prompt must be a str, got {type(prompt).__name__}")
        for special in SPECIAL_TOKENS:
            if special in prompt:
                raise ValueError(f"prompt {prompt!r} contains CLIP's control token {special!r}; remove it")
        ids = self.encode(prompt)
        if not ids:
            raise ValueError(
                f"prompt {prompt!r} is empty (nothing is left after whitespace is dropped): describe the goal, "
                "e.g. 'chop a tree'"
            )
        n_max = CONTEXT_LENGTH - 2
        if len(ids) > n_max:
            raise ValueError(
                f"prompt is {len(ids)} tokens long; MineCLIP reads at most {n_max} (its context is {CONTEXT_LENGTH} "
                f"with the start and end tokens), and its own code would silently drop the rest. Shorten it: "
                f"{prompt[:60]!r}..."
            )
        return ids

    def _bpe(self, word: str) -> tuple[int, ...]:
        symbols = [self.byte_symbols[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        while len(symbols) > 1:
            pairs = set(zip(symbols, symbols[1:]))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, N_MERGES))
            if best not in self.ranks:
                break
            symbols = _merge(symbols, best)
        return tuple(self.encoder[s] for s in symbols)


def _merge(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    """Every occurrence of `pair`, left to right, joined into one symbol."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def normalize(text: str) -> str:
    """NFC, whitespace runs to one space, lowercase one character at a time (as the Rust normaliser does)."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if c in _WHITESPACE else c for c in text)
    return "".join(c.lower() for c in text)


def split_words(text: str) -> list[str]:
    """CLIP's word pattern, scanned by hand: contractions, letter runs, single digits, runs of anything else."""
    words, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
            continue
        end = i + 1
        if c == "'" and (contraction := _contraction_at(text, i + 1)):
            end = i + 1 + len(contraction)
        elif _is_letter(c):
            while end < n and _is_letter(text[end]):
                end += 1
        elif not _is_number(c):
            while end < n and not (text[end] in _WHITESPACE or _is_letter(text[end]) or _is_number(text[end])):
                end += 1
        words.append(text[i:end])
        i = end
    return words


def _contraction_at(text: str, i: int) -> str | None:
    return next((c for c in _CONTRACTIONS if text.startswith(c, i)), None)


def _is_letter(c: str) -> bool:
    return unicodedata.category(c)[0] == "L"


def _is_number(c: str) -> bool:
    return unicodedata.category(c)[0] == "N"


@functools.cache
def get_tokenizer() -> ClipTokenizer:
    """The tokenizer, its vocabulary read once from the installed open-clip-torch."""
    return ClipTokenizer(read_merges(find_vocab_file()))


def tokenize(prompts: str | Sequence[str]) -> Int64[Tensor, "b L"]:
    """Prompts -> (B, 77) MineCLIP token ids; see `ClipTokenizer.tokenize`."""
    return get_tokenizer().tokenize(prompts)
