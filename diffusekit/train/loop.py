"""The training loop: data -> noise -> denoiser loss -> AdamW step -> EMA, with checkpoints, logs and sample grids.

Exact resumption: everything random comes from two seeded generators (data order, noise) whose states are saved,
the data order is a pure function of (seed, epoch), and the optimizer, EMA, step and data position are saved with
the weights; so N steps straight and N/2 + resume + N/2 give identical weights (tested).

Distributed (torchrun): every process draws the same global batch and the same noise and trains on its own slice,
so the run is the same computation as a single process with the global batch (tested), and only rank 0 writes.

Text conditioning (cond="text"): the captioned data set's captions are encoded ONCE by the frozen text encoder (each
distinct caption once, through the on-disk caption cache: `diffusekit.text.encode_captions`); every step looks up
the batch's token states (B, L, C) and mask, trimmed to the batch's longest caption, and empty-prompt dropout draws
from the noise generator (so resumption stays exact). The encoder itself is never in the training graph.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import fast
from ..conditioning import TextCond
from ..data import load_data
from ..denoiser import Denoiser
from ..nets import PRESETS, UNetConfig, param_count, unet_config
from ..process import sample_training_sigmas
from ..model import (LOG_SIGMA_EMB_SCALE, TrainedModel, build_net, build_schedule, check_text_encoder,
                    describe_data, empty_prompt, save_prompts)
from ..rundir import RUN_FILE, latest_checkpoint
from ..viz.signals import save_samples
from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint, write_json_atomic
from .config import TrainConfig
from .ema import EMA


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the run stopped and its last good checkpoint is kept."""


class BatchStream:
    """Global batches of data indices: a fresh permutation per epoch, a pure function of (seed, epoch)."""

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


def _lr_at(config: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    """Linear warm-up to config.lr, constant, then (with lr_decay > 0) a linear fall to 0 over the last lr_decay
    of the budget: of the steps, or of the minutes for a time budget (`elapsed` is the training seconds so far)."""
    lr = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
    if config.lr_decay:
        done = step / config.steps if config.steps is not None else elapsed / (config.minutes * 60)
        lr *= min(1.0, max(0.0, (1.0 - done) / config.lr_decay))
    return lr


def _prepare_out(config: TrainConfig, resume: bool, dist: distributed.Dist) -> Path:
    out = Path(config.out)
    if resume:
        if not (out / RUN_FILE).exists():
            raise FileNotFoundError(f"--resume: {out} holds no run to resume (no {RUN_FILE})")
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} already holds files; pass --resume to continue that run, or choose another "
                              f"--out (nothing was changed)")
    dist.barrier()  # every process has looked before rank 0 writes
    if dist.is_main:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(exist_ok=True)
    return out


def _init_source(config: TrainConfig, ds, num_classes, captions) -> tuple[dict, Path]:
    """(run.json, latest checkpoint) of the run to fine-tune from, after checking it fits this run's data and
    diffusion: weights trained for another shape, conditioning, schedule or target would not mean the same."""
    src = Path(config.init_from)
    if not (src / RUN_FILE).exists():
        raise FileNotFoundError(f"--init: {src} holds no run (no {RUN_FILE})")
    info = json.loads((src / RUN_FILE).read_text())
    ckpt = latest_checkpoint(src / "checkpoints")
    if ckpt is None:
        raise FileNotFoundError(f"--init: {src} has no checkpoint yet")
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
    return info, ckpt


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train a diffusion model as `config` says; returns the run directory. See `diffusekit train --help`."""
    dist = distributed.setup(config.device)
    try:
        return _train(config, resume, progress, dist)
    finally:
        distributed.teardown()


def _train(config: TrainConfig, resume: bool, progress: bool, dist: distributed.Dist) -> Path:
    if config.steps is None and config.minutes is None:
        raise ValueError("give a budget: steps or minutes")
    if config.batch_size % dist.world_size:
        raise ValueError(f"batch_size={config.batch_size} must divide evenly over {dist.world_size} processes")
    out = _prepare_out(config, resume, dist)
    saved = json.loads((out / RUN_FILE).read_text()) if resume else None  # the run.json being resumed
    if resume:  # the run's own settings decide everything but the budget
        config = TrainConfig.from_dict({**saved["train"], "steps": config.steps, "minutes": config.minutes,
                                        "out": config.out})
    if config.eval_every or config.eval_minutes:
        from ..eval import CLASSIFIERS

        if config.data not in CLASSIFIERS:
            raise ValueError(f"eval_every needs a data set with a feature classifier ({', '.join(CLASSIFIERS)}); "
                             f"{config.data!r} has none")
    device = dist.device
    captions = None  # CaptionEncodings of the data set, for cond="text"
    if config.cond == "text":
        ds, captions, text_info = _captioned_data(config, dist)
        if resume:  # the run was trained with this encoder: refuse another version rather than drift
            check_text_encoder(saved["text"])
    else:
        ds = load_data(config.data, image_size=config.image_size)
    if config.cond == "label" and ds.labels is None:
        raise ValueError(f"--cond label needs labelled data; {ds.name} has no labels")
    dims = ds.x.ndim - 2
    schedule = build_schedule(config)
    num_classes = ds.num_classes if config.cond == "label" else None
    overrides = dict(config.model_overrides)
    if config.schedule == "karras":
        overrides.setdefault("emb_scale", LOG_SIGMA_EMB_SCALE)
    if num_classes:
        overrides.setdefault("cond_dim", 128)
    text_null = None
    if captions is not None:
        overrides.setdefault("context_dim", text_info["dim"])
        # text nets: cross-attention at every level but full resolution, the layout that met the shapes goal
        # (BENCHMARKS.md section 7; at 1,500 steps 8x8 + middle only probed the same, so its cost may not pay)
        levels = len(overrides.get("channel_mult", PRESETS[config.model]["channel_mult"]))
        overrides.setdefault("xattn_levels", tuple(range(1, levels)))
        text_null = empty_prompt(text_info)  # what a dropped caption becomes, and guidance's unconditional pass
    resume_from = latest_checkpoint(out / "checkpoints") if resume else None
    # fine-tuning: the source's weights, unless the run is resumed from a checkpoint of its own
    init = _init_source(config, ds, num_classes, captions) if config.init_from and resume_from is None else None
    if resume:  # the network the run was built with, even if the presets' defaults changed since
        ucfg = UNetConfig.from_dict(saved["unet"])
    elif init is not None:  # fine-tuning: the network of the run it starts from
        ucfg = UNetConfig.from_dict(init[0]["unet"])
    else:
        ucfg = unet_config(config.model, in_channels=ds.x.shape[1], dims=dims, **overrides)
    torch.manual_seed(config.seed)  # weight initialisation
    net = fast.prepare_model(build_net(ucfg, num_classes, config.p_uncond, text_null=text_null), device, dims)
    if config.precision == "fp32":  # the plain path: fp32, contiguous
        amp, net = nullcontext(), net.to(memory_format=torch.contiguous_format)
    elif config.precision == "bf16":  # forced, even where bf16 is emulated
        amp = torch.autocast(device.type, dtype=torch.bfloat16)
    else:
        amp = fast.autocast(device, dims)
    if init is not None:  # the EMA weights of the run fine-tuned from: the ones it samples with
        net.load_state_dict(load_file(str(init[1] / "ema.safetensors")))  # all a fine-tune needs of it
    ema = EMA(net, config.ema_decay)
    opt = fast.adamw(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    info = {"train": config.to_dict(), "unet": ucfg.to_dict(), "schedule": schedule.to_dict(),
            "prediction": config.prediction, "data": describe_data(ds), "params": param_count(net)}
    if captions is not None:
        info["text"] = text_info
    if init is not None:
        info["init_from"] = {"run": str(config.init_from), "checkpoint": str(init[1]),
                             "step": json.loads((init[1] / "state.json").read_text())["step"]}
    step, elapsed, images_seen = 0, 0.0, 0
    data_gen = (0, 0)
    noise_gen = torch.Generator().manual_seed(config.seed + 1)
    if resume_from is not None:
        state, rng = load_checkpoint(resume_from, net, ema.shadow, opt)
        step, elapsed, images_seen = state["step"], state["elapsed_s"], state["images_seen"]
        ema.num_updates = state["ema_updates"]
        data_gen = (state["epoch"], state["pos"])
        noise_gen.set_state(rng["noise"])
        torch.set_rng_state(rng["torch"])
    elif dist.is_main:
        write_json_atomic(out / RUN_FILE, info)
    dist.barrier()
    batches = BatchStream(len(ds), config.batch_size, config.seed, *data_gen)
    x_all = ds.x.to(device)
    labels_all = ds.labels.to(device) if num_classes else None
    if captions is not None:  # the caption table lives where the network runs: one gather per step, no copies
        captions.tokens, captions.mask = captions.tokens.to(device), captions.mask.to(device)
    model = DistributedDataParallel(net) if dist.enabled else net
    den = Denoiser(model, schedule, prediction=config.prediction, check_finite=False)  # the loss is checked
    b_local = config.batch_size // dist.world_size
    lo, hi = dist.rank * b_local, (dist.rank + 1) * b_local

    def state_now():
        return {"elapsed_s": elapsed, "images_seen": images_seen, "ema_updates": ema.num_updates,
                "epoch": batches.epoch, "pos": batches.pos}

    def diverged(what):
        last = latest_checkpoint(out / "checkpoints")
        raise TrainingDiverged(
            f"{what}; stopped without saving. The last good checkpoint is {last or '(none yet)'}. Try a lower "
            f"--lr (now {config.lr}) or --precision fp32, then --resume.")

    def checkpoint():
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            diverged(f"the weights became NaN or inf at step {step}")
        _check_replicas(net, dist)
        if dist.is_main:
            rng = {"noise": noise_gen.get_state(), "torch": torch.get_rng_state()}
            return save_checkpoint(out / "checkpoints", step, net, ema.shadow, opt, rng, state_now(),
                                   config.keep_last)

    def done():
        if config.steps is not None:
            return step >= config.steps
        return elapsed >= config.minutes * 60

    log = open(out / "metrics.jsonl", "a") if dist.is_main else None
    bar = _progress_bar(config, step, elapsed, enabled=progress and dist.is_main)
    if dist.is_main:
        print(f"diffusekit: training {config.model} UNet ({info['params'] / 1e6:.2f}M params, {dims}-D) on "
              f"{ds.name} ({len(ds)} x {tuple(ds.x.shape[1:])}) -> {out}; device {device}, "
              f"{'bf16 autocast' if isinstance(amp, torch.autocast) else 'fp32'}, "
              f"{dist.world_size} process(es)", file=sys.stderr)
    net.train()
    window_t, window_imgs, last_loss = time.perf_counter(), 0, float("nan")
    next_eval_s, evaluated_at = config.eval_minutes * 60, -1

    def quality_due():
        if config.eval_every and step % config.eval_every == 0:
            return True
        return bool(config.eval_minutes) and elapsed >= next_eval_s

    def quality_check():
        nonlocal next_eval_s, evaluated_at
        result = _quality(info, ema.shadow, config, device, step)
        log.write(json.dumps({"step": step, "elapsed_s": elapsed, "eval": result}) + "\n")
        log.flush()
        if bar:
            bar.write(f"step {step}: FD {result['fd']:.3f} (real-vs-real floor {result['fd_floor']:.3f}, "
                      f"n={result['n']})")
        while config.eval_minutes and next_eval_s <= elapsed:
            next_eval_s += config.eval_minutes * 60
        evaluated_at = step
    try:
        while not done():
            t0 = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = _lr_at(config, step, elapsed)
            idx = batches.next()
            sigma, _ = sample_training_sigmas(schedule, config.batch_size, config.noise_sampler, noise_gen)
            eps = torch.randn((config.batch_size, *ds.x.shape[1:]), generator=noise_gen)
            cond = None
            if num_classes:
                cond = net.drop_labels(labels_all[idx.to(device)].cpu(), noise_gen)[lo:hi].to(device)
            elif captions is not None:  # (B, L, C) and (B, L) for the global batch, L its longest caption
                c = net.drop_prompts(TextCond(*captions.lookup(idx)).trim(), noise_gen)
                cond = TextCond(c.tokens[lo:hi], c.mask[lo:hi]).to(device)
            x0 = x_all[idx[lo:hi].to(device)]
            with amp:
                losses = den.loss(x0, sigma[lo:hi].to(device), eps[lo:hi].to(device), cond=cond,
                                  weighting=config.loss_weighting, gamma=config.min_snr_gamma)
            loss = losses.mean()
            if not torch.isfinite(loss):
                diverged(f"the loss became {loss.item()} at step {step + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip or math.inf)
            opt.step()
            ema.update(net)
            step += 1
            images_seen += config.batch_size
            elapsed += time.perf_counter() - t0
            window_imgs += config.batch_size
            if step % config.log_every == 0 or done():
                last_loss = dist.mean(loss.detach()).item()
                now = time.perf_counter()
                ips = window_imgs / max(now - window_t, 1e-9)
                window_t, window_imgs = now, 0
                if log:
                    log.write(json.dumps({"step": step, "loss": last_loss, "lr": opt.param_groups[0]["lr"],
                                          "grad_norm": float(grad_norm), "images_per_s": ips,
                                          "elapsed_s": elapsed, "epoch": batches.epoch}) + "\n")
                    log.flush()
                if bar:
                    bar.set_postfix(loss=f"{last_loss:.4f}", img_s=f"{ips:.0f}", step=step, refresh=False)
            if bar:  # tqdm redraws at most every `mininterval` seconds
                bar.update(1 if config.steps is not None else min(round(elapsed), bar.total) - bar.n)
            if step % config.checkpoint_every == 0 and not done():
                checkpoint()
            if config.sample_every and step % config.sample_every == 0 and not done() and dist.is_main:
                _write_grid(out, step, info, ema.shadow, config, device)
            if dist.is_main and quality_due():
                quality_check()
                window_t = time.perf_counter()  # the check's time is neither training time nor throughput
        final = checkpoint()
        if dist.is_main and (config.eval_every or config.eval_minutes) and evaluated_at != step:
            quality_check()
        if dist.is_main:
            grid = _write_grid(out, step, info, ema.shadow, config, device)
            print(f"diffusekit: {step} steps, {images_seen} images, {elapsed / 60:.1f} min, last loss "
                  f"{last_loss:.4f}; checkpoint {final}; samples {grid}", file=sys.stderr)
    finally:
        if bar:
            bar.close()
        if log:
            log.close()
    dist.barrier()  # leave together: a process tearing down gloo while its peer still works can abort
    return out


def _check_replicas(net, dist) -> None:
    """Under DDP every process must hold the same weights; compare fingerprints before each checkpoint."""
    if not dist.enabled:
        return
    with torch.no_grad():
        flat = torch.cat([p.detach().double().flatten() for p in net.parameters()]).cpu()
        mine = torch.stack([flat.sum(), (flat * torch.arange(len(flat), dtype=torch.float64).sin()).sum()])
    everyone = [torch.zeros_like(mine) for _ in range(dist.world_size)]
    torch.distributed.all_gather(everyone, mine)
    if any(not torch.equal(e, everyone[0]) for e in everyone):
        raise RuntimeError(f"DDP replicas differ: weight fingerprints {[e.tolist() for e in everyone]}")


def _progress_bar(config, step, elapsed, enabled):
    if not enabled:
        return None
    if config.steps is not None:
        return tqdm(total=config.steps, initial=step, unit="step", desc="train", dynamic_ncols=True,
                    mininterval=0.5 if sys.stderr.isatty() else 10)
    return tqdm(total=round(config.minutes * 60), initial=round(elapsed), unit="s", desc="train (time budget)",
                dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 10,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}s [ETA {remaining}{postfix}]")


def _quality(info: dict, ema_net, config: TrainConfig, device, step: int) -> dict:
    """Frechet distance of `eval_samples` EMA samples in the data's classifier features, with its real-vs-real floor
    at the same n. Time spent here is not training time (the budget clock does not run)."""
    from ..eval import evaluate

    model = TrainedModel(info, ema_net, step, device)  # the EMA copy is never trained: eval mode is its mode
    images = model.sample(config.eval_samples, sampler=config.sample_sampler, steps=config.sample_steps, seed=1)
    res = evaluate(images, config.data, metrics=("fd",), n=config.eval_samples, progress=False)
    return {"fd": res["fd"]["value"], "fd_floor": res["fd"]["floor"], "n": res["fd"]["n"],
            "sampler": config.sample_sampler, "steps": config.sample_steps}


def _write_grid(out: Path, step: int, info: dict, ema_net, config: TrainConfig, device) -> Path:
    """samples/step-N.png and latest.png; for text runs also step-N.txt and latest.txt: the prompt of each image
    (the run's grid prompts: the first num_grid distinct captions of the data, in data order)."""
    model = TrainedModel(info, ema_net, step, device)
    images = model.sample(config.num_grid, sampler=config.sample_sampler, steps=config.sample_steps, seed=0)
    path = out / "samples" / f"step-{step:07d}.png"
    save_samples(images, path, rate=info["data"].get("rate"))
    shutil.copyfile(path, out / "samples" / "latest.png")
    if model.text is not None:
        txt = save_prompts(model.prompts_for(config.num_grid), path.with_suffix(".txt"), guidance=1.0)
        shutil.copyfile(txt, out / "samples" / "latest.txt")
    return path


def _captioned_data(config: TrainConfig, dist: distributed.Dist):
    """(captioned data set, its caption encodings, the run.json "text" record) for cond="text".

    `shapes` is its training split: images with a held-out colour-kind combination are never generated for it
    (checked here too, since compositional generalisation is measured on exactly those). Rank 0 encodes first and
    fills the cache; the other processes then read it instead of all running the encoder at once."""
    from ..data.captions import load_captioned
    from ..data.shapes import HELDOUT, check_heldout, is_heldout
    from ..text import encode_captions

    ds = load_captioned(config.data, image_size=config.image_size)
    if ds.name == "shapes" and ds.attributes is not None:
        rules = check_heldout(HELDOUT)
        leaked = sum(any(is_heldout(o, rules) for o in objs) for objs in ds.attributes)
        if leaked:
            raise RuntimeError(f"internal: the shapes training data holds {leaked} images with held-out "
                               f"combinations {HELDOUT}; they must stay unseen")
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
