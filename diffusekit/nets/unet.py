"""A UNet for 1-D, 2-D and 3-D data (Ho et al. 2020; Dhariwal & Nichol 2021 "ADM"), in one readable file.

    x (B, C, *spatial), c_noise (B,)  ->  UNet  ->  (B, C_out, *spatial)

Levels: level 0 is full resolution and every further level halves each spatial dim. Each level has
`num_res_blocks` residual blocks going down and one more going up (it also takes the skip of the Downsample);
self-attention (and cross-attention when `context_dim` is set) follows the res blocks of the levels in
`attn_levels` and sits in the middle; cross-attention to context tokens (text) can reach further levels
(`xattn_levels`). Inputs of any size work: they are zero-padded at the end of each spatial
dim to a multiple of 2**(levels - 1) and the output is cropped back.

Video (dims=3, x (B, C, T, H, W)) has two layouts. `factorised=True` (the default that `unet_config` picks for
3-D data) is the space-time UNet of Video Diffusion Models (Ho et al. 2022) / Make-A-Video (Singer et al. 2022):
per-frame (1, 3, 3) convs, one zero-initialised temporal (3, 1, 1) conv per res block, attention within each
frame then across frames, and down/up-sampling in H and W only, so T is kept at every level and is never padded;
untrained, it is an image UNet run on every frame (see nets/layers.py). `factorised=False` is the plain 3-D UNet:
3x3x3 convs, attention over all T*H*W positions, T halved with H and W (for volumes, where all three axes are alike).

The noise level enters as a float `c_noise` (a DDPM timestep 0..999 or a continuous level like log(sigma)/4, see
`SinusoidalEmbedding` and `emb_scale`), goes through an MLP, and an optional `cond` vector (B, cond_dim) -- a class
or any other embedding -- is projected and added to it. Each res block turns that embedding into a per-channel
scale and shift (FiLM).
"""

import dataclasses
import json
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import (Attention, Downsample, GroupNormAct, ResBlock, SinusoidalEmbedding, Upsample, conv_nd,
                     space_conv, zero_)


@dataclass
class UNetConfig:
    """Everything needed to rebuild a UNet; saved as JSON beside the weights (`to_dict` / `from_dict`)."""

    in_channels: int = 1
    out_channels: int | None = None  # None: same as in_channels (eps / x0 / v prediction)
    dims: int = 2  # spatial dims: 1 signals (B, C, L), 2 images (B, C, H, W), 3 video/volumes (B, C, T, H, W)
    channels: int = 32  # width at level 0; level i has channels * channel_mult[i]
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2  # per level going down (one more going up)
    attn_levels: tuple[int, ...] = (2,)  # levels with self-attention; keep to low resolution, it is O(N^2)
    mid_attn: bool = True
    head_dim: int = 64  # few wide heads are fast in bf16 (see `Attention`); widths below head_dim use one head
    norm_groups: int = 32  # GroupNorm groups; a width not divisible by it (skip concatenations) uses the gcd
    dropout: float = 0.0
    emb_scale: float = 1.0  # c_noise multiplier before the sinusoids: 1 for timesteps 0..999, 250 for log(sigma)/4
    # (`diffusekit.model.LOG_SIGMA_EMB_SCALE`: EDM-style runs)
    cond_dim: int | None = None  # size of an optional conditioning vector added to the noise embedding
    context_dim: int | None = None  # size of context tokens for cross-attention; None: off
    # levels with cross-attention (None: the attn_levels); the middle has it whenever mid_attn. Cross-attention is
    # cheap at any resolution (the keys are a caption's ~20 tokens), so text nets reach the 16x16 level of shapes,
    # where a 7-px shape is still 3-4 positions wide and its kind and colour are drawn.
    xattn_levels: tuple[int, ...] | None = None
    # video (dims=3) only: factorised space-time layers (module docstring). False here so that configs saved before
    # this field existed reload as the full 3-D net they were; `unet_config` makes True the default for 3-D data.
    factorised: bool = False

    def __post_init__(self):
        self.channel_mult, self.attn_levels = tuple(self.channel_mult), tuple(self.attn_levels)
        if self.xattn_levels is not None:
            self.xattn_levels = tuple(self.xattn_levels)
        if self.dims not in (1, 2, 3):
            raise ValueError(f"dims must be 1, 2 or 3, got {self.dims}")
        if self.factorised and self.dims != 3:
            raise ValueError(f"factorised=True is the space-time layout for video (dims=3); got dims={self.dims}: "
                             "leave factorised at False for 1-D and 2-D data")
        for name in ("attn_levels", "xattn_levels"):
            bad = [lvl for lvl in getattr(self, name) or () if not 0 <= lvl < len(self.channel_mult)]
            if bad:
                raise ValueError(f"{name} {bad} out of range: levels are 0..{len(self.channel_mult) - 1}")

    def has_xattn(self, level: int) -> bool:
        """Whether the blocks of `level` cross-attend to the context."""
        levels = self.attn_levels if self.xattn_levels is None else self.xattn_levels
        return self.context_dim is not None and level in levels

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown UNetConfig fields: {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, s: str) -> "UNetConfig":
        return cls.from_dict(json.loads(s))


# Size registry. Widths/depths only: in_channels and dims come from the data. Parameter counts: `param_counts()`.
PRESETS: dict[str, dict] = {
    # 3-D counts: factorised (the default for video), then full 3x3x3
    # 0.19M params for 1-channel 2-D data (0.10M 1-D, 0.23M / 0.46M 3-D): unit tests and 8x8 digits; two levels
    "tiny": dict(channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_levels=(1,), norm_groups=8),
    # 1.74M (2-D; 0.86M 1-D, 2.0M / 4.4M 3-D): the default for 28x28 MNIST-like data; 28 -> 14 -> 7 with no
    # padding, attention at 7x7 and in the middle
    "small": dict(channels=32, channel_mult=(1, 2, 2), num_res_blocks=2, attn_levels=(2,), norm_groups=8),
    # 38.3M (2-D; 18M 1-D, 43M / 98M 3-D): CIFAR-scale, the layout of DDPM's 35.7M CIFAR-10 net
    "base": dict(channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2, attn_levels=(2,), norm_groups=32),
}


def unet_config(preset: str, in_channels: int, dims: int = 2, **overrides) -> UNetConfig:
    """UNetConfig for a named size; `overrides` replace any field (e.g. cond_dim=128, emb_scale=250.0).
    3-D data gets the factorised space-time layout unless overridden (factorised=False: full 3-D convs)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {sorted(PRESETS)}")
    layout = {"factorised": True} if dims == 3 else {}
    return UNetConfig(**{**PRESETS[preset], **layout, "in_channels": in_channels, "dims": dims, **overrides})


class UNetBlock(nn.Module):
    """A res block, then self-attention (attn) and cross-attention (xattn) where enabled: one unit of the UNet.
    Factorised video nets split self-attention in two: within each frame (`attn`), then across frames (`time_attn`,
    zero-initialised output like every attention, so it starts as the identity)."""

    def __init__(self, cfg: UNetConfig, c_in: int, c_out: int, emb_dim: int, attn: bool, xattn: bool = False):
        super().__init__()
        fac = cfg.factorised
        self.res = ResBlock(cfg.dims, c_in, c_out, emb_dim, cfg.norm_groups, cfg.dropout, factorised=fac)
        self.attn = Attention(c_out, cfg.head_dim, cfg.norm_groups, over="space" if fac else "all") if attn else None
        self.time_attn = Attention(c_out, cfg.head_dim, cfg.norm_groups, over="time") if attn and fac else None
        self.xattn = Attention(c_out, cfg.head_dim, cfg.norm_groups, cfg.context_dim) if xattn else None

    def forward(self, x, emb, context=None, context_mask=None):
        x = self.res(x, emb)
        if self.attn is not None:
            x = self.attn(x)
        if self.time_attn is not None:
            x = self.time_attn(x)
        if self.xattn is not None and context is not None:
            x = self.xattn(x, context, context_mask)
        return x


class UNet(nn.Module):
    """The network; see the module docstring. Build from a config: UNet(unet_config("small", in_channels=1))."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        ch, levels = cfg.channels, len(cfg.channel_mult)
        emb_dim = 4 * ch
        self.noise_emb = SinusoidalEmbedding(ch, scale=cfg.emb_scale)
        self.emb_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.cond_proj = nn.Linear(cfg.cond_dim, emb_dim) if cfg.cond_dim is not None else None

        # factorised: the in/out convs are per frame too, so an untrained net treats frames independently
        conv3 = space_conv if cfg.factorised else (lambda i, o: conv_nd(cfg.dims, i, o, 3))
        self.conv_in = conv3(cfg.in_channels, ch)
        self.down, skips, c = nn.ModuleList(), [ch], ch
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(UNetBlock(cfg, c, ch * mult, emb_dim, level in cfg.attn_levels,
                                           cfg.has_xattn(level)))
                c = ch * mult
                skips.append(c)
            if level < levels - 1:
                self.down.append(Downsample(cfg.dims, c, cfg.factorised))
                skips.append(c)
        mid_x = cfg.mid_attn and cfg.context_dim is not None
        self.mid = nn.ModuleList([UNetBlock(cfg, c, c, emb_dim, cfg.mid_attn, mid_x),
                                  UNetBlock(cfg, c, c, emb_dim, False)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(UNetBlock(cfg, c + skips.pop(), ch * mult, emb_dim, level in cfg.attn_levels,
                                         cfg.has_xattn(level)))
                c = ch * mult
            if level > 0:
                self.up.append(Upsample(cfg.dims, c, cfg.factorised))
        self.norm_out = GroupNormAct(math.gcd(cfg.norm_groups, c), c)
        self.conv_out = zero_(conv3(c, cfg.out_channels or cfg.in_channels))

    def _check(self, x, c_noise, cond, context):
        cfg = self.config
        if x.dim() != cfg.dims + 2:
            raise ValueError(f"x must be (B, C, *spatial) with {cfg.dims} spatial dims (dims={cfg.dims}), "
                             f"got shape {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(f"x has {x.shape[1]} channels, the net was built for in_channels={cfg.in_channels}")
        if c_noise.shape not in ((), (x.shape[0],)):
            raise ValueError(f"c_noise must have shape ({x.shape[0]},) or (), got {tuple(c_noise.shape)}")
        if cond is not None and (cfg.cond_dim is None or cond.shape != (x.shape[0], cfg.cond_dim)):
            raise ValueError(f"cond must be None or (B, cond_dim) = ({x.shape[0]}, {cfg.cond_dim}) "
                             f"(cond_dim={cfg.cond_dim}), got shape {tuple(cond.shape)}")
        if context is not None and (cfg.context_dim is None or context.dim() != 3
                                    or context.shape[2] != cfg.context_dim):
            raise ValueError(f"context must be None or (B, N, context_dim={cfg.context_dim}), "
                             f"got shape {tuple(context.shape)}")

    def forward(self, x, c_noise, cond=None, context=None, context_mask=None):
        """x (B, C, *spatial); c_noise (B,) or () float tensor; cond (B, cond_dim) or None (no conditioning: adds
        nothing, e.g. for classifier-free guidance's unconditional pass); context (B, N, context_dim) or None (the
        cross-attention layers are skipped); context_mask (B, N) bool, True for the context tokens to attend to
        (text padding False), or None for all. Returns (B, C_out, *spatial)."""
        self._check(x, c_noise, cond, context)
        if context_mask is not None and (context is None or context_mask.dtype != torch.bool
                                         or context_mask.shape != context.shape[:2]):
            raise ValueError(f"context_mask must be a bool tensor (B, N) matching context, got {context_mask.dtype} "
                             f"{tuple(context_mask.shape)}")
        spatial = x.shape[2:]
        m = 2 ** (len(self.config.channel_mult) - 1)
        ms = [1 if self.config.factorised and i == 0 else m for i in range(len(spatial))]  # factorised: T kept
        pad = [p for s, mi in zip(reversed(spatial), reversed(ms)) for p in (0, -s % mi)]  # F.pad: last dim first
        if any(pad):
            x = F.pad(x, pad)  # (B, C, *padded)

        emb = self.emb_mlp(self.noise_emb(c_noise.expand(x.shape[0])))  # (B, emb_dim)
        if cond is not None:
            emb = emb + self.cond_proj(cond)
        emb = F.silu(emb)  # every FiLM layer starts with SiLU: do it once here

        h = self.conv_in(x)  # (B, ch, *padded)
        hs = [h]
        for block in self.down:
            h = block(h, emb, context, context_mask)
            hs.append(h)
        for block in self.mid:
            h = block(h, emb, context, context_mask)
        for block in self.up:
            if isinstance(block, UNetBlock):
                h = torch.cat([h, hs.pop()], dim=1)  # (B, C + C_skip, *spatial_level)
            h = block(h, emb, context, context_mask)
        h = self.conv_out(self.norm_out(h))  # (B, C_out, *padded)
        return h[(..., *[slice(0, s) for s in spatial])] if any(pad) else h  # crop back: (B, C_out, *spatial)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def param_counts(in_channels: int = 1, verbose: bool = True) -> dict[tuple[str, int], int]:
    """Parameter count of every preset for dims 1, 2, 3 (printed as a table when verbose)."""
    counts = {(name, dims): param_count(UNet(unet_config(name, in_channels, dims)))
              for name in PRESETS for dims in (1, 2, 3)}
    if verbose:
        print(f"{'preset':8s}" + "".join(f"{f'{d}-D':>12s}" for d in (1, 2, 3)))
        for name in PRESETS:
            print(f"{name:8s}" + "".join(f"{counts[name, d]:12,d}" for d in (1, 2, 3)))
    return counts
