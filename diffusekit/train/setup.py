"""Everything a training run needs before its first step, built by `set_up` from the config (and, on --resume,
the run directory): the data, the network with its defaults, the optimizer and EMA, run.json, the random state.

The order of the work here is part of exact resumption and of the committed-weights tests: the weights are
initialised from `torch.manual_seed(config.seed)` right before the network is built (nothing after the seed may
draw from torch's global generator before that), and a resumed run then restores the saved generator states.

Molecules (data of kind "molecules"): every row is conditioned on its molecule's graph; the per-molecule tables
(atoms (M, A), bonds (M, A, A)) and the row -> molecule index go to the device once (`Setup.graphs`) and the step
looks a batch's graphs up from them, as it does labels.

Text conditioning (cond="text"): the captioned data set's captions are encoded ONCE by the frozen text encoder (each
distinct caption once, through the on-disk caption cache: `diffusekit.text.encode_captions`); the step looks up the
batch's token states from that table. The encoder itself is never in the training graph.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel

from .. import fast
from ..denoiser import Denoiser
from ..model import LOG_SIGMA_EMB_SCALE, build_net, build_schedule, check_text_encoder, describe_data, empty_prompt
from ..nets import PRESETS, config_from_info, molecule_config, net_record, param_count, point_config, unet_config
from ..rundir import RUN_FILE, latest_checkpoint, model_weights, read_run_info
from ..zoo import locate
from . import distributed
from .checkpoint import load_checkpoint, write_json_atomic
from .config import TrainConfig
from .ema import EMA
from .faults import check_data
from .ownership import holds_files


class BatchStream:
    """Global batches of data indices: a fresh permutation per epoch, a pure function of (seed, epoch), so the
    data order resumes from (epoch, pos) alone."""

    def __init__(self, n: int, batch: int, seed: int, epoch: int = 0, pos: int = 0):
        self.n, self.batch, self.seed, self.epoch, self.pos = n, batch, seed, epoch, pos
        self._perm = self._permutation(epoch)

    def _permutation(self, epoch):
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))

    def next(self) -> torch.Tensor:
        parts, need = [], self.batch
        while need:
            take = self._perm[self.pos:self.pos + need]
            parts.append(take)
            need -= len(take)
            self.pos += len(take)
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
        return torch.cat(parts)


@dataclass
class Setup:
    """What stays fixed while a run trains (the objects inside, net, optimizer and EMA, change in place)."""

    config: TrainConfig  # on --resume: the run's own settings with this call's budget
    dist: distributed.Dist
    out: Path
    ds: object  # the data set (InMemoryDataset or CaptionedDataset)
    info: dict  # run.json's contents
    net: torch.nn.Module  # the network itself (never the DDP wrapper)
    den: Denoiser  # the loss, through the DDP wrapper when distributed
    amp: object  # autocast context, or nullcontext for fp32
    ema: EMA
    opt: torch.optim.Optimizer
    x_all: torch.Tensor  # the whole data set on the device
    labels_all: torch.Tensor | None  # its labels on the device, for cond="label"
    captions: object | None  # CaptionEncodings on the device, for cond="text"
    graphs: tuple | None = None  # molecules: (atoms (M, A), bonds (M, A, A), mol_index (N,)) on the device

    @property
    def rows(self) -> slice:
        """This process's part of every global batch."""
        b_local = self.config.batch_size // self.dist.world_size
        return slice(self.dist.rank * b_local, (self.dist.rank + 1) * b_local)


@dataclass
class TrainState:
    """What advances with every step, and is saved in each checkpoint so a resumed run continues exactly."""

    step: int
    elapsed: float  # training seconds: the budget clock (sample grids and quality checks do not count)
    images_seen: int
    batches: BatchStream  # data order: epoch and position
    noise_gen: torch.Generator  # sigmas, noise and label/prompt dropout

    def done(self, config: TrainConfig) -> bool:
        if config.steps is not None:
            return self.step >= config.steps
        return self.elapsed >= config.minutes * 60


def set_up(config: TrainConfig, resume: bool, dist: distributed.Dist) -> tuple[Setup, TrainState]:
    """Check the config, prepare the run directory and build the run (see the module docstring for the order)."""
    if config.steps is None and config.minutes is None:
        raise ValueError("give a budget: steps or minutes")
    if config.batch_size % dist.world_size:
        raise ValueError(f"batch_size={config.batch_size} must divide evenly over {dist.world_size} processes")
    out = prepare_out(config, resume, dist)
    saved = json.loads((out / RUN_FILE).read_text()) if resume else None  # the run.json being resumed
    if resume:  # the run's own settings decide everything but the budget
        config = TrainConfig.from_dict({**saved["train"], "steps": config.steps, "minutes": config.minutes,
                                        "out": config.out})
    check_eval_data(config)
    ds, captions, text_info = training_data(config, dist, saved)
    codec = to_latents(ds, config, out, saved, write=dist.is_main) if config.latent else None
    check_data(ds.x, ds.name)  # NaN or inf anywhere (latents too): refused before run.json is written
    num_classes = ds.num_classes if config.cond == "label" else None
    schedule = build_schedule(config)
    text_null = empty_prompt(text_info) if text_info is not None else None  # a dropped caption; guidance's unconditional pass
    resume_from = latest_checkpoint(out / "checkpoints") if resume else None
    # fine-tuning: the source's weights, unless the run is resumed from a checkpoint of its own
    init = init_source(config, ds, num_classes, captions) if config.init_from and resume_from is None else None
    ucfg = network_config(config, ds, num_classes, text_info, saved, init)
    device = dist.device
    torch.manual_seed(config.seed)  # weight initialisation
    net = fast.prepare_model(build_net(ucfg, num_classes, config.p_uncond, text_null=text_null), device,
                             ds.x.ndim - 2)
    amp, net = autocast_for(config, net, device, ds.x.ndim - 2)
    if init is not None:  # the EMA weights of the run fine-tuned from: the ones it samples with
        net.load_state_dict(load_file(str(init[1])))  # all a fine-tune needs of it
    ema = EMA(net, config.ema_decay)
    opt = fast.adamw(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    info = run_info(config, ucfg, schedule, ds, net, text_info, init)
    if codec is not None:
        info["latent"] = codec.record()
    state = start_state(config, len(ds), resume_from, net, ema, opt)
    if resume_from is None and dist.is_main:
        write_json_atomic(out / RUN_FILE, info)
    dist.barrier()
    if captions is not None:  # the caption table lives where the network runs: one gather per step, no copies
        captions.tokens, captions.mask = captions.tokens.to(device), captions.mask.to(device)
    model = DistributedDataParallel(net) if dist.enabled else net
    den = Denoiser(model, schedule, prediction=config.prediction, check_finite=False)  # the loss is checked
    graphs = (tuple(t.to(device) for t in (ds.atoms, ds.bonds, ds.mol_index))
              if getattr(ds, "kind", "grid") == "molecules" else None)
    return Setup(config, dist, out, ds, info, net, den, amp, ema, opt, x_all=ds.x.to(device),
                 labels_all=ds.labels.to(device) if num_classes else None, captions=captions, graphs=graphs), state


def prepare_out(config: TrainConfig, resume: bool, dist: distributed.Dist) -> Path:
    """The run directory, with checkpoints/ and samples/; refuses to train over another run's files."""
    out = Path(config.out)
    if resume:
        if not (out / RUN_FILE).exists():
            raise FileNotFoundError(f"--resume: {out} holds no run to resume (no {RUN_FILE})")
    elif holds_files(out):
        raise FileExistsError(f"{out} already holds files; pass --resume to continue that run, or choose another "
                              f"--out (nothing was changed)")
    dist.barrier()  # every process has looked before rank 0 writes
    if dist.is_main:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(exist_ok=True)
    return out


def check_eval_data(config: TrainConfig) -> None:
    """Quality checks measure in a classifier's features: refuse them up front for data that has none."""
    if config.eval_every or config.eval_minutes:
        from ..eval import CLASSIFIERS

        if config.data not in CLASSIFIERS:
            raise ValueError(f"eval_every needs a data set with a feature classifier ({', '.join(CLASSIFIERS)}); "
                             f"{config.data!r} has none")


def training_data(config: TrainConfig, dist: distributed.Dist, saved: dict | None):
    """(data set, caption encodings or None, run.json "text" record or None) for this run's conditioning.

    The data set checks itself (e.g. `shapes` verifies its training split holds no held-out combination): the
    trainer knows no particular data set."""
    from ..data import load_data

    captions = text_info = None
    if config.cond == "text":
        ds, captions, text_info = captioned_data(config, dist)
        if saved is not None:  # the run was trained with this encoder: refuse another version rather than drift
            check_text_encoder(saved["text"])
    else:
        ds = load_data(config.data, image_size=config.image_size, options=config.data_options)
    kind = getattr(ds, "kind", "grid")
    if kind == "molecules" and config.cond is not None:
        raise ValueError(f"{ds.name}: molecules are conditioned on their graph; --cond {config.cond} is not for them")
    if config.points_per_step is not None:
        if kind != "points":
            raise ValueError(f"points_per_step is for point clouds; {ds.name} is of kind {kind!r}, shape "
                             f"{tuple(ds.x.shape[1:])}")
        if config.points_per_step > ds.x.shape[-1]:
            raise ValueError(f"points_per_step={config.points_per_step} is more than the {ds.x.shape[-1]} points of "
                             f"each cloud of {ds.name}")
    if config.cond == "label" and ds.labels is None:
        raise ValueError(f"--cond label needs labelled data; {ds.name} has no labels")
    return ds, captions, text_info


def to_latents(ds, config: TrainConfig, out: Path, saved: dict | None, write: bool = True):
    """Latent runs: replace ds.x by its scaled latents (encoded once, kept in out/latents.safetensors) and return
    the autoencoder's codec; a resumed run checks that its autoencoder is still the one it was trained on."""
    from safetensors.torch import save_file

    from ..latent import LatentCodec

    codec = LatentCodec.from_record(saved["latent"]) if saved else LatentCodec.load(config.latent)
    if tuple(ds.x.shape[1:]) != codec.data_shape:
        raise ValueError(f"--latent: the autoencoder {config.latent} was trained on data of shape "
                         f"{codec.data_shape}; {ds.name} is {tuple(ds.x.shape[1:])}")
    cache = out / "latents.safetensors"
    key = {"fingerprint": codec.fingerprint(), "scale": repr(codec.scale), "n": str(len(ds))}
    if cache.exists():
        with safe_open(str(cache), "pt") as f:
            if f.metadata() == key:
                ds.x = f.get_tensor("z")
                return codec
    ds.x = codec.encode(ds.x)
    if write:  # rank 0 only under torchrun: every process encodes the same data the same way
        save_file({"z": ds.x.contiguous()}, str(cache), metadata=key)
    return codec


def captioned_data(config: TrainConfig, dist: distributed.Dist):
    """(captioned data set, its caption encodings, the run.json "text" record) for cond="text".

    Rank 0 encodes first and fills the cache; the other processes then read it instead of all running the encoder
    at once. The grid prompts are the first num_grid distinct captions, in data order."""
    from ..data.captions import load_captioned
    from ..text import encode_captions

    ds = load_captioned(config.data, image_size=config.image_size)
    if dist.is_main:
        captions = encode_captions(ds.captions)
    dist.barrier()
    if not dist.is_main:
        captions = encode_captions(ds.captions)
    first = list(dict.fromkeys(ds.captions))[:config.num_grid]  # distinct, in data order
    text_info = {"encoder": captions.encoder_id, "max_length": captions.max_length,
                 "dim": int(captions.tokens.shape[-1]), "context_length": int(captions.mask.sum(1).max()),
                 "distinct_captions": len(captions.captions), "prompts": first}
    return ds, captions, text_info


def init_source(config: TrainConfig, ds, num_classes, captions) -> tuple[dict, Path, dict]:
    """(run.json, EMA weights file, checkpoint state) of the run (or packed / zoo model) to fine-tune from, after checking it fits this run's data and
    diffusion: weights trained for another shape, conditioning, schedule or target would not mean the same."""
    src = locate(config.init_from)  # a run directory, a packed model or a zoo model's name
    if not (src / RUN_FILE).exists():
        raise FileNotFoundError(f"--init: {src} holds no run (no {RUN_FILE})")
    info = read_run_info(src)
    try:
        weights, state = model_weights(src)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--init: {e}") from e
    have, want = list(info["data"]["shape"]), list(ds.x.shape[1:])
    if have != want:
        raise ValueError(f"--init: {src} was trained on data of shape {have}; this data is {want}")
    src_train = info["train"]
    for key, ours in (("cond", config.cond), ("schedule", config.schedule), ("prediction", config.prediction)):
        if src_train.get(key) != ours:
            raise ValueError(f"--init: {src} has {key}={src_train.get(key)!r}, this run {key}={ours!r}; fine-tuning "
                             f"keeps the conditioning, schedule and prediction of the run it starts from")
    if num_classes and info["data"].get("num_classes") != num_classes:
        raise ValueError(f"--init: {src} was trained on {info['data'].get('num_classes')} classes; this data has "
                         f"{num_classes}")
    if captions is not None:
        check_text_encoder(info["text"])
    return info, weights, state


def network_config(config: TrainConfig, ds, num_classes, text_info, saved, init):
    """The network to train: a resumed run's own (even if the presets' defaults changed since), a fine-tune's
    source's, or the preset with the user's overrides on top of the defaults this run's diffusion and conditioning
    need: a UNetConfig for grids, a PointNetConfig for point clouds (data of kind "points"), an EGNNConfig for
    molecules (kind "molecules": one atom type per element plus padding)."""
    if saved is not None:
        return config_from_info(saved)
    if init is not None:
        return config_from_info(init[0])
    overrides = dict(config.model_overrides)
    if config.schedule == "karras":  # EDM feeds log(sigma)/4, not a timestep in 0..999
        overrides.setdefault("emb_scale", LOG_SIGMA_EMB_SCALE)
    if num_classes:
        overrides.setdefault("cond_dim", 128)
    if getattr(ds, "kind", "grid") == "molecules":
        return molecule_config(config.model, **{"num_atom_types": len(ds.atom_types) + 1, **overrides})
    if getattr(ds, "kind", "grid") == "points":
        if text_info is not None:
            raise ValueError(f"{ds.name}: point clouds take --cond label or no conditioning, not text")
        return point_config(config.model, in_channels=ds.x.shape[1], **overrides)
    if text_info is not None:
        overrides.setdefault("context_dim", text_info["dim"])
        # text nets: cross-attention at every level but full resolution, the layout that met the shapes goal
        # (BENCHMARKS.md section 7; at 1,500 steps 8x8 + middle only probed the same, so its cost may not pay)
        levels = len(overrides.get("channel_mult", PRESETS[config.model]["channel_mult"]))
        overrides.setdefault("xattn_levels", tuple(range(1, levels)))
    return unet_config(config.model, in_channels=ds.x.shape[1], dims=ds.x.ndim - 2, **overrides)


def autocast_for(config: TrainConfig, net, device, dims):
    """(autocast context, net): fp32 is the plain path (no autocast, contiguous weights); bf16 is forced even
    where it is emulated; auto uses bf16 where the device has it natively (`fast.autocast`)."""
    if config.precision == "fp32":
        return nullcontext(), net.to(memory_format=torch.contiguous_format)
    if config.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16), net
    return fast.autocast(device, dims), net


def run_info(config: TrainConfig, ucfg, schedule, ds, net, text_info, init) -> dict:
    """run.json: everything loading the run back needs (`diffusekit.model.TrainedModel`)."""
    info = {"train": config.to_dict(), **net_record(ucfg), "schedule": schedule.to_dict(),
            "prediction": config.prediction, "data": describe_data(ds), "params": param_count(net)}
    if text_info is not None:
        info["text"] = text_info
    if init is not None:
        info["init_from"] = {"run": str(config.init_from), "checkpoint": str(init[1].parent),
                             "step": init[2]["step"]}
    return info


def start_state(config: TrainConfig, n: int, resume_from: Path | None, net, ema: EMA, opt) -> TrainState:
    """Step 0 with fresh generators, or the state of the checkpoint resumed from (weights, EMA, optimizer,
    generators and data position restored in place)."""
    step, elapsed, images_seen, data_pos = 0, 0.0, 0, (0, 0)
    noise_gen = torch.Generator().manual_seed(config.seed + 1)
    if resume_from is not None:
        state, rng = load_checkpoint(resume_from, net, ema.shadow, opt)
        step, elapsed, images_seen = state["step"], state["elapsed_s"], state["images_seen"]
        ema.num_updates = state["ema_updates"]
        data_pos = (state["epoch"], state["pos"])
        noise_gen.set_state(rng["noise"])
        torch.set_rng_state(rng["torch"])
    return TrainState(step, elapsed, images_seen, BatchStream(n, config.batch_size, config.seed, *data_pos),
                      noise_gen)
