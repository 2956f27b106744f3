"""CLIP's byte-level BPE tokenizer for the bundled models, without importing open_clip.

It gives the same token ids as open_clip's `SimpleTokenizer` with its default cleaning (tests/test_bundled_clip.py
compares the two on many prompts) and reads the merges file that open_clip installs. Its tables (about 20 MB of
Python objects) are built once per process and shared by every tokenizer.
"""
from __future__ import annotations

import functools
import gzip
import html
import importlib.util
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch

MERGES_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # CLIP's vocabulary: 256 bytes, 256 word ends, these merges and two special tokens
SPECIAL = ("<start_of_text>", "<end_of_text>")
_PATTERN = r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def merges_path() -> Path:
    """The merges file of the installed open_clip, found without importing open_clip (whose import brings
    torchvision and torch._dynamo)."""
    spec = importlib.util.find_spec("open_clip")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / MERGES_FILE).is_file():
            return Path(folder) / MERGES_FILE
    raise FileNotFoundError(f"open_clip's {MERGES_FILE} was not found (open_clip installed: {spec is not None}); "
                            "reinstall open_clip_torch.")


def byte_alphabet() -> Dict[int, str]:
    """Each byte as a printable character: printable Latin-1 bytes as themselves, the others from U+0100 on."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + len(table) - len(printable))
    return table


class BPETokenizer:
    """``tokenizer(prompts) -> (T, context_length)`` long tensor: the start token, the prompt's tokens and the end
    token, zero-padded; a prompt too long for the context is cut and ends with the end token."""

    def __init__(self, context_length: int = 77, merges: Optional[Path] = None):
        import ftfy  # open_clip's dependencies: the same repair of mojibake as open_clip, and the \p{L} classes
        import regex
        self._fix_text = ftfy.fix_text
        self.context_length = int(context_length)
        self._tables = _tables(str(merges or merges_path()))
        self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        self.sot_token_id, self.eot_token_id = (self._tables.ids[t] for t in SPECIAL)
        self.vocab_size = len(self._tables.words)

    def encode(self, text: str) -> List[int]:
        text = " ".join(html.unescape(html.unescape(self._fix_text(text))).split()).lower()
        ids: List[int] = []
        bytes_as = self._tables.byte_chars
        for piece in self._pattern.findall(text):
            ids.extend(self._tables.word_ids("".join(bytes_as[b] for b in piece.encode("utf-8"))))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        words, byte_of = self._tables.words, self._tables.char_bytes
        text = "".join(words[int(i)] for i in ids)
        return bytes(byte_of[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: Union[str, Sequence[str]], context_length: Optional[int] = None) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        length = int(context_length or self.context_length)
        out = torch.zeros(len(texts), length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > length:
                ids = ids[:length]
                ids[-1] = self.eot_token_id
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def __repr__(self) -> str:
        return f"BPETokenizer(context_length={self.context_length}, vocab_size={self.vocab_size})"


class _Tables:
    """The vocabulary and merge ranks, built once per merges file and shared."""

    def __init__(self, merges_file: str):
        lines = gzip.open(merges_file).read().decode("utf-8").split("\n")[1:N_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        self.byte_chars = byte_alphabet()
        self.char_bytes = {c: b for b, c in self.byte_chars.items()}
        chars = list(self.byte_chars.values())
        self.words: List[str] = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + list(SPECIAL)
        self.ids: Dict[str, int] = {w: i for i, w in enumerate(self.words)}
        self.ranks: Dict[tuple, int] = {m: i for i, m in enumerate(merges)}
        self.cache: Dict[str, List[int]] = {t: [self.ids[t]] for t in SPECIAL}

    def word_ids(self, word: str) -> List[int]:
        """A word (bytes as characters) merged pair by pair, lowest rank first, into vocabulary ids."""
        found = self.cache.get(word)
        if found is not None:
            return found
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            ranked = [(self.ranks[p], p) for p in zip(parts, parts[1:]) if p in self.ranks]
            if not ranked:
                break
            pair = min(ranked)[1]
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.ids[p] for p in parts]
        self.cache[word] = ids
        return ids


@functools.lru_cache(maxsize=None)
def _tables(merges_file: str) -> _Tables:
    return _Tables(merges_file)
