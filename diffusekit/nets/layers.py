"""Layers shared by diffusekit's networks. Every layer takes tensors shaped (B, C, *spatial), so one code path serves
1-D signals, images and video; the number of spatial dims picks Conv1d/2d/3d. The norm layer, `GroupNormAct`
(GroupNorm + FiLM + SiLU fused, fast in channels_last), is in `groupnorm.py`.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .groupnorm import GroupNormAct


class _SmallInputsInFp32:
    """Conv mixin: run in fp32 where bf16 would hit a oneDNN bug. In torch 2.13 (oneDNN 3.12) on an AVX512-BF16
    CPU, the bf16 weight gradient of a conv comes out as garbage (often inf/NaN) for some inputs with a spatial dim
    of 1 or 2: 3-D convs with a depth of 2, strided convs over a width of 1 (tests/test_nets.py::
    test_conv_bf16_tiny_dims). Such convs are tiny, so doing every conv with a dim <= 2 in fp32 costs nothing."""

    def forward(self, x):
        cpu = x.device.type == "cpu"
        low = x.dtype == torch.bfloat16 or (cpu and torch.is_autocast_enabled("cpu"))
        if not (low and cpu and min(x.shape[2:]) <= 2):
            return super().forward(x)
        with torch.autocast("cpu", enabled=False):
            bias = None if self.bias is None else self.bias.float()
            return self._conv_forward(x.float(), self.weight.float(), bias).to(torch.bfloat16)


class Conv1d(_SmallInputsInFp32, nn.Conv1d):
    pass


class Conv2d(_SmallInputsInFp32, nn.Conv2d):
    pass


class Conv3d(_SmallInputsInFp32, nn.Conv3d):
    pass


def conv_nd(dims: int, c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Module:
    """Conv1d/2d/3d with 'same' padding for odd kernels."""
    cls = {1: Conv1d, 2: Conv2d, 3: Conv3d}[dims]
    return cls(c_in, c_out, kernel, stride=stride, padding=kernel // 2)


# ---- the factorised space-time layout for video (B, C, T, H, W) ----
# (Ho et al. 2022 "Video Diffusion Models", sec. 3; Singer et al. 2022 "Make-A-Video", sec. 3.2.) Every 3x3 conv
# becomes a per-frame (1, 3, 3) conv, each res block gets a temporal (3, 1, 1) conv on a zero-initialised residual
# branch, attention splits into attention within each frame and attention across frames at each pixel, and
# down/up-sampling touches H and W only (clips are 8-16 frames: no time to halve). At initialisation every temporal
# branch outputs 0, so the net is an image UNet applied to each frame (GroupNorm statistics are still taken over
# the whole clip, which keeps it equivariant to frame order); training grows the temporal mixing from there.


class SpaceConv3d(Conv3d):
    """A (1, k, k) Conv3d: the same 2-D conv on every frame. Parameters are those of the Conv3d (so the weights
    take channels_last_3d with the rest of the net), but a channels_last_3d input is computed as one Conv2d over
    the B*T frames: its memory (B, T, H, W, C) already is a channels_last (B*T, C, H, W) batch, so the reshape is
    free, and oneDNN's 2-D conv beats its 3-D conv with a depth-1 kernel (fwd+bwd, bf16, (4, 32, 16, 32, 32), 1
    thread: 12.9 vs 15.5 ms; fp32 about equal). Other layouts take the plain Conv3d path (the frames would need a
    copy); both give the same numbers."""

    def _conv_forward(self, x, weight, bias):
        if not x.is_contiguous(memory_format=torch.channels_last_3d):
            return super()._conv_forward(x, weight, bias)
        B, C, T, H, W = x.shape
        frames = x.transpose(1, 2).reshape(B * T, C, H, W)  # a view: channels_last (B*T, C, H, W)
        y = F.conv2d(frames, weight.squeeze(2), bias, self.stride[1:], self.padding[1:])  # (B*T, C_out, H', W')
        return y.view(B, T, *y.shape[1:]).transpose(1, 2)  # (B, C_out, T, H', W'), channels_last_3d strides


def space_conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> SpaceConv3d:
    """Per-frame conv for video: kernel (1, k, k), stride (1, s, s), 'same' padding in H and W."""
    pad = kernel // 2
    return SpaceConv3d(c_in, c_out, (1, kernel, kernel), stride=(1, stride, stride), padding=(0, pad, pad))


class TimeConv3d(Conv3d):
    """A (k, 1, 1) Conv3d: each pixel mixed with the same pixel of neighbouring frames. Computed as a Conv2d with
    kernel (k, 1) over (B, C, T, H*W), a free view in both the contiguous and the channels_last_3d layout (which
    becomes channels_last). Why: PyTorch sends an fp32 Conv3d of this shape to its slow im2col kernel
    (slow_conv3d), 6x slower than the Conv2d, fwd+bwd (9.2 vs 56 ms for (4, 32, 16, 32, 32), 1 thread); in bf16
    the Conv2d is also a little faster (9.8 vs 11.8 ms)."""

    def _conv_forward(self, x, weight, bias):
        B, C, T, H, W = x.shape
        y = F.conv2d(x.reshape(B, C, T, H * W), weight.squeeze(-1), bias, self.stride[:2], self.padding[:2])
        return y.reshape(B, y.shape[1], y.shape[2], H, W)  # (B, C_out, T', H, W), a view


def time_conv(c_in: int, c_out: int, kernel: int = 3) -> TimeConv3d:
    """Temporal conv for video: kernel (k, 1, 1), zero padding at the clip's ends (the first and last frames see
    zeros beyond them, which also tells the net where a clip starts and ends)."""
    return TimeConv3d(c_in, c_out, (kernel, 1, 1), padding=(kernel // 2, 0, 0))


def zero_(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters: residual branches start as identity and the net starts at output 0 (ADM)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of a float noise level, (B,) -> (B, dim).

    Frequencies are log-spaced from 1 to 1/max_period (radians per unit of c_noise * scale). With scale=1 this suits
    DDPM timesteps 0..999 (fractional values are fine). A continuous level such as EDM's c_noise = log(sigma)/4
    spans only ~[-3, 3]; with scale=1 most channels would then be nearly constant, so pass scale ~ 1000/6 to map
    that range onto the same number of wavelengths as 0..999. The network itself only ever sees a float.
    """

    def __init__(self, dim: int, scale: float = 1.0, max_period: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs * scale, persistent=False)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        args = c_noise.float()[:, None] * self.freqs[None]  # (B, dim/2)
        return torch.cat([torch.cos(args), torch.sin(args)], dim=1)  # (B, dim)


class ResBlock(nn.Module):
    """Pre-norm residual block with scale-shift conditioning (ADM's use_scale_shift_norm):
    h = conv(SiLU(GN(x))); h = conv(SiLU(GN(h) * (1 + scale) + shift)); out = skip(x) + h.

    factorised (video, dims=3 only): both convs are per-frame (1, 3, 3) and the first is followed by a temporal
    (3, 1, 1) conv on a residual branch, h = h + conv_t(h), zero-initialised: together a "pseudo-3D" conv
    (Make-A-Video sec. 3.2) that starts as the identity in time."""

    def __init__(self, dims: int, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float = 0.0,
                 factorised: bool = False):
        super().__init__()
        if factorised and dims != 3:
            raise ValueError(f"a factorised res block is for video (dims=3), got dims={dims}")
        conv3 = space_conv if factorised else (lambda i, o: conv_nd(dims, i, o, 3))
        self.norm1 = GroupNormAct(math.gcd(groups, c_in), c_in)
        self.conv1 = conv3(c_in, c_out)
        self.time = zero_(time_conv(c_out, c_out)) if factorised else None
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = GroupNormAct(math.gcd(groups, c_out), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_(conv3(c_out, c_out))
        self.skip = conv_nd(dims, c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):  # x (B, C_in, *spatial), emb (B, emb_dim), already SiLU'd
        h = self.conv1(self.norm1(x))  # (B, C_out, *spatial)
        if self.time is not None:
            h = h + self.time(h)  # (B, C_out, T, H, W): each frame mixed with its neighbours
        scale, shift = self.film(emb).chunk(2, dim=1)  # (B, C_out) each
        h = self.conv2(self.dropout(self.norm2(h, scale, shift)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head attention of every position over all positions (self) or over context tokens (cross), residual.

    Few wide heads (head_dim 64 by default) through F.scaled_dot_product_attention: a torch.profiler run measured head
    size 8 taking 55% of a training step in bf16 backward (2-core Sapphire Rapids). For channels_last input the (B, N, C) token view is free (no copy).

    `over` picks which positions attend to each other (self-attention on video, (B, C, T, H, W), only):
        "all"    every position of the input: N = prod(spatial)
        "space"  the H*W pixels of one frame, each frame on its own: (B*T, H*W, C) (free view for channels_last_3d)
        "time"   the T frames at one pixel: (B*H*W, T, C) (a copy; T is short, so this attention is cheap)
    No positional embedding, as in ADM's spatial attention: the convs before it already tell positions apart
    (the temporal convs see which neighbour is earlier, and their zero padding marks the clip's ends).
    Attention here mostly runs on short sequences (7x7 or 8x8 pixels at the `small` attention level, T frames,
    a caption's tokens); up to SHORT_SEQ**2 query-key pairs it is plain softmax(q k^T / sqrt(d)) v in batched
    matmuls, because the CPU flash kernel of
    scaled_dot_product_attention is slower there in bf16 (fwd+bwd, 1 thread, head size 64: 512 sequences of 16
    tokens 3.3 vs 25 ms, 128 of 64 tokens 4.8 vs 18 ms, 128 of 128 tokens 19 vs 42 ms; at 256 tokens the flash
    kernel wins, 87 vs 100 ms; fp32 is even up to 128). The rule is on the score matrix, at most 128 x 128 entries
    per sequence and head, so cross-attention of 256 or more pixels to a caption's tokens takes the matmuls too.
    """

    SHORT_SEQ = 128

    def __init__(self, channels: int, head_dim: int, groups: int, context_dim: int | None = None, over: str = "all"):
        super().__init__()
        if over not in ("all", "space", "time"):
            raise ValueError(f"over must be 'all', 'space' or 'time', got {over!r}")
        if over != "all" and context_dim is not None:
            raise ValueError("cross-attention takes over='all': every position attends to the context already")
        self.heads = max(1, channels // head_dim)
        if channels % self.heads:
            raise ValueError(f"channels ({channels}) must be divisible by head_dim ({head_dim})")
        self.over = over
        self.norm = GroupNormAct(math.gcd(groups, channels), channels, act=False)
        self.cross = context_dim is not None
        if self.cross:
            self.q = nn.Linear(channels, channels)
            self.kv = nn.Linear(context_dim, 2 * channels)
        else:
            self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_(nn.Linear(channels, channels))

    def _tokens(self, h):
        """(B, C, *spatial) -> (B', N, C): the groups of positions that attend to each other (see `over`)."""
        if self.over == "all":
            return h.flatten(2).transpose(1, 2)  # (B, N, C)
        if h.dim() != 5:
            raise ValueError(f"attention over {self.over!r} needs video (B, C, T, H, W), got shape {tuple(h.shape)}")
        B, C, T, H, W = h.shape
        if self.over == "space":
            return h.permute(0, 2, 3, 4, 1).reshape(B * T, H * W, C)  # (B*T, H*W, C)
        return h.permute(0, 3, 4, 2, 1).reshape(B * H * W, T, C)  # (B*H*W, T, C)

    def _untokens(self, t, shape):
        """Inverse of `_tokens`: (B', N, C) -> (B, C, *spatial)."""
        B, C, spatial = shape[0], shape[1], shape[2:]
        if self.over == "all":
            return t.transpose(1, 2).reshape(B, C, *spatial)  # channels_last strides
        T, H, W = spatial
        if self.over == "space":
            return t.view(B, T, H, W, C).permute(0, 4, 1, 2, 3)  # channels_last_3d strides
        return t.view(B, H, W, T, C).permute(0, 4, 3, 1, 2)

    def forward(self, x, context=None, mask=None):  # x (B, C, *spatial); context (B, M, context_dim); mask (B, M)
        C = x.shape[1]
        h = self._tokens(self.norm(x))  # (B', N, C)
        Bt, nh, hd = h.shape[0], self.heads, C // self.heads
        if self.cross:
            q = self.q(h).view(Bt, -1, nh, hd).transpose(1, 2)  # (B, nh, N, hd)
            k, v = self.kv(context).view(Bt, -1, 2, nh, hd).permute(2, 0, 3, 1, 4)  # (B, nh, M, hd) each
        else:
            q, k, v = self.qkv(h).view(Bt, -1, 3, nh, hd).permute(2, 0, 3, 1, 4)  # (B', nh, N, hd) each
        # mask: True for context tokens to attend to (text padding is False); self-attention takes none
        attn_mask = mask[:, None, None, :] if self.cross and mask is not None else None  # (B, 1, 1, M)
        if q.shape[2] * k.shape[2] <= self.SHORT_SEQ**2:  # a small score matrix (cross: 256 x 20 at 16x16)
            h = _softmax_attention(q, k, v, attn_mask)  # (B', nh, N, hd)
        else:
            h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B', nh, N, hd)
        h = self.proj(h.transpose(1, 2).reshape(Bt, -1, C))  # (B', N, C)
        return x + self._untokens(h, x.shape)  # (B, C, *spatial)


def _softmax_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d)) v for q (B, nh, N, d), k and v (B, nh, M, d); the softmax in fp32 whatever the input
    dtype. mask (B, 1, 1, M) bool: False keys get no weight (as scaled_dot_product_attention's boolean mask)."""
    scores = ((q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)).float()  # (B, nh, N, M)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1).to(v.dtype) @ v  # (B, nh, N, d)


class Downsample(nn.Module):
    """Strided 3x3 conv: halves every spatial dim (inputs are padded to even sizes by the UNet); factorised
    (video): a per-frame (1, 3, 3) conv of stride (1, 2, 2), which halves H and W and keeps T."""

    def __init__(self, dims: int, channels: int, factorised: bool = False):
        super().__init__()
        if factorised:
            self.conv = space_conv(channels, channels, stride=2)
        else:
            self.conv = conv_nd(dims, channels, channels, 3, stride=2)

    def forward(self, x, emb=None, context=None, context_mask=None):
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv (no checkerboard artefacts, unlike a transposed conv); factorised
    (video): x2 in H and W only, then a per-frame (1, 3, 3) conv."""

    def __init__(self, dims: int, channels: int, factorised: bool = False):
        super().__init__()
        self.scale = (1.0, 2.0, 2.0) if factorised else 2.0
        self.conv = space_conv(channels, channels) if factorised else conv_nd(dims, channels, channels, 3)

    def forward(self, x, emb=None, context=None, context_mask=None):
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))
