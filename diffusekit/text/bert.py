"""A small BERT encoder, readable in one file (inference only), that loads all-MiniLM-L6-v2's weights.

BERT (Devlin et al. 2019) as implemented by Hugging Face's `BertModel`, which is what the checkpoint was trained in:
    embeddings   x = LayerNorm(word[ids] + position[0..T-1] + token_type[0])          (B, T, C)
    each layer   x = LayerNorm(x + Attention(x, mask))      post-LN: the norm comes after the residual sum
                 x = LayerNorm(x + W2 GELU(W1 x))            GELU is the exact erf form ("gelu" in the config)
    output       x, the last hidden state: one vector per token                         (B, T, C)
`mask` (B, T) bool is True for real tokens, False for padding: padded keys get no attention, so a real token's
output does not depend on how much padding its batch has. Padded positions still produce (ignored) vectors.

There is no dropout and no pooler: the encoder is only ever run frozen, and sentence-transformers' embedding is
the masked mean of the last hidden state (see `encoder.py`). Names are ours; `hf_key` maps each to the name in the
checkpoint, and `load_state` refuses a checkpoint with missing, unexpected or misshapen tensors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class BertConfig:
    # Defaults are all-MiniLM-L6-v2's config.json (MiniLM-L6-H384-uncased, 22.7M parameters).
    vocab_size: int = 30522
    max_position: int = 512  # learned absolute positions: the hard limit on tokens per prompt
    type_vocab_size: int = 2  # segment A/B; a single prompt is all segment 0
    dim: int = 384  # C
    n_layer: int = 6
    n_head: int = 12  # head size 32
    mlp_dim: int = 1536  # 4 * dim
    eps: float = 1e-12  # LayerNorm epsilon, as trained (not PyTorch's default 1e-5)


class Embeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.position = nn.Embedding(cfg.max_position, cfg.dim)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.dim)
        self.ln = nn.LayerNorm(cfg.dim, eps=cfg.eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        pos = torch.arange(T, device=ids.device)  # (T,)
        x = self.word(ids) + self.position(pos) + self.token_type.weight[0]  # (B, T, C); one segment
        return self.ln(x)


class SelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.q = nn.Linear(cfg.dim, cfg.dim)
        self.k = nn.Linear(cfg.dim, cfg.dim)
        self.v = nn.Linear(cfg.dim, cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        nh = self.n_head
        q = self.q(x).view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k(x).view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
        v = self.v(x).view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
        # Boolean mask, True = may attend; (B, 1, 1, T) broadcasts over heads and queries. Every row keeps at least
        # [CLS] and [SEP], so no softmax row is all -inf.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.proj(y)


class Layer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ln1 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.fc = nn.Linear(cfg.dim, cfg.mlp_dim)
        self.out = nn.Linear(cfg.mlp_dim, cfg.dim)
        self.ln2 = nn.LayerNorm(cfg.dim, eps=cfg.eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.attn(x, mask))  # (B, T, C); post-LN, as in BERT
        x = self.ln2(x + self.out(F.gelu(self.fc(x))))  # (B, T, C)
        return x


class Bert(nn.Module):
    def __init__(self, cfg: BertConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or BertConfig()
        self.embed = Embeddings(cfg)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.n_layer))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids (B, T) int64 token ids, mask (B, T) bool (True = real token) -> last hidden state (B, T, C)."""
        if ids.shape[1] > self.cfg.max_position:
            raise ValueError(f"{ids.shape[1]} tokens exceed the {self.cfg.max_position} learned positions")
        x = self.embed(ids)  # (B, T, C)
        for layer in self.layers:
            x = layer(x, mask)
        return x

    def load_state(self, hf_state: dict[str, torch.Tensor]) -> None:
        """Load a Hugging Face `BertModel` state dict (e.g. read from model.safetensors), strictly."""
        ours = self.state_dict()
        got: dict[str, torch.Tensor] = {}
        unexpected = []
        for name, t in hf_state.items():
            if name in HF_IGNORED or name.startswith("pooler."):  # buffers and the unused [CLS] pooler
                continue
            key = our_key(name)
            if key not in ours:
                unexpected.append(name)
            elif tuple(t.shape) != tuple(ours[key].shape):
                raise ValueError(f"checkpoint tensor {name} has shape {tuple(t.shape)}; "
                                 f"{key} expects {tuple(ours[key].shape)} (config {self.cfg})")
            else:
                got[key] = t
        missing = sorted(set(ours) - set(got))
        if missing or unexpected:
            raise ValueError(f"checkpoint does not match Bert: missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.load_state_dict(got, strict=True)


# Checkpoint name -> our name, applied in order to each key.
HF_RENAMES = [
    (r"^embeddings\.word_embeddings\.", "embed.word."),
    (r"^embeddings\.position_embeddings\.", "embed.position."),
    (r"^embeddings\.token_type_embeddings\.", "embed.token_type."),
    (r"^embeddings\.LayerNorm\.", "embed.ln."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.",
     lambda m: f"layers.{m[1]}.attn.{m[2][0]}."),  # query -> q, key -> k, value -> v
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.ln1."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.fc."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.out."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.ln2."),
]
HF_IGNORED = {"embeddings.position_ids", "embeddings.token_type_ids"}  # index buffers, not weights


def our_key(hf_name: str) -> str:
    name = hf_name.removeprefix("bert.")  # BertForX checkpoints nest the encoder under "bert."
    for pattern, repl in HF_RENAMES:
        new = re.sub(pattern, repl, name)
        if new != name:
            return new
    return name
