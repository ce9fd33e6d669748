"""Training settings: one dataclass, saved as JSON in the run directory, loadable from `--config FILE.json`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..denoiser import PARAMETERIZATIONS
from ..process import LOSS_WEIGHTINGS, NOISE_SAMPLERS
from ..samplers import SAMPLERS
from ..schedules import BETA_SCHEDULES

PRECISIONS = ("auto", "fp32", "bf16")
CONDITIONINGS = (None, "label", "text")


@dataclass
class TrainConfig:
    """Everything that decides a training run. Defaults are chosen for small images on a small CPU."""

    data: str = "digits"  # built-in name (digits, mnist5k, ...), image folder, or .npy/.npz file
    out: str = "runs/digits"  # the run directory: everything the run writes stays here
    steps: int | None = None  # budget in optimizer steps ...
    minutes: float | None = None  # ... or in wall-clock minutes of training (one of the two; steps wins)
    model: str = "small"  # size preset: tiny, small, base (the UNet, point transformer or EGNN of the data)
    model_overrides: dict = field(default_factory=dict)  # any UNetConfig field, e.g. {"channels": 48}
    data_options: dict = field(default_factory=dict)  # settings of a built-in that takes some: molecules' recipe
    # (MoleculeRecipe fields, e.g. {"max_molecules": 12} for a tiny set); recorded so eval and show load the same
    image_size: int | None = None  # resize 2-D images (folders default to their median size, capped at 64)
    cond: str | None = None  # None (unconditional), "label": class-conditional through the UNet's cond hook, or
    # "text": captions through a frozen text encoder into the UNet's cross-attention (captioned data only)
    p_uncond: float = 0.1  # label / empty-prompt dropout for classifier-free guidance (Ho & Salimans use 0.1-0.2)
    latent: str | None = None  # latent diffusion: an autoencoder run (`train-autoencoder`); the data is encoded
    # once into its scaled latent space, where this run trains; sampling decodes (`diffusekit.latent`)
    points_per_step: int | None = None  # point clouds: train each step on this many randomly chosen points of
    # every cloud (PointFlow's and PVD's tr_sample_size: a set network does not care how many points it sees, and
    # a quarter of the points costs a quarter); None: all of them. Sampling draws as many points as the data has
    init_from: str | None = None  # fine-tune: start from the EMA weights of this run's latest checkpoint (its
    # network, data shape, conditioning, schedule and prediction); optimizer, step count and EMA start afresh

    # the diffusion: schedule, what the network predicts, how the loss is weighted
    schedule: str = "linear"  # linear, scaled_linear, cosine, sigmoid (DDPM-family, 1000 steps) or karras (EDM)
    prediction: str = "eps"  # eps, x0, v (DDPM-family) or edm (with schedule=karras)
    loss_weighting: str = "min-snr"  # uniform, min-snr (Hang et al. 2023: ~3x faster convergence), edm
    min_snr_gamma: float = 5.0
    noise_sampler: str = "uniform"  # uniform timesteps (DDPM) or lognormal sigma (EDM)

    # optimisation
    batch_size: int = 128  # global batch (split across processes under torchrun)
    lr: float = 1e-3  # AdamW; high for small nets with EMA, as in EDM's CIFAR setting (1e-3)
    warmup_steps: int = 50  # linear LR warm-up: Adam's early steps are noisy; 50 rather than 200 reached a
    # given FD in 3.0 instead of 4.7 minutes on mnist5k (BENCHMARKS.md section 4), with grad clipping as the guard
    lr_decay: float = 0.0  # fraction of the budget, at its end, over which the LR falls linearly to 0
    # (warm-up, constant, decay); 0 keeps it constant to the end. The fraction is of the current budget, so a
    # --resume with a larger budget stretches the schedule (the LR rises again if the decay had begun)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global grad norm (0 disables)
    ema_decay: float = 0.999  # EMA of weights; warm-up decay min(ema_decay, (1 + n) / (10 + n))
    seed: int = 0

    # what the run writes
    log_every: int = 25  # steps between metrics.jsonl lines
    sample_every: int = 0  # steps between sample grids (0: at the end only)
    checkpoint_every: int = 500  # steps between checkpoints (and one at the end)
    checkpoint_minutes: float = 0.0  # ... and one every this many minutes of training time (0: never)
    keep_last: int = 3  # checkpoints kept
    sample_sampler: str = "dpmpp-2m"
    sample_steps: int = 20
    num_grid: int = 64  # images in each sample grid
    eval_every: int = 0  # steps between quality checks (Frechet distance in classifier features; 0: never)
    eval_minutes: float = 0.0  # ... or every this many minutes of training time (0: never)
    eval_samples: int = 500  # samples per quality check (FDs compare only at equal n)

    precision: str = "auto"  # auto: bf16 autocast where the CPU has native bf16 (or CUDA), else fp32
    device: str = "auto"  # auto: cuda if available, else cpu
    collective_timeout: float = 600.0  # seconds a torchrun process waits on the others before it reports them hung
    # (torch's default is 1800; see distributed.setup). Not a setting of the run: each call's own value holds

    def __post_init__(self):
        def allowed(name, value, options):
            if value not in options:
                raise ValueError(f"{name}={value!r} is not allowed; choose from {', '.join(map(str, options))}")

        allowed("schedule", self.schedule, BETA_SCHEDULES + ("karras",))
        allowed("prediction", self.prediction, PARAMETERIZATIONS)
        allowed("loss_weighting", self.loss_weighting, LOSS_WEIGHTINGS)
        allowed("noise_sampler", self.noise_sampler, NOISE_SAMPLERS)
        allowed("precision", self.precision, PRECISIONS)
        allowed("sample_sampler", self.sample_sampler, tuple(SAMPLERS))
        allowed("cond", self.cond, CONDITIONINGS)
        if (self.prediction == "edm") != (self.schedule == "karras"):
            raise ValueError("prediction='edm' goes with schedule='karras' (and only it); DDPM-family schedules "
                             "take eps, x0 or v")
        for name in ("batch_size", "log_every", "checkpoint_every", "keep_last", "sample_steps", "num_grid",
                     "eval_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.points_per_step is not None and (isinstance(self.points_per_step, bool) or not isinstance(
                self.points_per_step, int) or self.points_per_step < 1):
            raise ValueError(f"points_per_step must be an integer >= 1 (or None: all points), got "
                             f"{self.points_per_step!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes!r}")
        if not 0 <= self.p_uncond < 1:
            raise ValueError(f"p_uncond must be in [0, 1), got {self.p_uncond!r}")
        if not 0 <= self.lr_decay <= 1:
            raise ValueError(f"lr_decay is a fraction of the budget in [0, 1], got {self.lr_decay!r}")
        for name in ("checkpoint_minutes", "eval_minutes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"{name} must be a number of minutes >= 0 (0: never), got {v!r}")
        if isinstance(self.collective_timeout, bool) or not isinstance(self.collective_timeout, (int, float)) \
                or not self.collective_timeout > 0:
            raise ValueError(f"collective_timeout must be a number of seconds > 0, got {self.collective_timeout!r}")
        if self.lr <= 0 or self.ema_decay < 0 or self.ema_decay >= 1:
            raise ValueError(f"need lr > 0 and 0 <= ema_decay < 1, got lr={self.lr}, ema_decay={self.ema_decay}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_json_file(cls, path: str | Path, **overrides) -> "TrainConfig":
        from ..rundir import read_json  # its checks: a regular file, a sane size, JSON a parser can take

        path = Path(path)
        d = read_json(path, "training config")
        if not isinstance(d, dict):
            raise ValueError(f"{path}: a training config is a JSON object of settings")
        try:  # a setting of the wrong type fails in a comparison with a TypeError: name the file either way
            return cls.from_dict({**d, **{k: v for k, v in overrides.items() if v is not None}})
        except (TypeError, ValueError, OverflowError) as e:
            raise ValueError(f"{path}: {' '.join(str(e).split())}") from e
