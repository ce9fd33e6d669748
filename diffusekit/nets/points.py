"""A permutation-equivariant denoiser for point clouds: a set transformer with induced attention and adaLN.

    x (B, 3, P) -> eps_hat (B, 3, P); permuting the P points permutes the output the same way.

Why this layout (and not a UNet): a cloud is a set, so every layer must treat points alike and in any order.
Full self-attention over P = 1,024 points costs O(P^2) per layer; the induced set attention block (ISAB, Lee et
al. 2019, "Set Transformer", section 3.2) routes it through M learned inducing points instead,
    H = Attn(I, X)   (M queries attend to the P points: a summary of the whole shape, O(M P))
    X = X + Attn(X, H)   (each point reads the summary back: O(P M)),
so every point sees the whole shape at linear cost: what a point needs to find its surface (is this a torus, how
thick, which way up) is global. A per-point MLP follows, as in a transformer. The noise level and the class
embedding modulate every block through adaptive LayerNorm with zero-initialised gates (adaLN-Zero, DiT: Peebles &
Xie 2023, section 3.2), so each block starts as the identity. Point coordinates enter through Fourier features
(sin/cos at octave frequencies, as NeRF), which let an MLP place points precisely.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import SinusoidalEmbedding


@dataclass
class PointNetConfig:
    """Everything needed to rebuild a PointTransformer; saved as JSON beside the weights."""

    in_channels: int = 3  # coordinates per point
    width: int = 128  # feature size per point
    depth: int = 4  # induced-attention blocks
    heads: int = 4
    inducing: int = 32  # M inducing points (Set Transformer uses 16-32)
    fourier: int = 6  # octaves of Fourier features per coordinate: 1, 2, 4, .. 2^(fourier-1) times pi
    mlp_ratio: int = 2
    emb_scale: float = 1.0  # c_noise multiplier before the sinusoids (as UNetConfig)
    cond_dim: int | None = None  # size of an optional conditioning vector (class embedding) added to the noise one

    def __post_init__(self):
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must divide into {self.heads} heads")
        for name in ("in_channels", "width", "depth", "heads", "inducing", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PointNetConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown PointNetConfig fields: {sorted(unknown)}")
        return cls(**d)


# Size registry, named as the UNet's so `--model` means the same everywhere. Parameter counts: see the tests.
POINT_PRESETS: dict[str, dict] = {
    "tiny": dict(width=32, depth=2, heads=2, inducing=8, fourier=4),  # 0.04M: unit tests
    "small": dict(width=128, depth=4, heads=4, inducing=32),  # 1.28M: the default (shapes3d)
    "base": dict(width=256, depth=8, heads=8, inducing=64),  # 9.9M
}


def point_config(preset: str, in_channels: int = 3, **overrides) -> PointNetConfig:
    if preset not in POINT_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {sorted(POINT_PRESETS)}")
    return PointNetConfig(**{**POINT_PRESETS[preset], "in_channels": in_channels, **overrides})


def modulate(x, shift, scale):
    """adaLN: x * (1 + scale) + shift, with (B, C) shift and scale broadcast over the points."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Attend(nn.Module):
    """Multi-head attention of queries (B, Q, C) to keys/values (B, K, C) (PyTorch's fused kernel)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.out = nn.Linear(width, width), nn.Linear(width, 2 * width), nn.Linear(width, width)

    def forward(self, queries, keys):
        b, nq, c = queries.shape
        h = self.heads
        q = self.q(queries).view(b, nq, h, c // h).transpose(1, 2)  # (B, h, Q, c/h)
        k, v = self.kv(keys).view(b, keys.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4)  # (B, h, K, c/h) each
        o = F.scaled_dot_product_attention(q, k, v)  # (B, h, Q, c/h)
        return self.out(o.transpose(1, 2).reshape(b, nq, c))


class InducedBlock(nn.Module):
    """One ISAB + MLP block with adaLN-Zero: the inducing points read the cloud, the cloud reads them back."""

    def __init__(self, cfg: PointNetConfig):
        super().__init__()
        w = cfg.width
        self.inducing = nn.Parameter(torch.randn(cfg.inducing, w) * w ** -0.5)
        self.norm_i, self.norm_x, self.norm_h, self.norm_m = (nn.LayerNorm(w, elementwise_affine=False)
                                                               for _ in range(4))
        self.read, self.write = Attend(w, cfg.heads), Attend(w, cfg.heads)
        self.mlp = nn.Sequential(nn.Linear(w, cfg.mlp_ratio * w), nn.GELU(), nn.Linear(cfg.mlp_ratio * w, w))
        self.ada = nn.Linear(w, 6 * w)  # shift/scale for the read and the MLP, gates for the write and the MLP
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x, emb):  # x (B, P, w), emb (B, w)
        s1, c1, g1, s2, c2, g2 = self.ada(F.silu(emb)).chunk(6, dim=1)  # (B, w) each
        xn = modulate(self.norm_x(x), s1, c1)
        summary = self.read(self.norm_i(self.inducing).expand(x.shape[0], -1, -1), xn)  # (B, M, w)
        x = x + g1[:, None] * self.write(xn, self.norm_h(summary))  # (B, P, w)
        return x + g2[:, None] * self.mlp(modulate(self.norm_m(x), s2, c2))


class PointTransformer(nn.Module):
    """net(x (B, C, P), c_noise (B,), cond (B, cond_dim) or None) -> (B, C, P)."""

    def __init__(self, config: PointNetConfig):
        super().__init__()
        self.config = cfg = config
        w = cfg.width
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(cfg.fourier), persistent=False)
        self.lift = nn.Linear(cfg.in_channels * (1 + 2 * cfg.fourier), w)
        self.time = nn.Sequential(SinusoidalEmbedding(w, scale=cfg.emb_scale), nn.Linear(w, w), nn.SiLU(),
                                  nn.Linear(w, w))
        self.cond = nn.Linear(cfg.cond_dim, w) if cfg.cond_dim else None
        self.blocks = nn.ModuleList(InducedBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False)
        self.ada_out = nn.Linear(w, 2 * w)
        self.out = nn.Linear(w, cfg.in_channels)
        for layer in (self.ada_out, self.out):  # the network starts by predicting 0
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x, c_noise, cond=None):
        if x.ndim != 3 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected clouds (B, {self.config.in_channels}, P), got {tuple(x.shape)}")
        pts = x.transpose(1, 2)  # (B, P, C)
        ang = pts[..., None] * self.freqs  # (B, P, C, F)
        feats = torch.cat([pts, ang.sin().flatten(2), ang.cos().flatten(2)], dim=-1)  # (B, P, C (1 + 2F))
        h = self.lift(feats)  # (B, P, w)
        emb = self.time(c_noise.expand(x.shape[0]) if c_noise.ndim == 0 else c_noise)  # (B, w)
        if self.cond is not None and cond is not None:
            emb = emb + self.cond(cond)
        for block in self.blocks:
            h = block(h, emb)
        shift, scale = self.ada_out(F.silu(emb)).chunk(2, dim=1)
        return self.out(modulate(self.norm_out(h), shift, scale)).transpose(1, 2).to(x.dtype)  # (B, C, P)
