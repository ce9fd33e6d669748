"""Text encodings of a data set's captions, computed once and kept on disk.

    from diffusekit.text import encode_captions
    enc = encode_captions(captions)        # N captions; loads the encoder only on a cache miss
    tokens, mask = enc.lookup(batch_idx)   # (B, L, 384), (B, L) for the images batch_idx of the data set
    e = enc.embeddings[enc.index]          # (N, 384) sentence embeddings

Captions repeat (a digit data set has ~60 distinct ones for 5,000 images), so each distinct caption is encoded
once and `index` maps image -> row. Location: $DIFFUSEKIT_CACHE, else ~/.cache/diffusekit; files under `<cache>/text/`.
Key: sha256 of the sorted distinct captions, the encoder's id (weights version) and max_length, so a change to any
of them is a new file. Format: safetensors (tokens float32 (U, L, C), zero on padding; mask bool (U, L); embeddings
float32 (U, C)) with the captions and encoder id as JSON in its metadata, checked on load; written atomically (temp
file + rename). A file that is unreadable or does not match is recomputed and replaced. Delete the folder to clear.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .encoder import DEFAULT_MAX_LENGTH, TextEncoder, minilm_id, pool

FORMAT = "diffusekit-text-cache-1"


def text_cache_dir() -> Path:
    return Path(os.environ.get("DIFFUSEKIT_CACHE") or "~/.cache/diffusekit").expanduser() / "text"


@dataclass
class CaptionEncodings:
    captions: list[str]  # the U distinct captions, sorted
    index: torch.Tensor  # (N,) int64: row in captions/tokens for each caption given, in order
    tokens: torch.Tensor  # (U, L, C) float32, zero where mask is False
    mask: torch.Tensor  # (U, L) bool
    embeddings: torch.Tensor  # (U, C) float32, unit length
    encoder_id: str
    max_length: int
    path: Path | None = None  # the cache file, when cached
    from_cache: bool = False  # True when read from disk without running the encoder

    def __len__(self) -> int:
        return self.index.shape[0]

    def lookup(self, i) -> tuple[torch.Tensor, torch.Tensor]:
        """Data-set indices (int, slice, list or tensor) -> (tokens (..., L, C), mask (..., L))."""
        rows = self.index[i]
        return self.tokens[rows], self.mask[rows]


def encode_captions(
    captions: list[str], encoder: TextEncoder | None = None, *, max_length: int | None = None,
    cache_dir: str | os.PathLike | None = None, use_cache: bool = True, batch_size: int = 256,
) -> CaptionEncodings:
    """Encode every caption (each distinct one once), reading from / writing to the cache.

    `encoder` defaults to `TextEncoder.load(max_length)`, loaded only on a miss. `max_length` defaults to the
    encoder's (256); a caption longer than that is truncated with the encoder's warning, on a miss only.
    """
    if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
        raise TypeError("captions must be a list of strings")
    if len(captions) == 0:
        raise ValueError("captions is empty")
    if encoder is not None:
        if max_length is not None and max_length != encoder.max_length:
            raise ValueError(f"max_length={max_length} differs from the encoder's {encoder.max_length}")
        max_length, enc_id = encoder.max_length, encoder.id
    else:
        max_length = max_length or DEFAULT_MAX_LENGTH
        enc_id = minilm_id()
    unique = sorted(set(captions))
    row = {c: i for i, c in enumerate(unique)}
    index = torch.tensor([row[c] for c in captions], dtype=torch.int64)
    key = hashlib.sha256(json.dumps([FORMAT, enc_id, max_length, unique]).encode()).hexdigest()[:24]
    path = Path(cache_dir).expanduser() / f"{key}.safetensors" if cache_dir else text_cache_dir() / f"{key}.safetensors"

    if use_cache:
        hit = _read(path, unique, enc_id, max_length)
        if hit is not None:
            tokens, mask, emb = hit
            return CaptionEncodings(unique, index, tokens, mask, emb, enc_id, max_length, path, from_cache=True)

    encoder = encoder or TextEncoder.load(max_length)
    parts = []
    for s in range(0, len(unique), batch_size):
        t, m = encoder.encode(unique[s : s + batch_size])
        parts.append((t.float().cpu(), m.cpu()))
    L = max(m.shape[1] for _, m in parts)
    tokens = torch.cat([torch.nn.functional.pad(t, (0, 0, 0, L - t.shape[1])) for t, _ in parts])  # (U, L, C)
    mask = torch.cat([torch.nn.functional.pad(m, (0, L - m.shape[1])) for _, m in parts])  # (U, L)
    emb = pool(tokens, mask)  # (U, C)
    if use_cache:
        _write(path, tokens, mask, emb, unique, enc_id, max_length)
    return CaptionEncodings(unique, index, tokens, mask, emb, enc_id, max_length, path if use_cache else None)


def _write(path: Path, tokens, mask, emb, unique, enc_id, max_length) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    meta = {"format": FORMAT, "encoder": enc_id, "max_length": str(max_length), "captions": json.dumps(unique)}
    save_file({"tokens": tokens.contiguous(), "mask": mask.contiguous(), "embeddings": emb.contiguous()},
              str(tmp), metadata=meta)
    os.replace(tmp, path)


def _read(path: Path, unique, enc_id, max_length):
    """(tokens, mask, embeddings), or None when absent, unreadable or not for these captions and encoder."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if (meta.get("format") != FORMAT or meta.get("encoder") != enc_id
                    or meta.get("max_length") != str(max_length) or json.loads(meta.get("captions", "null")) != unique):
                return None
            tokens, mask, emb = f.get_tensor("tokens"), f.get_tensor("mask"), f.get_tensor("embeddings")
    except Exception:  # a truncated or foreign file of any kind is a miss: it is recomputed and replaced
        return None
    if tokens.shape[0] != len(unique) or mask.shape != tokens.shape[:2] or mask.dtype != torch.bool:
        return None
    return tokens, mask, emb
