"""A diffusers `UNet2DModel` from a local folder, as a diffusekit model: its network and a run record.

What is read (the layout of diffusers' `save_pretrained`; nothing is downloaded, nothing unpickled):

    PATH/config.json + PATH/diffusion_pytorch_model.safetensors         a bare UNet2DModel
    PATH/unet/...   + PATH/scheduler/scheduler_config.json              a pipeline (DDPMPipeline, DDIMPipeline, ...)

The scheduler's config gives the noise schedule and what the network predicts:

    diffusers                                   diffusekit
    beta_schedule linear / scaled_linear        DiscreteSchedule("linear" / "scaled_linear", beta_start, beta_end,
      / squaredcos_cap_v2 / sigmoid               num_timesteps = num_train_timesteps) / "cosine" / "sigmoid"
    rescale_betas_zero_snr                      zero_terminal_snr
    prediction_type epsilon / v_prediction      prediction eps / v / x0
      / sample

A bare UNet has no scheduler: DDPM's linear schedule over 1000 timesteps and eps prediction are assumed (a warning
says so), and `schedule=` / `prediction=` (`--schedule`, `--prediction`) replace them, or the scheduler's.

diffusers' UNet2DModel takes the noise level as a timestep t in 0..T-1, fractional values included: exactly the
c_noise our `Denoiser` gives a network on a discrete schedule (`noise_cond="timestep"`), so the network is wrapped
as is (`DiffusersUNet`) and every diffusekit sampler drives it. Its images are in [-1, 1], as ours.

A class-conditional UNet (`num_class_embeds` K, `class_embed_type` None) takes labels 0..K-1. Classifier-free
guidance needs an unconditional label: a folder written by `diffusekit export` says which (its last class, in
unet/diffusekit.json); a UNet from elsewhere has none, so it samples at guidance 1 only.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..data.files import check_file, check_fits
from ..rundir import read_json
from ..schedules import DiscreteSchedule, get_schedule

INSTALL = "pip install diffusers"  # or diffusekit's extra: pip install 'diffusekit[diffusers]'
WEIGHTS = "diffusion_pytorch_model.safetensors"
PICKLED = ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.ckpt")
META = "diffusekit.json"  # what `diffusekit export` adds beside the UNet's config: null label, class names, data
# diffusers' beta_schedule -> ours (the betas are defined alike: tests/test_schedules.py)
SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine",
             "sigmoid": "sigmoid"}
PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
DDPM = DiscreteSchedule("linear", 1000, 1e-4, 0.02)  # Ho et al. 2020: what a bare UNet is assumed to use


def require_diffusers():
    """The diffusers package, imported on first use; a one-line error naming the install when it is missing."""
    try:
        import diffusers
    except ImportError as e:
        raise ValueError(f"running a diffusers model needs the diffusers package: {INSTALL}") from e
    return diffusers


def find_folders(path: str | Path) -> tuple[Path, Path | None]:
    """(the UNet's folder, the scheduler's config or None) of a UNet folder or a pipeline folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder (give a folder written by diffusers' save_pretrained)")
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder: give the folder diffusers' save_pretrained wrote")
    unet = path / "unet" if (path / "unet").is_dir() else path
    if not (unet / "config.json").is_file():
        raise ValueError(f"{path} is not a diffusers model folder: no config.json (a UNet2DModel's folder) and no "
                         f"unet/config.json (a pipeline's)")
    scheduler = path / "scheduler" / "scheduler_config.json"
    return unet, scheduler if scheduler.is_file() else None


def weights_file(unet: Path) -> Path:
    """The UNet's safetensors weights; pickled ones (.bin) are refused, never opened."""
    path = unet / WEIGHTS
    if path.is_file():
        return path
    pickled = [name for name in PICKLED if (unet / name).exists()]
    if pickled:
        raise ValueError(f"{unet} holds its weights only as {pickled[0]}, a pickle, which diffusekit never loads "
                         f"(it can run code); save them as safetensors (diffusers: save_pretrained(..., "
                         f"safe_serialization=True))")
    raise FileNotFoundError(f"{unet} has no weights ({WEIGHTS})")


def check_unet_config(cfg, where: Path) -> None:
    """Refuse, in one line, what diffusekit cannot drive: another model class, a noise input that is not a timestep,
    class embeddings that are not labels, an output that is not the input's shape."""
    if not isinstance(cfg, dict):
        raise ValueError(f"{where} is not a model config: a JSON object was expected")
    name = cfg.get("_class_name")
    if name != "UNet2DModel":
        raise ValueError(f"{where} describes a {name}; diffusekit reads diffusers' UNet2DModel (pixel-space "
                         f"DDPM-family image models)")
    if cfg.get("time_embedding_type", "positional") != "positional":
        raise ValueError(f"{where}: time_embedding_type {cfg['time_embedding_type']!r} is not supported: diffusekit "
                         f"drives UNets that take a timestep (positional embedding)")
    if cfg.get("class_embed_type") is not None:
        raise ValueError(f"{where}: class_embed_type {cfg['class_embed_type']!r} is not supported: diffusekit "
                         f"passes class labels (num_class_embeds with class_embed_type null)")
    if cfg.get("out_channels", 3) != cfg.get("in_channels", 3):
        raise ValueError(f"{where}: out_channels {cfg.get('out_channels', 3)} differs from in_channels "
                         f"{cfg.get('in_channels', 3)} (a learned variance?); diffusekit drives networks whose "
                         f"output has the input's shape")


def sample_shape(cfg: dict, size, where: Path) -> list[int]:
    """(C, H, W) of the samples: the config's sample_size unless `size` (an int or (H, W)) is given."""
    size = cfg.get("sample_size") if size is None else size
    if size is None:
        raise ValueError(f"{where} has no sample_size: give the image size (size=H or size=(H, W))")
    hw = [int(size)] * 2 if isinstance(size, int) else [int(s) for s in size]
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"{where}: the image size must be H or (H, W), got {size!r}")
    return [int(cfg.get("in_channels", 3)), *hw]


def read_scheduler(path: Path) -> tuple[DiscreteSchedule, str, str]:
    """(schedule, prediction, scheduler class) from a scheduler_config.json; unknown settings refused in one line."""
    cfg = read_json(path, "diffusers scheduler config")
    if not isinstance(cfg, dict) or "beta_schedule" not in cfg:
        raise ValueError(f"{path} is not a DDPM-family scheduler config (no beta_schedule); diffusekit reads "
                         f"discrete variance-preserving schedules")
    if cfg.get("trained_betas") is not None:
        raise ValueError(f"{path}: trained_betas (a table of betas) is not supported; diffusekit reads the named "
                         f"schedules {', '.join(SCHEDULES)}")
    if cfg["beta_schedule"] not in SCHEDULES:
        raise ValueError(f"{path}: beta_schedule {cfg['beta_schedule']!r} is not supported; known: "
                         f"{', '.join(SCHEDULES)}")
    prediction = cfg.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise ValueError(f"{path}: prediction_type {prediction!r} is not supported; known: {', '.join(PREDICTIONS)}")
    schedule = DiscreteSchedule(SCHEDULES[cfg["beta_schedule"]], int(cfg.get("num_train_timesteps", 1000)),
                                float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.02)),
                                bool(cfg.get("rescale_betas_zero_snr", False)))
    return schedule, PREDICTIONS[prediction], str(cfg.get("_class_name"))


def pick_schedule(scheduler: Path | None, schedule, prediction, where: Path):
    """(schedule, prediction, the scheduler's class or None, what was assumed in words (also warned)): given ones
    first, then the scheduler's, then DDPM's."""
    found, found_pred, scheduler_class = read_scheduler(scheduler) if scheduler else (DDPM, "eps", None)
    if isinstance(schedule, str):
        schedule = get_schedule(schedule)
    if schedule is not None and not isinstance(schedule, DiscreteSchedule):
        raise ValueError(f"a diffusers UNet2DModel takes timesteps: give a discrete schedule (linear, scaled_linear, "
                         f"cosine, sigmoid), not {getattr(schedule, 'name', schedule)!r}")
    if prediction is not None and prediction not in PREDICTIONS.values():
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS.values())} for a diffusers UNet, got "
                         f"{prediction!r}")
    assumed = []
    if scheduler is None:
        if schedule is None:
            assumed.append("DDPM's linear schedule (1000 timesteps, betas 1e-4..0.02)")
        if prediction is None:
            assumed.append("eps prediction")
        if assumed:
            warnings.warn(f"{where} has no scheduler config: assumed {' and '.join(assumed)}; give --schedule / "
                          f"--prediction (schedule= / prediction=) if the model was trained otherwise", stacklevel=3)
    return schedule or found, prediction or found_pred, scheduler_class, assumed


class DiffusersUNet(nn.Module):
    """diffusers' UNet2DModel as a diffusekit network: net(x, c_noise, cond=None) -> its output (B, C, H, W).

    c_noise is the (fractional) timestep our Denoiser computes for a discrete schedule, which is what the UNet
    takes. cond: labels (B,) int64 for a class-conditional UNet; None (the unconditional pass of guidance) becomes
    `null_label` where the model has one."""

    def __init__(self, unet: nn.Module, null_label: int | None = None):
        super().__init__()
        self.unet = unet
        self.classes = unet.config.num_class_embeds if unet.class_embedding is not None else None
        self.null_label = null_label

    def forward(self, x, c_noise, cond=None):
        if self.classes is None:
            if cond is not None:
                raise ValueError("this diffusers UNet is unconditional: it takes no labels")
            return self.unet(x, c_noise).sample
        if cond is None:
            if self.null_label is None:
                raise ValueError("this diffusers UNet is class-conditional: give labels")
            cond = torch.full((x.shape[0],), self.null_label, dtype=torch.long, device=x.device)
        if self.null_label is None and bool((cond >= self.classes).any()):
            raise ValueError(f"this diffusers UNet has no unconditional label (its {self.classes} classes are all "
                             f"labels), so it cannot do classifier-free guidance: sample with guidance 1")
        return self.unet(x, c_noise, class_labels=cond).sample


def load_unet(unet_dir: Path, weights: Path, device="cpu") -> nn.Module:
    """The UNet2DModel of a folder, built from its config and given its safetensors weights (no pickle)."""
    diffusers = require_diffusers()
    check_fits(weights, check_file(weights), "loading these weights")
    try:
        unet = diffusers.UNet2DModel.from_pretrained(str(unet_dir), use_safetensors=True, low_cpu_mem_usage=False,
                                                     local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ValueError(f"{unet_dir}: diffusers could not load this UNet2DModel "
                         f"({' '.join(str(e).split())[:300]})") from e
    return unet.to(device).eval().requires_grad_(False)


def diffusers_record(path, unet_cfg: dict, shape, schedule: DiscreteSchedule, prediction: str, meta: dict,
                     scheduler_class, assumed: list, params: int) -> dict:
    """A run record (run.json's layout, see `diffusekit.model`) for a model from a diffusers folder: what
    `TrainedModel`, the samplers, `write_samples` and `show` read from one. It has no training data
    (train.data None): `show` draws the reverse process only."""
    classes = unet_cfg.get("num_class_embeds")
    null = meta.get("null_label")
    num_classes = None if classes is None else (null if null is not None else classes)
    data = {"name": f"diffusers:{Path(path).name}", "source": str(path), "n": None, "shape": list(shape),
            "num_classes": num_classes, "class_names": meta.get("class_names"), "rate": None, "kind": "grid"}
    return {"train": {"data": None, "model": "diffusers", "cond": "label" if classes else None,
                      "schedule": schedule.name, "prediction": prediction},
            "schedule": schedule.to_dict(), "prediction": prediction, "data": data, "params": params,
            "diffusers": {"path": str(path), "class": "UNet2DModel", "version": unet_cfg.get("_diffusers_version"),
                          "scheduler": scheduler_class, "assumed": assumed, "from": meta.get("run")}}


def load_diffusers(path: str | Path, schedule=None, prediction: str | None = None, size=None,
                   device="cpu") -> tuple[dict, nn.Module]:
    """(run record, network) of a diffusers folder (see the module docstring); `TrainedModel.from_diffusers`
    makes them a model. schedule: a name or a DiscreteSchedule; prediction: eps, v or x0; size: the image size
    where the config has no sample_size."""
    unet_dir, scheduler = find_folders(path)
    cfg = read_json(unet_dir / "config.json", "diffusers model config")
    check_unet_config(cfg, unet_dir / "config.json")
    shape = sample_shape(cfg, size, unet_dir / "config.json")
    weights = weights_file(unet_dir)
    sched, pred, scheduler_class, assumed = pick_schedule(scheduler, schedule, prediction, Path(path))
    meta = read_json(unet_dir / META, "diffusekit export record") if (unet_dir / META).is_file() else {}
    if not isinstance(meta, dict):
        raise ValueError(f"{unet_dir / META} is not an export record: a JSON object was expected")
    unet = load_unet(unet_dir, weights, device)
    null = meta.get("null_label")
    if null is not None and null != (cfg.get("num_class_embeds") or 0) - 1:
        raise ValueError(f"{unet_dir / META}: null_label {null} is not the last of the UNet's "
                         f"{cfg.get('num_class_embeds')} class embeddings; was it edited?")
    info = diffusers_record(path, cfg, shape, sched, pred, meta, scheduler_class, assumed,
                            sum(p.numel() for p in unet.parameters()))
    return info, DiffusersUNet(unet, null)


__all__ = ["DDPM", "DiffusersUNet", "PREDICTIONS", "SCHEDULES", "diffusers_record", "load_diffusers",
           "read_scheduler", "require_diffusers"]
