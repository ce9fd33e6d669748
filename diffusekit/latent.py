"""Latent diffusion's first stage: a trained autoencoder run loaded back, to move data into its latent space and back.

    codec = LatentCodec.load("runs/ae-mnist5k")     # the newest checkpoint's EMA weights and its latent scale
    z = codec.encode(x)                              # (B, C, 28, 28) in [-1, 1] -> (B, 4, 7, 7), about unit variance
    x = codec.decode(z)                              # and back

The diffusion model is trained on z = scale * mean(q(z | x)): the posterior mean, not a sample of it (with LDM's
kl_weight of 1e-6 the posterior's std is a few percent of the mean's spread, so the two differ little, and the mean
makes the encoded data set a pure function of the data, cached once). `scale` = 1 / std of those means over the data
(LDM's 0.18215 for its f=8 model, computed the same way): the diffusion schedules assume data of about unit scale.
The scale is computed when the autoencoder's checkpoint is written and stored in its state.json.

A latent run records the autoencoder it was trained on (`LatentCodec.record`: run directory, checkpoint step,
scale and a fingerprint of the decoder's weights) and refuses, with a one-line error naming the directory, an
autoencoder that is missing or is not that one (`LatentCodec.from_record`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file

from .nets.autoencoder import Autoencoder, AutoencoderConfig
from .rundir import model_weights, read_run_info
from . import zoo
from .zoo import PREFIX, locate

SCALE_IMAGES = 2048  # data images the latent scale is measured on (its relative standard error ~1.5%)


class LatentCodec:
    """A trained autoencoder and its latent scale: `encode` data to scaled latents, `decode` them back."""

    def __init__(self, autoencoder: Autoencoder, scale: float, run_dir: str | Path | None = None, step: int = 0):
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.scale, self.run_dir, self.step = float(scale), run_dir, step

    @property
    def config(self) -> AutoencoderConfig:
        return self.autoencoder.config

    @property
    def data_shape(self) -> tuple[int, ...]:
        """(C, *spatial): the shape of the data the autoencoder was trained on, which `decode` returns."""
        return (self.config.in_channels, *self.config.spatial)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """(C_z, *latent_spatial): the shape the diffusion model works in."""
        return (self.config.latent_channels, *self.config.latent_spatial)

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str | Path | None = None, device="cpu") -> "LatentCodec":
        """The EMA weights and scale of an autoencoder run's newest (or the given) checkpoint."""
        source = str(run_dir)
        run_dir = locate(run_dir)  # a run directory, a packed model, or a zoo model's name
        info = read_run_info(run_dir)
        if "autoencoder" not in info:
            raise ValueError(f"{run_dir} is not an autoencoder run (its run.json has no 'autoencoder' config); "
                             f"train one with `diffusekit train-autoencoder --out {run_dir}`")
        path, state = model_weights(run_dir, "ema", checkpoint)
        ae = Autoencoder(AutoencoderConfig.from_dict(info["autoencoder"]))
        ae.load_state_dict(load_file(str(path)))  # packed bf16 / fp16 weights are cast to fp32 here
        zoo_name = source if source.startswith(PREFIX) else PREFIX + run_dir.name if zoo.in_zoo(run_dir) else None
        return cls(ae.to(device), state["latent_scale"], zoo_name or run_dir, state["step"])

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """scale * posterior mean of x (B, C, *spatial) -> (B, *latent_shape), in batches."""
        return posterior_means(self.autoencoder, x, batch) * self.scale

    @torch.no_grad()
    def decode(self, z: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Data (B, C, *spatial) from scaled latents (B, *latent_shape), in batches; clamped to [-1, 1]."""
        dev = next(self.autoencoder.parameters()).device
        out = [self.autoencoder.decode(z[i:i + batch].to(dev) / self.scale).cpu() for i in range(0, len(z), batch)]
        return torch.cat(out).clamp(-1, 1)

    def fingerprint(self) -> str:
        """A short hash of the decoder's weights: what a latent run needs to be the same to decode right."""
        h = hashlib.sha256()
        for name, t in sorted(self.autoencoder.decoder.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def record(self) -> dict:
        """What a latent run stores in its run.json under "latent" to find and check this autoencoder again."""
        # the absolute path (or "zoo:NAME"): a latent run must find its autoencoder from whatever directory it is
        # used in
        run = self.run_dir if str(self.run_dir).startswith(PREFIX) else str(Path(self.run_dir).resolve())
        return {"run": run, "step": self.step, "scale": self.scale, "fingerprint": self.fingerprint(),
                "autoencoder": self.config.to_dict()}

    @staticmethod
    def checkpoint_of(record: dict) -> Path:
        """The checkpoint directory a latent run's record names (for a zoo autoencoder, "zoo:NAME": its folder)."""
        if str(record["run"]).startswith(PREFIX):
            return zoo.ZOO_DIR / str(record["run"])[len(PREFIX):]
        return Path(record["run"]) / "checkpoints" / f"step-{int(record['step']):07d}"

    @classmethod
    def from_record(cls, record: dict, device="cpu") -> "LatentCodec":
        """The autoencoder a latent run was trained on, checked to be the same one (else a ValueError naming it)."""
        run_dir, ckpt = record["run"], cls.checkpoint_of(record)
        if not ckpt.is_dir():
            raise ValueError(f"this latent run was trained on the autoencoder {run_dir} (checkpoint step "
                             f"{record['step']}), which is missing: restore it or retrain the latent run")
        packed = str(run_dir).startswith(PREFIX)
        codec = cls.load(run_dir, None if packed else ckpt, device=device)
        if codec.fingerprint() != record["fingerprint"] or abs(codec.scale - record["scale"]) > 1e-12:
            raise ValueError(f"the autoencoder at {ckpt} is not the one this latent run was trained on (its weights "
                             f"or latent scale differ): restore that autoencoder or retrain the latent run")
        return codec


@torch.no_grad()
def posterior_means(autoencoder: Autoencoder, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The means of q(z | x) for x (B, C, *spatial), in batches on the autoencoder's device, as fp32 on the CPU."""
    dev = next(autoencoder.parameters()).device
    return torch.cat([autoencoder.posterior(x[i:i + batch].to(dev))[0].float().cpu() for i in range(0, len(x), batch)])


@torch.no_grad()
def latent_scale(autoencoder: Autoencoder, x: torch.Tensor, batch: int = 256) -> float:
    """1 / std of the posterior means of (up to SCALE_IMAGES of) x: scales the latent to unit variance."""
    std = float(posterior_means(autoencoder.eval(), x[:SCALE_IMAGES], batch).std())
    if not std > 0 or std != std:
        raise FloatingPointError(f"the autoencoder's latents have std {std}: it did not train (try a lower --lr)")
    return 1.0 / std


__all__ = ["LatentCodec", "latent_scale", "SCALE_IMAGES"]
