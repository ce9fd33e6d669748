"""What `diffusekit sample` writes: the samples .npz (and SDF / XYZ / PLY / WAV files where the data has them), a
picture of the samples, and the prompts of a text run's pictures. Used by the CLI, the trainer's grids and the web
service alike."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .model import TrainedModel

def write_samples(model: TrainedModel, images: torch.Tensor, out: str | Path, grid: str | Path | None = None,
                  wav: str | Path | None = None, labels=None, prompts=None, negative_prompt=None,
                  guidance: float = 1.0, ply: str | Path | None = None, smiles=None, sdf: str | Path | None = None,
                  xyz: str | Path | None = None) -> list[Path]:
    """What `diffusekit sample` writes, for samples `images` drawn with these labels / prompts: `out` (.npz: uint8
    `images`, or for point clouds float32 `points` (N, P, 3); and `labels` or `prompts` where the model has them;
    no pickles), optionally a picture `grid` (with the prompts in a .txt beside it; for clouds a .png of renders or
    a turning .gif), a folder `wav` of 16-bit WAVs (1-D signals; each with a picture of its waveform above its
    spectrogram, sample-NNNN.png, when the data has a sample rate) and a folder `ply` of PLY files (point clouds).
    Molecules (drawn for `smiles`, or the run's examples): the .npz holds float32 `coords` (N, A, 3) in Å, `atoms`
    (N, A) (0 padding, i: atom_types[i - 1]), `bonds` (N, A, A) and `smiles`; `sdf` an SD file of every
    conformer (RDKit, Open Babel and PyMOL read it), `xyz` a folder of .xyz files, `grid` a picture.
    Returns the paths written."""
    import numpy as np

    from .data import to_uint8
    from .data.wav import write_wav
    from .viz.signals import save_samples, save_signal_picture

    out, num, written = Path(out), len(images), []
    kind = model.info["data"].get("kind", "grid")
    if kind == "molecules":
        from .molsamples import write_conformers

        return write_conformers(model, images, out, grid, smiles, sdf, xyz)
    if sdf is not None or xyz is not None or smiles is not None:
        raise ValueError(f"--smiles, --sdf and --xyz are for molecule models; this model makes {kind} data")
    if ply is not None and kind != "points":
        raise ValueError(f"--ply writes point clouds; this model makes shape {tuple(images.shape[1:])}")
    if kind == "points":  # coordinates are not pixels: kept as floats, one (P, 3) array per cloud
        arrays = {"points": images.transpose(1, 2).float().numpy()}
    else:
        arrays = {"images": to_uint8(images)}
    if model.num_classes is not None:
        arrays["labels"] = model.labels_for(num, labels).numpy()
    prompts = model.prompts_for(num, prompts)
    if prompts is not None:
        arrays["prompts"] = np.array(prompts, dtype=np.str_)  # unicode, so np.load needs no pickle
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    written.append(out)
    if grid:
        written.append(save_samples(images, grid, rate=model.info["data"].get("rate"), kind=kind))
        if prompts is not None:
            negative = None if negative_prompt is None else " | ".join(negative_prompt)
            written.append(save_prompts(prompts, Path(grid).with_suffix(".txt"), guidance, negative))
    if wav:
        if images.ndim != 3:
            raise ValueError(f"--wav writes 1-D signals; this model makes shape {tuple(images.shape[1:])}")
        wav = Path(wav)
        wav.mkdir(parents=True, exist_ok=True)
        known = model.info["data"].get("rate")
        rate = known or 16000
        for i, x in enumerate(images):
            write_wav(wav / f"sample-{i:04d}.wav", x.numpy(), rate)
            if known:  # a spectrogram needs a time unit: only for data that has one (spoken-digits, waves, WAVs)
                save_signal_picture(x, wav / f"sample-{i:04d}.png", rate)
        written.append(wav)
    if ply:
        from .data.points import write_ply

        Path(ply).mkdir(parents=True, exist_ok=True)
        written += [write_ply(Path(ply) / f"sample-{i:04d}.ply", x) for i, x in enumerate(images)]
    return written


def save_prompts(prompts: list[str], path: str | Path, guidance: float | None = None,
                 negative_prompt=None) -> Path:
    """Write the prompt of each image of a grid beside it, row by row in the grid's layout (`viz.save_grid`:
    ceil(sqrt(N)) columns), so a picture of samples can be read against what was asked."""
    import math

    path = Path(path)
    ncol = math.ceil(math.sqrt(len(prompts)))
    head = f"# {len(prompts)} images, {ncol} per row, row by row"
    if guidance is not None:
        head += f"; guidance {guidance:g}"
    if negative_prompt is not None:
        head += f"; negative prompt {negative_prompt!r}"
    lines = [head] + [f"row {i // ncol + 1}, col {i % ncol + 1}: {p}" for i, p in enumerate(prompts)]
    path.write_text("\n".join(lines) + "\n")
    return path
