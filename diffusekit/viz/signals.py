"""Pictures of 1-D signals and video clips: waveform and spectrogram PNGs, clip GIFs and strips. Pillow only.

    save_waveforms(x, "wave.png")                 # x (B, C, L) in [-1, 1]: one panel per signal
    save_spectrograms(x, "spec.png", rate=16000)  # STFT magnitude in dB, colour-mapped
    save_signal_picture(x[0], "one.png", rate=8000)  # one signal: its waveform above its spectrogram
    save_clip_gif(clips, "clips.gif")             # clips (B, C, T, H, W): a grid of clips, animated over T
    save_clip_strip(clip, "strip.png")            # one clip (C, T, H, W) or several (B, C, T, H, W): frames in a row
    save_samples(x, "samples.png")                # any of the above (or images), chosen by x's shape

Layout (pixels): waveforms and spectrograms are grids of panels, `ncol` panels per row (default: one column for
up to 8 signals, then as many columns as keep 8 rows), pad 2 px of white between and around them:
    width = ncol * (panel_w + 2) + 2,  height = nrow * (panel_h + 2) + 2,  nrow = ceil(B / ncol)
Waveform panel: y = +1 at the top, -1 at the bottom, a grey zero line and border; channel c drawn in
CHANNEL_COLOURS[c]. When L > panel width each pixel column shows the min..max of its samples (joined to the next
column), so no peak is lost; otherwise the samples are joined by straight lines. Values beyond [-1, 1] are drawn at the edge.
Spectrogram panel: the channels' mean, STFT with a Hann window of n_fft (default min(256, the largest power of 2
<= L)) and hop n_fft // 4, frames only where the window fits (edge padding would put a kink at the ends and paint
a false broadband click there); magnitude in dB relative to a full-scale sine, 20 log10(|X| / (sum(window) / 2)),
clipped to [-db_range, 0] (default 80 dB) and mapped through MAGMA (black -> purple -> orange -> pale yellow).
0 Hz at the bottom, rate / 2 at the top (named in the corner when `rate` is given), both axes linear; each STFT
cell is drawn as a block (nearest).
Clips reuse `viz`: a GIF frame t is the grid of every clip's frame t (each frame shown duration_ms, looping, no
hold on the last); a strip has one column per frame captioned "t=0", "t=1", ..., one row per clip.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .draw import caption_font, save_image
from .grids import save_gif, save_grid, save_strip

PANEL_W, PANEL_H = 256, 64  # waveform panel: wide, as time is
SPEC_H = 128  # spectrogram panel height: room for the frequency axis
PAD = 2
MAX_ROWS = 8
BACKGROUND = (255, 255, 255)
ZERO_LINE = (200, 200, 200)
FRAME = (225, 225, 225)  # a light border, so white panels on the white page stay apart
CHANNEL_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]  # blue, orange, green, red
# A few stops of matplotlib's "magma" (perceptually uniform, readable in grey), linearly interpolated.
MAGMA = np.array([(0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122), (229, 80, 100),
                  (251, 135, 97), (254, 194, 135), (252, 253, 191)], dtype=np.float64)


def waveform_grid(x, ncol: int | None = None, width: int = PANEL_W, height: int = PANEL_H) -> Image.Image:
    """One waveform panel per signal of x (B, C, L) or (C, L) or (L,), tiled into an RGB image."""
    v = _signals(x, "waveform_grid")
    return _tile([_waveform(s, width, height) for s in v], ncol)


def save_waveforms(x, path: str | os.PathLike, ncol: int | None = None, width: int = PANEL_W,
                   height: int = PANEL_H) -> Path:
    """`waveform_grid` saved to `path` (format from the suffix, e.g. .png)."""
    return save_image(waveform_grid(x, ncol, width, height), path)


def spectrogram_db(x, n_fft: int | None = None, hop: int | None = None) -> torch.Tensor:
    """(B, F, frames) STFT magnitude in dB re a full-scale sine, of the channel mean of x (B, C, L); F = n_fft//2+1."""
    v = torch.from_numpy(_signals(x, "spectrogram_db")).mean(1)  # (B, L) float64
    n_fft = n_fft or min(256, 2 ** int(math.log2(v.shape[-1])))
    hop = hop or max(1, n_fft // 4)
    if not 2 <= n_fft <= v.shape[-1]:
        raise ValueError(f"spectrogram: n_fft must be in [2, L={v.shape[-1]}]; got {n_fft}")
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    spec = torch.stft(v, n_fft, hop_length=hop, window=window, center=False,
                      return_complex=True).abs()
    return 20 * torch.log10(spec / (window.sum() / 2) + 1e-12)


def spectrogram_grid(x, rate: float | None = None, ncol: int | None = None, width: int = PANEL_W,
                     height: int = SPEC_H, n_fft: int | None = None, hop: int | None = None,
                     db_range: float = 80.0) -> Image.Image:
    """One colour-mapped spectrogram panel per signal, tiled. With `rate`, each panel's top-left corner names the
    top of its frequency axis (rate / 2, e.g. "8 kHz")."""
    db = spectrogram_db(x, n_fft, hop).numpy()  # (B, F, frames)
    level = np.clip(db / db_range + 1, 0, 1)  # -db_range dB -> 0, 0 dB -> 1
    panels = []
    for s in level:
        rgb = _colormap(s[::-1])  # low frequencies at the bottom
        panel = Image.fromarray(rgb, "RGB").resize((width, height), Image.Resampling.NEAREST)
        if rate:
            ImageDraw.Draw(panel).text((2, 1), _hz(rate / 2), fill=BACKGROUND, font=caption_font())
        panels.append(panel)
    return _tile(panels, ncol)


def save_spectrograms(x, path: str | os.PathLike, rate: float | None = None, ncol: int | None = None,
                      width: int = PANEL_W, height: int = SPEC_H, n_fft: int | None = None,
                      hop: int | None = None, db_range: float = 80.0) -> Path:
    """`spectrogram_grid` saved to `path`."""
    return save_image(spectrogram_grid(x, rate, ncol, width, height, n_fft, hop, db_range), path)


def signal_picture(x, rate: float | None = None, width: int = PANEL_W) -> Image.Image:
    """One signal (C, L) or (L,): its waveform panel above its spectrogram panel, in one image of `width`."""
    v = _signals(x, "signal_picture")
    if v.shape[0] != 1:
        raise ValueError(f"signal_picture: one signal (C, L) or (L,); got {v.shape[0]} signals")
    wave, spec = waveform_grid(v, 1, width), spectrogram_grid(v, rate, 1, width)  # each with its PAD border
    canvas = Image.new("RGB", (wave.width, wave.height + spec.height - PAD), BACKGROUND)
    canvas.paste(wave, (0, 0))
    canvas.paste(spec, (0, wave.height - PAD))  # the two borders overlap: one PAD between the panels
    return canvas


def save_signal_picture(x, path: str | os.PathLike, rate: float | None = None, width: int = PANEL_W) -> Path:
    """`signal_picture` saved to `path`: the picture of one sample that `diffusekit sample --wav` writes beside
    its WAV."""
    return save_image(signal_picture(x, rate, width), path)


def save_clip_gif(clips, path: str | os.PathLike, nrow: int | None = None, duration_ms: int = 120,
                  upscale: int | None = None) -> Path:
    """A looping GIF of clips (B, C, T, H, W) or one clip (C, T, H, W): frame t shows every clip's frame t in a
    grid (`nrow` clips per row; upscale=None: at least 256 px wide, as `viz.save_grid`). GIF stores durations in
    units of 10 ms: the default 120 ms (about 8 frames a second) is stored exactly."""
    frames = _clips(clips, "save_clip_gif").permute(2, 0, 1, 3, 4)  # (T, B, C, H, W)
    return save_gif(frames, path, duration_ms=duration_ms, hold_last_ms=duration_ms, nrow=nrow, upscale=upscale)


def save_clip_strip(clip, path: str | os.PathLike, upscale: int | None = None, captions: bool = True) -> Path:
    """Frames left to right ("t=0", "t=1", ...), one row per clip, for one clip (C, T, H, W) or several."""
    frames = _clips(clip, "save_clip_strip").permute(2, 0, 1, 3, 4)  # (T, B, C, H, W)
    labels = [f"t={t}" for t in range(frames.shape[0])] if captions else None
    return save_strip(frames, path, labels=labels, upscale=upscale)


def save_samples(x, path: str | os.PathLike, rate: float | None = None, kind: str = "grid", graphs=None) -> Path:
    """Pictures for any data the engine makes. kind="points": point clouds (B, 3, P) -> `viz.points`: a grid of
    renders, or for a .gif path the grid turning a full circle. kind="molecules": conformers (B, 3, A) with
    `graphs` (atoms, bonds) -> `viz.molecules`, 8 a row (a run's grid: one example molecule per column). Grids (the rest) are chosen by shape: signals (B, C, L) -> `save_waveforms` (and
    `save_spectrograms` beside it, "<name>-spectrogram.png", when `rate` is given); images (B, C, H, W) ->
    `viz.save_grid`; clips (B, C, T, H, W) -> `save_clip_gif` for a .gif path, else `save_clip_strip` of up to
    8 clips (one row each)."""
    path = Path(path)
    t = torch.as_tensor(x)
    if kind == "molecules":  # conformers (B, 3, A) with graphs (atoms (B, A), bonds (B, A, A)): `viz.molecules`
        from .molecules import save_molecule_grid

        if graphs is None:
            raise ValueError("save_samples: conformers need their graphs (atoms, bonds) to be drawn")
        return save_molecule_grid(t, *graphs, path, ncol=min(len(t), 8))
    if kind == "points":
        from .points import save_cloud_grid, save_rotating_gif

        # extent 1.1: clouds fill the unit ball, so zoom onto it (a sample's stray points may fall outside)
        return (save_rotating_gif(t, path, extent=1.1) if path.suffix.lower() == ".gif"
                else save_cloud_grid(t, path, extent=1.1))
    if t.ndim == 3:
        if rate:
            save_spectrograms(t, path.with_name(f"{path.stem}-spectrogram{path.suffix}"), rate)
        return save_waveforms(t, path)
    if t.ndim == 4:
        return save_grid(t, path)
    if t.ndim == 5:
        return save_clip_gif(t, path) if path.suffix.lower() == ".gif" else save_clip_strip(t[:MAX_ROWS], path)
    raise ValueError(f"save_samples: expected (B, C, L), (B, C, H, W) or (B, C, T, H, W); got {tuple(t.shape)}")


# ---- helpers --------------------------------------------------------------------------------------------------


def _signals(x, what: str) -> np.ndarray:
    """(B, C, L), (C, L) or (L,) -> float64 (B, C, L); NaN shown as 0 and +-inf as +-1 (a diverged sample renders)."""
    t = torch.as_tensor(x).detach().cpu().double()
    while t.ndim < 3:
        t = t.unsqueeze(0)
    if t.ndim != 3 or t.shape[0] == 0 or t.shape[-1] < 2:
        raise ValueError(f"{what}: expected signals (B, C, L) with L >= 2; got shape {tuple(torch.as_tensor(x).shape)}")
    return torch.nan_to_num(t, nan=0.0, posinf=1.0, neginf=-1.0).numpy()


def _clips(x, what: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach().cpu().float()
    if t.ndim == 4:
        t = t.unsqueeze(0)
    if t.ndim != 5 or t.shape[1] not in (1, 3) or t.shape[0] == 0:
        raise ValueError(f"{what}: expected clips (B, C, T, H, W) with C = 1 or 3; got shape {tuple(t.shape)}")
    return t


def _waveform(s: np.ndarray, width: int, height: int) -> Image.Image:
    """One panel: every channel of s (C, L)."""
    img = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    y = lambda v: (1 - np.clip(v, -1, 1)) / 2 * (height - 1)  # noqa: E731  +1 -> top row, -1 -> bottom row
    draw.line([(0, y(0.0)), (width - 1, y(0.0))], fill=ZERO_LINE)
    draw.rectangle([(0, 0), (width - 1, height - 1)], outline=FRAME)
    length = s.shape[-1]
    for c, ch in enumerate(s):
        colour = CHANNEL_COLOURS[c % len(CHANNEL_COLOURS)]
        if length <= width:
            xs = np.linspace(0, width - 1, length)
            draw.line(list(zip(xs.tolist(), y(ch).tolist())), fill=colour)
            continue
        cols = np.minimum(np.arange(length) * width // length, width - 1)  # pixel column of each sample
        lo = np.full(width, np.inf)
        hi = np.full(width, -np.inf)
        np.minimum.at(lo, cols, ch)
        np.maximum.at(hi, cols, ch)
        lo[1:], hi[1:] = np.minimum(lo[1:], hi[:-1]), np.maximum(hi[1:], lo[:-1])  # join neighbouring columns
        for j in range(width):
            draw.line([(j, y(hi[j])), (j, y(lo[j]))], fill=colour)
    return img


def _hz(f: float) -> str:
    return f"{f / 1000:g} kHz" if f >= 1000 else f"{f:g} Hz"


def _colormap(level: np.ndarray) -> np.ndarray:
    """[0, 1] (H, W) -> uint8 RGB (H, W, 3) through MAGMA."""
    pos = level * (len(MAGMA) - 1)
    i = np.clip(pos.astype(np.int64), 0, len(MAGMA) - 2)
    f = (pos - i)[..., None]
    return np.rint(MAGMA[i] * (1 - f) + MAGMA[i + 1] * f).astype(np.uint8)


def _tile(panels: list[Image.Image], ncol: int | None) -> Image.Image:
    b = len(panels)
    ncol = max(1, min(ncol or math.ceil(b / MAX_ROWS), b))
    nrow = math.ceil(b / ncol)
    w, h = panels[0].size
    canvas = Image.new("RGB", (ncol * (w + PAD) + PAD, nrow * (h + PAD) + PAD), BACKGROUND)
    for k, p in enumerate(panels):
        r, q = divmod(k, ncol)
        canvas.paste(p, (PAD + q * (w + PAD), PAD + r * (h + PAD)))
    return canvas


__all__ = ["save_clip_gif", "save_clip_strip", "save_samples", "save_signal_picture", "save_spectrograms",
           "save_waveforms", "signal_picture", "spectrogram_db", "spectrogram_grid", "waveform_grid"]
