"""How diffusion works, drawn on a trained model: the forward process (a real image at rising noise levels) and the
reverse process (noise to sample, with the network's prediction of the clean image at every step)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import load_data
from ..process import q_sample
from ..model import TrainedModel
from ..sample_files import save_prompts
from ..schedules import DiscreteSchedule
from .grids import save_gif, save_strip
from .signals import save_clip_gif, save_clip_strip, save_spectrograms, save_waveforms

FORWARD_T = (0, 50, 100, 200, 300, 500, 700, 999)  # timesteps shown in the forward strip (DDPM's 1000)


def show(model: TrainedModel, out_dir: str | Path, sampler: str = "dpmpp-2m", steps: int = 20, seed: int = 0,
         num: int = 8, data=None) -> dict[str, Path]:
    """Write forward.png, reverse.png and reverse.gif into `out_dir`; returns their paths.

    forward.png: `num` real images (rows) at the noise levels of FORWARD_T, x_t = sqrt(ab) x0 + sqrt(1 - ab) eps.
    reverse.png: two rows per step column: x_t (the sample being denoised, in the VP scale so it stays in range)
                 and x0_hat (what the network thinks the clean image is at that step), for one sample.
    reverse.gif: the same for `num` samples, one frame per step, x_t above and x0_hat below.

    Signals (C, L) are drawn as waveforms: forward.png one panel per noise level, reverse.png x_t and x0_hat
    panels per step; when the data has a sample rate (audio: spoken-digits, waves, WAV folders) each picture also
    gets its spectrograms beside it, forward-spectrogram.png, reverse-spectrogram.png and samples-spectrogram.png. Video (C, T, H, W): forward.png one row of frames per noise level, reverse.png x0_hat's
    frames per step, reverse.gif the final clips playing. Text runs sample the run's grid prompts in turn and
    write them to prompts.txt. A model without training data (`TrainedModel.from_diffusers`) gets reverse.png and
    reverse.gif only, unless `data` is given."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if data is None and model.info["train"].get("data") is None:  # a model from elsewhere (diffusers): no data
        return _show_reverse(model, out, sampler, steps, seed, num)  # to noise, so the reverse process only
    g = torch.Generator().manual_seed(seed)
    ds = data if data is not None else load_data(model.info["train"]["data"],
                                                 image_size=model.info["train"].get("image_size"),
                                                 options=model.info["train"].get("data_options"))
    if model.kind == "molecules":
        return _show_molecules(model, out, ds, sampler, steps, seed, min(num, 4))
    x0 = ds.x[torch.randperm(len(ds), generator=g)[:num]]
    sched = model.schedule if isinstance(model.schedule, DiscreteSchedule) else DiscreteSchedule()
    eps = torch.randn(x0.shape, generator=g)
    if model.codec is not None:
        return _show_latent(model, out, x0, sched, sampler, steps, seed, num)
    cols = [q_sample(sched, x0, torch.full((len(x0),), t), eps) for t in FORWARD_T]
    if model.info["data"].get("kind") == "points":
        return _show_points(model, out, cols, sampler, steps, seed, num)
    if len(model.shape) != 3:
        return _show_other(model, out, cols, sampler, steps, seed, num)
    paths = {"forward": save_strip(cols, out / "forward.png", labels=[f"t={t}" for t in FORWARD_T])}
    return {**paths, **_show_reverse(model, out, sampler, steps, seed, num)}


def _show_reverse(model, out: Path, sampler, steps, seed, num) -> dict[str, Path]:
    """Images: reverse.png (x_t and x0_hat of one sample at every step) and reverse.gif (`num` samples)."""
    frames, paths = [], {}

    def record(info):
        scale = (1 + info["sigma"] ** 2) ** -0.5  # the sigma view's x back to the VP scale: bounded, drawable
        frames.append(torch.cat([info["x"] * scale, info["x0_hat"]]).clamp(-1, 1).cpu())

    final = model.sample(num, sampler=sampler, steps=steps, seed=seed, batch=num, callback=record)
    frames.append(torch.cat([final, final]))
    pick = [f[[0, num]] for f in frames]  # sample 0: its x_t and x0_hat
    labels = [f"step {i}" for i in range(len(frames) - 1)] + ["final"]
    paths["reverse"] = save_strip(pick, out / "reverse.png", labels=labels, row_labels=["x_t", "x0_hat"])
    paths["gif"] = save_gif(torch.stack(frames), out / "reverse.gif", nrow=num, duration_ms=150)
    if model.text is not None:  # text runs: what each sample of the GIF was asked for (the run's grid prompts)
        paths["prompts"] = save_prompts(model.prompts_for(num), out / "prompts.txt")
    return paths


def _show_other(model, out: Path, cols, sampler, steps, seed, num) -> dict[str, Path]:
    """The same story for signals (C, L) and video (C, T, H, W)."""
    steps_x, steps_x0 = [], []

    def record(info):
        steps_x.append(info["x"][:1] * (1 + info["sigma"] ** 2) ** -0.5)
        steps_x0.append(info["x0_hat"][:1].clamp(-1, 1))

    final = model.sample(num, sampler=sampler, steps=steps, seed=seed, batch=num, callback=record)
    if len(model.shape) == 2:  # signals: one waveform panel per noise level / step
        rate = model.info["data"].get("rate")
        pictures = {"forward": (torch.cat([c[:1] for c in cols]), 1),
                    "reverse": (torch.cat([v for pair in zip(steps_x, steps_x0) for v in pair]), 2),
                    "final": (final, None)}
        paths = {}
        for key, (x, ncol) in pictures.items():
            name = "samples" if key == "final" else key
            paths[key] = save_waveforms(x, out / f"{name}.png", ncol=ncol)
            if rate:  # audio: the same panels as spectrograms, where speech is read
                paths[f"{key}_spectrogram"] = save_spectrograms(x, out / f"{name}-spectrogram.png", rate, ncol=ncol)
        return paths
    return {"forward": save_clip_strip(torch.cat([c[:1] for c in cols]), out / "forward.png"),
            "reverse": save_clip_strip(torch.cat(steps_x0 + [final[:1]]), out / "reverse.png"),
            "gif": save_clip_gif(final, out / "reverse.gif")}


def _show_points(model, out: Path, cols, sampler, steps, seed, num) -> dict[str, Path]:
    """Point clouds: forward.png (up to 4 real clouds, rows, at the FORWARD_T levels), reverse.png (x_t and x0_hat
    of one sample at every step), reverse.gif (the x0_hat of `num` samples step by step, then the samples turning
    a full circle) and samples.gif (the samples turning)."""
    from .grids import save_gif
    from .points import cloud_grid, save_cloud_strip, save_rotating_gif

    labels = [f"t={t}" for t in FORWARD_T]
    paths = {"forward": save_cloud_strip([c[:4] for c in cols], out / "forward.png", titles=labels, extent=1.5)}
    x_t, x0_hat = [], []

    def record(info):
        x_t.append(info["x"][:1].cpu() * (1 + info["sigma"] ** 2) ** -0.5)  # the VP scale: drawable
        x0_hat.append(info["x0_hat"].cpu())

    final = model.sample(num, sampler=sampler, steps=steps, seed=seed, batch=num, callback=record)
    pairs = [torch.cat([a, b[:1]]) for a, b in zip(x_t, x0_hat)] + [torch.cat([final[:1], final[:1]])]
    titles = [f"step {i}" for i in range(len(x_t))] + ["final"]
    paths["reverse"] = save_cloud_strip(pairs, out / "reverse.png", titles=titles, extent=1.5)  # rows: x_t, x0_hat
    frames = [cloud_grid(b, size=96) for b in x0_hat + [final]]
    paths["gif"] = save_gif(frames, out / "reverse.gif", duration_ms=150)
    paths["samples"] = save_rotating_gif(final, out / "samples.gif", size=96)
    return paths


def _show_molecules(model, out: Path, ds, sampler, steps, seed, num) -> dict[str, Path]:
    """Molecules: forward.png (a reference conformer of each of the data's first `num` molecules, rows, at the
    FORWARD_T levels; the noise centred as in training), reverse.png (for the same molecules: x_t of the first,
    then each one's x0_hat, at every step, and the final conformers) and samples.png (the final conformers)."""
    from ..nets.molecules import centre
    from .molecules import save_molecule_grid, save_molecule_strip

    rows = torch.stack([torch.nonzero(ds.mol_index == m)[0, 0] for m in range(min(num, len(ds.smiles)))])
    x0, (atoms, bonds) = ds.x[rows], ds.graph(rows)
    sched = model.schedule if isinstance(model.schedule, DiscreteSchedule) else DiscreteSchedule()
    eps = centre(torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)), atoms)
    cols = [q_sample(sched, x0, torch.full((len(x0),), t), eps) for t in FORWARD_T]
    paths = {"forward": save_molecule_strip(cols, atoms, bonds, out / "forward.png", size=96,
                                            titles=[f"t={t}" for t in FORWARD_T])}
    frames = []

    def record(info):  # x_t in the VP scale (drawable), then every x0_hat; both centred as the samples are
        x_t = info["x"][:1].float().cpu() * (1 + info["sigma"] ** 2) ** -0.5
        frames.append(centre(torch.cat([x_t, info["x0_hat"].float().cpu()]), torch.cat([atoms[:1], atoms])))

    final = model.sample(len(x0), sampler=sampler, steps=steps, seed=seed, batch=len(x0), graphs=(atoms, bonds),
                         callback=record)
    frames.append(torch.cat([final[:1], final]))
    paths["reverse"] = save_molecule_strip(frames, torch.cat([atoms[:1], atoms]), torch.cat([bonds[:1], bonds]),
                                           out / "reverse.png", size=96,
                                           titles=[f"step {i}" for i in range(len(frames) - 1)] + ["final"])
    paths["samples"] = save_molecule_grid(final, atoms, bonds, out / "samples.png", ncol=len(final),
                                          labels=[s[:18] for s in ds.smiles[:len(final)]])
    return paths


def _latent_picture(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Latents (B, Cz, h, w) as pictures shaped like `like` (B, C, H, W): their first C channels at +-3 std
    (the latent has unit variance) mapped to [-1, 1], enlarged by nearest neighbour."""
    c = like.shape[1]
    pic = z[:, :c] if z.shape[1] >= c else z[:, :1].expand(-1, c, -1, -1)
    return F.interpolate((pic / 3).clamp(-1, 1), size=like.shape[2:], mode="nearest")


def _show_latent(model, out: Path, x0, sched, sampler, steps, seed, num) -> dict[str, Path]:
    """Latent runs: the process runs on latents; each strip shows the latent (first channels) above what the
    decoder makes of it. forward.png: one real image's latent at the FORWARD_T levels; reverse.png: x_t, x0_hat
    and the decoded x0_hat at each step for one sample; reverse.gif: the decoded x0_hat of `num` samples."""
    if x0.dim() != 4:
        raise ValueError("show draws latent runs of images (B, C, H, W) only; sample this run with `diffusekit sample`")
    codec, g = model.codec, torch.Generator().manual_seed(seed + 1)
    z0 = codec.encode(x0[:1])
    eps = torch.randn(z0.shape, generator=g)
    zs = torch.cat([q_sample(sched, z0, torch.full((1,), t), eps) for t in FORWARD_T])
    cols = [torch.cat([_latent_picture(z[None], x0[:1]), codec.decode(z[None])]) for z in zs]
    paths = {"forward": save_strip(cols, out / "forward.png", labels=[f"t={t}" for t in FORWARD_T],
                                   row_labels=["latent", "decoded"])}
    x_t, x0_hat = [], []

    def record(info):
        x_t.append(info["x"].cpu() * (1 + info["sigma"] ** 2) ** -0.5)
        x0_hat.append(info["x0_hat"].cpu())

    model.sample(num, sampler=sampler, steps=steps, seed=seed, batch=num, callback=record, decode=False)
    decoded = [codec.decode(z) for z in x0_hat]
    pick = [torch.cat([_latent_picture(a[:1], d[:1]), _latent_picture(b[:1], d[:1]), d[:1]])
            for a, b, d in zip(x_t, x0_hat, decoded)]
    paths["reverse"] = save_strip(pick, out / "reverse.png", labels=[f"step {i}" for i in range(len(pick))],
                                  row_labels=["latent x_t", "latent x0_hat", "decoded"])
    paths["gif"] = save_gif(torch.stack(decoded), out / "reverse.gif", nrow=num, duration_ms=150)
    if model.text is not None:
        paths["prompts"] = save_prompts(model.prompts_for(num), out / "prompts.txt")
    return paths
