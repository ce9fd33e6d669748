"""What a job of `diffusekit serve` does, with the same library calls as the CLI (`TrainedModel.sample` as
`diffusekit sample` makes it, `reconstruct_image` as `diffusekit reconstruct`), so a job's numbers equal the CLI's
for the same settings. Around them: a live preview at every step (x_t and the denoiser's x0 estimate, as PNG data
URLs), the result files in the job's folder, and the forward process on an image for the page's slider.

Result files (in OUTPUTS/<job id>/): samples.npz (uint8 images as `diffusekit sample` writes them, with labels or
prompts), samples.png (the grid, the job's settings in its "parameters" text chunk so it can be dropped back onto the
page), image-NNN.png (each image, stamped the same way), samples.gif (video), wav/sample-NNNN.wav (signals),
spectrum.png (fields); reconstructions: side_by_side.png, reconstruction.png, ... and metrics.json as `diffusekit
reconstruct` writes them.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
from pathlib import Path

import torch
from PIL import Image, PngImagePlugin

from ..process import q_sample
from ..schedules import DiscreteSchedule
from ..viz.grids import image_grid, save_grid
from ..viz.signals import save_clip_gif, waveform_grid
from .jobs import Job
from .models import ServedModel
from .params import BadRequest, TooLarge

PREVIEW_ITEMS = 16  # items drawn in a live preview
MAX_UPLOAD_SIDE = 4096  # pixels: a larger upload is refused before it is decoded


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def data_url(img: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode()


def picture(kind: str, x: torch.Tensor) -> Image.Image:
    """A picture of items x (B, C, *spatial) in [-1, 1]: a grid of images, of waveforms, or of each clip's middle
    frame, enlarged to at least ~256 px wide."""
    x = x[:PREVIEW_ITEMS].float().clamp(-1, 1).cpu()
    if kind == "signal":
        return waveform_grid(x, width=256, height=64)
    if kind == "video":
        x = x[:, :, x.shape[2] // 2]
    ncol = math.ceil(math.sqrt(len(x)))
    return image_grid(x, upscale=max(1, math.ceil(256 / (ncol * x.shape[-1]))))


def preview(served: ServedModel, info: dict) -> dict:
    """x_t (scaled back to the VP range, so it stays drawable) and x0_hat of one sampler step, as data URLs."""
    x, x0 = info["x"][:PREVIEW_ITEMS] * (1 + info["sigma"] ** 2) ** -0.5, info["x0_hat"][:PREVIEW_ITEMS]
    codec = served.model.codec
    if codec is not None:  # a latent run: what the latents decode to
        x, x0 = codec.decode(x.float()), codec.decode(x0.float())
    return {"sigma": float(info["sigma"]), "x_t": data_url(picture(served.kind, x)),
            "x0_hat": data_url(picture(served.kind, x0))}


def stamp(path: Path, params: dict) -> Path:
    """Write the job's settings into a PNG's "parameters" text chunk (as AUTOMATIC1111 does)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", json.dumps(params, sort_keys=True))
    with Image.open(path) as im:
        im.load()
        im.save(path, pnginfo=info)
    return path


def run_job(served: ServedModel, job: Job, outputs: Path) -> None:
    folder = outputs / job.id
    folder.mkdir(parents=True, exist_ok=True)
    if job.params["task"] == "generate":
        generate(served, job, folder)
    else:
        reconstruct(served, job, folder)


def expected_steps(params: dict) -> int:
    """Callback calls of a sampling run: its steps; restart adds its restarts' Heun steps."""
    if params["sampler"] != "restart":
        return params["steps"]
    from ..samplers import sampler_options

    o = {**sampler_options("restart"), **params["options"]}
    return params["steps"] + int(o["restarts"]) * int(o["restart_steps"])


def generate(served: ServedModel, job: Job, folder: Path) -> None:
    from ..sample_files import write_samples

    p, m = job.params, served.model
    total, count = expected_steps(p), [0]

    def callback(info):
        count[0] += 1
        job.progress(count[0], max(total, count[0]), preview(served, info))

    labels = p.get("label")
    prompts = [p["prompt"]] if "prompt" in p else None
    negative = [p["negative_prompt"]] if "negative_prompt" in p else None
    images = m.sample(p["num"], sampler=p["sampler"], steps=p["steps"], seed=p["seed"], batch=64, labels=labels,
                      guidance=p["guidance"], callback=callback, prompts=prompts, negative_prompt=negative,
                      **p["options"])
    stamped = {"model": served.name, **p}
    kind = served.kind
    written = write_samples(m, images, folder / "samples.npz", grid=folder / "samples.png",
                            wav=folder / "wav" if kind == "signal" else None, labels=labels, prompts=prompts,
                            negative_prompt=negative, guidance=p["guidance"])
    stamp(folder / "samples.png", stamped)
    files = [str(w.relative_to(folder)) for w in written if w.is_file()]
    if kind == "signal":
        files += [f"wav/{w.name}" for w in sorted((folder / "wav").glob("*.wav"))]
    if kind in ("image", "field"):
        for i, x in enumerate(images):
            files.append(stamp(save_grid(x[None], folder / f"image-{i:03d}.png", upscale=1), stamped).name)
    if kind == "video":
        files.append(save_clip_gif(images, folder / "samples.gif").name)
    if kind == "field":
        files.append(spectrum_picture(images, served, folder / "spectrum.png").name)
    job.files = files
    job.result = {"labels": m.labels_for(p["num"], labels).tolist() if m.num_classes is not None else None,
                  "prompts": m.prompts_for(p["num"], prompts)}


def spectrum_picture(images: torch.Tensor, served: ServedModel, path: Path) -> Path:
    """The radially averaged power spectrum of the samples against the training data's, log-log, as a PNG."""
    from ..eval.physics import power_spectrum
    from ..viz.draw import caption_font

    from PIL import ImageDraw

    curves = [("samples", power_spectrum(images), (200, 40, 40))]
    try:
        curves.append(("data", power_spectrum(torch.stack([served.example(i) for i in range(64)])), (40, 40, 200)))
    except FileNotFoundError:
        pass
    W, H, pad = 360, 260, 30
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    ks = [float(k) for _, s, _ in curves for k in s.k]
    ps = [float(v) for _, s, _ in curves for v in s.power if v > 0]
    lk, hk, lp, hp = math.log(min(ks)), math.log(max(ks)), math.log(min(ps)), math.log(max(ps))

    def xy(k, v):
        return (pad + (math.log(k) - lk) / max(hk - lk, 1e-9) * (W - 2 * pad),
                H - pad - (math.log(v) - lp) / max(hp - lp, 1e-9) * (H - 2 * pad))

    d.rectangle([pad, pad, W - pad, H - pad], outline=(0, 0, 0))
    font = caption_font()
    for j, (name, s, colour) in enumerate(curves):
        pts = [xy(float(k), float(v)) for k, v in zip(s.k, s.power) if v > 0]
        d.line(pts, fill=colour, width=2)
        d.text((W - pad - 70, pad + 6 + 14 * j), name, fill=colour, font=font)
    d.text((pad, H - pad + 6), "wavenumber k (log)", fill=(0, 0, 0), font=font)
    d.text((pad, 8), "power P(k) (log)", fill=(0, 0, 0), font=font)
    img.save(path)
    return path


def check_upload(data: bytes, what: str) -> bytes:
    """An upload is an image Pillow reads, of a sane size: checked from its header, before anything decodes it."""
    limit = f"{MAX_UPLOAD_SIDE}x{MAX_UPLOAD_SIDE} pixels"
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError:
        raise TooLarge(f"{what}: its declared size is larger than {limit}") from None
    except (OSError, ValueError) as e:
        raise BadRequest(f"{what}: not an image Pillow can read ({type(e).__name__})") from None
    if w > MAX_UPLOAD_SIDE or h > MAX_UPLOAD_SIDE:
        raise TooLarge(f"{what}: {w}x{h} is larger than {limit}")
    return data


def load_upload(served: ServedModel, data: bytes, path: Path) -> torch.Tensor:
    """A checked upload, kept at `path`, read as the model's (1, C, H, W) image (as `diffusekit reconstruct` reads
    its --input: converted, centre-cropped and resized to fit)."""
    from ..inverse.images import load_image

    if served.kind not in ("image", "field"):
        raise BadRequest(f"model {served.name!r} makes {served.kind}s, not images: use one of its examples")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with named_only(path):
        return load_image(path, served.model.data_shape)[0]


@contextlib.contextmanager
def named_only(path: Path):
    """A reader's error about an upload names the file (input.png), not where the server keeps it: the client
    has no business knowing the server's folders."""
    try:
        yield
    except ValueError as e:
        raise BadRequest(str(e).replace(str(path), path.name)) from None


def reconstruct(served: ServedModel, job: Job, folder: Path) -> None:
    from ..inverse.images import load_mask
    from ..inverse.task import reconstruct_image, save_reconstruction

    p = job.params
    if "example" in p:
        image = served.example(p["example"])[None]
    else:
        image = load_upload(served, job.inputs["image"], folder / "input.png")
    mask = None
    if "mask" in job.inputs:
        (folder / "mask.png").write_bytes(job.inputs["mask"])
        with named_only(folder / "mask.png"):
            mask = load_mask(folder / "mask.png", served.model.data_shape[1:])[0]

    def progress(done, total):
        job.progress(done, total)

    keys = ("method", "steps", "seed", "sigma_y", "scale", "acceleration", "mask_kind")
    res = reconstruct_image(served.model, image, p["task"], mask=mask, progress=progress,
                            **{k: p[k] for k in keys if k in p}, **p["options"])
    paths = save_reconstruction(res, folder, extra={"model": served.name})
    stamp(paths["side_by_side"], {"model": served.name, **p})
    job.files = [path.name for path in paths.values()]
    job.result = {"metrics": res["metrics"], "notes": res["notes"]}


def forward(served: ServedModel, p: dict, upload: bytes | None = None) -> dict:
    """q(x_t | x_0) at DDPM timestep t (of 1,000) for an uploaded image or an example: x_t with its alpha_bar and
    SNR, as the page's slider shows it (latent runs: in pixel space, the process the page explains)."""
    import tempfile

    if upload is None:
        x0 = served.example(p["example"])[None]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            x0 = load_upload(served, upload, Path(tmp) / "input.png")
    sched = served.model.schedule if isinstance(served.model.schedule, DiscreteSchedule) else DiscreteSchedule()
    t = min(p["t"], sched.num_timesteps - 1)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(p["seed"]))
    x_t = q_sample(sched, x0, torch.tensor([t]), eps)
    alpha_bar = float(sched.alphas_cumprod[t])
    return {"t": t, "alpha_bar": alpha_bar, "snr": alpha_bar / max(1 - alpha_bar, 1e-12),
            "x0": data_url(picture(served.kind, x0)), "x_t": data_url(picture(served.kind, x_t))}
