"""A KL-regularised convolutional autoencoder for latent diffusion (Rombach et al. 2022, "LDM", sec. 3 and app. G).

    x (B, C, *spatial)  ->  Encoder  ->  mean, logvar (B, z, *spatial / f)  ->  z = mean + exp(logvar / 2) eps
    z (B, z, *spatial / f)  ->  Decoder  ->  x_hat (B, C, *spatial)

The encoder halves every spatial dim at each level but the last, so the down-sampling factor is
f = 2 ** (len(channel_mult) - 1): (1, 2, 2) gives f = 4 (28x28 -> 7x7), (1, 2, 2, 4) gives f = 8 (64x64 -> 8x8).
Inputs whose size is not a multiple of f are zero-padded at the end of each dim (as the UNet does) and the decoder's
output is cropped back to `AutoencoderConfig.spatial`, the data's size, which the config records.

Blocks are plain pre-norm residual blocks (GroupNorm + SiLU, 3x3 conv, twice), without the noise embedding of the
UNet's blocks; LDM's autoencoder adds one self-attention block in the middle, which at these sizes (<= 16x16 latents)
is cheap and is kept. The posterior is a diagonal Gaussian: `kl()` is KL(q(z|x) || N(0, I)) summed over each image's
latent, and the training loss (`diffusekit.train.autoencoder`) weighs it by a small `kl_weight` against the
reconstruction error summed over each image's pixels, as LDM does (kl_weight 1e-6): the latent stays close to the
data, and the KL term only keeps its scale from drifting. The diffusion model then sees z * scale, with `scale` =
1 / std of the latent over the data (`diffusekit.latent`), LDM's 0.18215.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .groupnorm import GroupNormAct
from .layers import Attention, Downsample, Upsample, conv_nd, zero_


@dataclass
class AutoencoderConfig:
    """Everything needed to rebuild an autoencoder; saved as JSON beside the weights."""

    in_channels: int = 1
    dims: int = 2  # spatial dims: 1 signals, 2 images, 3 video/volumes
    spatial: tuple[int, ...] = (28, 28)  # the data's spatial size: the decoder crops its output back to it
    latent_channels: int = 4  # LDM's f=4 and f=8 models use 3 and 4
    channels: int = 32  # width at level 0; level i has channels * channel_mult[i]
    channel_mult: tuple[int, ...] = (1, 2, 2)  # f = 2 ** (len - 1)
    num_res_blocks: int = 1  # per level, in the encoder and in the decoder
    mid_attn: bool = True
    norm_groups: int = 8

    def __post_init__(self):
        self.spatial, self.channel_mult = tuple(self.spatial), tuple(self.channel_mult)
        if self.dims not in (1, 2, 3):
            raise ValueError(f"dims must be 1, 2 or 3, got {self.dims}")
        if len(self.spatial) != self.dims:
            raise ValueError(f"spatial {self.spatial} must have one size per spatial dim (dims={self.dims})")
        if self.latent_channels < 1 or self.in_channels < 1 or not self.channel_mult:
            raise ValueError("latent_channels and in_channels must be >= 1 and channel_mult non-empty")

    @property
    def factor(self) -> int:
        """The down-sampling factor f of every spatial dim."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def latent_spatial(self) -> tuple[int, ...]:
        """The latent's spatial size: ceil(size / f) per dim (the input is padded to a multiple of f)."""
        return tuple(math.ceil(s / self.factor) for s in self.spatial)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AutoencoderConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown AutoencoderConfig fields: {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def autoencoder_config(factor: int, in_channels: int, spatial, latent_channels: int = 4, **overrides):
    """The config for down-sampling factor 4 or 8 (or 2, 16): widths (32, 64, 64[, 128, 128])."""
    if factor not in (2, 4, 8, 16):
        raise ValueError(f"factor must be 2, 4, 8 or 16 (a power of 2: each level halves the size), got {factor}")
    mult = (1, 2, 2, 4, 4)[: int(math.log2(factor)) + 1]
    return AutoencoderConfig(in_channels=in_channels, dims=len(tuple(spatial)), spatial=tuple(spatial),
                             latent_channels=latent_channels, channel_mult=mult, **overrides)


class Block(nn.Module):
    """Pre-norm residual block: x + conv(SiLU(GN(conv(SiLU(GN(x)))))), a 1x1 conv on the skip when widths differ."""

    def __init__(self, dims: int, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1 = GroupNormAct(math.gcd(groups, c_in), c_in)
        self.conv1 = conv_nd(dims, c_in, c_out, 3)
        self.norm2 = GroupNormAct(math.gcd(groups, c_out), c_out)
        self.conv2 = zero_(conv_nd(dims, c_out, c_out, 3))
        self.skip = conv_nd(dims, c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.conv2(self.norm2(self.conv1(self.norm1(x))))


def _middle(cfg: AutoencoderConfig, c: int) -> nn.ModuleList:
    layers = [Block(cfg.dims, c, c, cfg.norm_groups)]
    if cfg.mid_attn:
        layers.append(Attention(c, head_dim=c, groups=cfg.norm_groups))  # one head
    return nn.ModuleList(layers + [Block(cfg.dims, c, c, cfg.norm_groups)])


class Encoder(nn.Module):
    """x (B, C, *spatial), size a multiple of f -> (mean, logvar), each (B, latent_channels, *spatial / f)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        ch, c = cfg.channels, cfg.channels
        self.conv_in = conv_nd(cfg.dims, cfg.in_channels, ch, 3)
        self.down = nn.ModuleList()
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(Block(cfg.dims, c, ch * mult, cfg.norm_groups))
                c = ch * mult
            if level < len(cfg.channel_mult) - 1:
                self.down.append(Downsample(cfg.dims, c))
        self.mid = _middle(cfg, c)
        self.norm_out = GroupNormAct(math.gcd(cfg.norm_groups, c), c)
        self.conv_out = conv_nd(cfg.dims, c, 2 * cfg.latent_channels, 3)

    def forward(self, x):
        h = self.conv_in(x)
        for layer in [*self.down, *self.mid]:
            h = layer(h)
        return self.conv_out(self.norm_out(h)).chunk(2, dim=1)  # mean, logvar


class Decoder(nn.Module):
    """z (B, latent_channels, *latent_spatial) -> x_hat (B, C, *latent_spatial * f)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        ch = cfg.channels
        c = ch * cfg.channel_mult[-1]
        self.conv_in = conv_nd(cfg.dims, cfg.latent_channels, c, 3)
        self.mid = _middle(cfg, c)
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for _ in range(cfg.num_res_blocks):
                self.up.append(Block(cfg.dims, c, ch * mult, cfg.norm_groups))
                c = ch * mult
            if level > 0:
                self.up.append(Upsample(cfg.dims, c))
        self.norm_out = GroupNormAct(math.gcd(cfg.norm_groups, c), c)
        self.conv_out = conv_nd(cfg.dims, c, cfg.in_channels, 3)

    def forward(self, z):
        h = self.conv_in(z)
        for layer in [*self.mid, *self.up]:
            h = layer(h)
        return self.conv_out(self.norm_out(h))


class Autoencoder(nn.Module):
    """Encoder + decoder with a diagonal-Gaussian posterior; see the module docstring."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = Encoder(config), Decoder(config)

    def _check(self, x):
        cfg = self.config
        if x.dim() != cfg.dims + 2 or x.shape[1] != cfg.in_channels or tuple(x.shape[2:]) != cfg.spatial:
            raise ValueError(f"the autoencoder takes (B, {cfg.in_channels}, {', '.join(map(str, cfg.spatial))}) "
                             f"data, got shape {tuple(x.shape)}")

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z | x), each (B, latent_channels, *latent_spatial); logvar clamped as in LDM."""
        self._check(x)
        pad = [p for s in reversed(x.shape[2:]) for p in (0, -s % self.config.factor)]  # F.pad: last dim first
        mean, logvar = self.encoder(F.pad(x, pad) if any(pad) else x)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x_hat (B, C, *spatial), cropped back to the data's size."""
        out = self.decoder(z)
        return out[(..., *[slice(0, s) for s in self.config.spatial])]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """(x_hat from a posterior sample, mean, logvar): one training pass."""
        mean, logvar = self.posterior(x)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return self.decode(mean + (0.5 * logvar).exp() * eps), mean, logvar


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over each sample's latent: (B,)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


__all__ = ["AutoencoderConfig", "Autoencoder", "Encoder", "Decoder", "autoencoder_config", "kl_divergence"]
