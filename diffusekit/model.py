"""A trained model loaded back from its run directory (`diffusekit.rundir`), ready to sample.

Loading reads JSON and safetensors only: nothing is unpickled and no code comes from the run directory.

Text runs (`cond: "text"`) record in run.json under "text" what sampling needs: the frozen encoder's id (its
package version: another version would give other token states, so loading refuses it), its max_length (prompts
are truncated to it, with a warning), the token dimension, the longest training caption in tokens, and the
prompts of the training sample grids (the default prompts of `sample`, as labels cycle for class models).

Molecule runs (data kind "molecules") record in run.json's "data" what sampling needs: the atom types, the scale
(Å per unit), the recipe and `examples`, the SMILES of the data's first molecules (the default molecules of
`sample`, as the prompts are for text runs). Their samples are coordinates (num, 3, A): not clamped (they reach
|x| ~ 4) and centred on each molecule's real atoms, 0 at padding.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import load_file

from . import fast
from .conditioning import Guided, LabelConditioned, TextCond, TextConditioned
from .data.files import check_file, check_fits
from .denoiser import Denoiser
from .nets import build, config_from_info
from .nets.molecules import centre
from .samplers import sample
from .rundir import RUN_FILE, bad_record, model_weights, read_run_info
from .schedules import get_schedule, schedule_from_dict
from .zoo import locate

LOG_SIGMA_EMB_SCALE = 250.0  # UNet embedding scale when it sees log(sigma)/4 (range ~[-1.6, 1.1]) not t in 0..999


def build_net(unet_config, num_classes: int | None = None, p_uncond: float = 0.1,
              text_null: TextCond | None = None) -> torch.nn.Module:
    """The network of a config (a UNetConfig, or a PointNetConfig for point clouds), wrapped for class labels
    (num_classes) or for text (text_null: the empty prompt's encoding)."""
    net = build(unet_config)
    if num_classes and text_null is not None:
        raise ValueError("a network is conditioned on labels or on text, not both")
    if num_classes:
        net = LabelConditioned(net, num_classes, unet_config.cond_dim, p_uncond)
    elif text_null is not None:
        if getattr(unet_config, "context_dim", None) != text_null.tokens.shape[-1]:
            raise ValueError(f"text conditioning needs UNetConfig.context_dim = the encoder's width "
                             f"{text_null.tokens.shape[-1]}, got {unet_config.context_dim}")
        net = TextConditioned(net, text_null, p_uncond)
    return net


def check_weights_fit(net: torch.nn.Module, weights: Path, run_dir: Path) -> None:
    """The network run.json describes (built on the meta device) has exactly the tensors of the weights file, read
    from its header: a mismatch (a hand-edited run.json, another run's weights) is one line naming both."""
    from safetensors import SafetensorError, safe_open

    # a FIFO would block, /dev/zero or a sparse file of terabytes would be mapped whole
    check_fits(weights, check_file(weights), "mapping these weights")
    try:
        with safe_open(str(weights), framework="pt") as f:
            have = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{weights}: not a readable safetensors file ({e}); the checkpoint may be truncated") from e
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    if have != want:
        diff = sorted(set(have) ^ set(want)) or [k for k in want if have[k] != want[k]]
        k = diff[0]
        raise ValueError(f"{weights} does not fit the network {run_dir / RUN_FILE} describes ({len(diff)} tensors "
                         f"differ, e.g. {k}: file {have.get(k, 'absent')}, run.json {want.get(k, 'absent')}); was "
                         f"run.json edited?")


def check_loops(config, weights: Path, run_dir: Path) -> None:
    """The blocks a config asks for against the tensors the weights file holds (read from its header): every block
    has tensors, so more blocks than tensors cannot fit, and building them (even on the meta device) could take
    hours for a run.json that asks for 10^18 blocks."""
    from safetensors import SafetensorError, safe_open

    blocks = getattr(config, "depth", 0) + getattr(config, "num_res_blocks", 0) * len(getattr(config, "channel_mult",
                                                                                                   ()))
    if blocks <= 100:  # every real network: no need to open the file twice
        return
    check_fits(weights, check_file(weights), "mapping these weights")
    try:
        with safe_open(str(weights), framework="pt") as f:
            tensors = len(f.keys())
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{weights}: not a readable safetensors file ({e}); the checkpoint may be truncated") from e
    if blocks > tensors:
        raise ValueError(f"{run_dir / RUN_FILE} asks for {blocks:,} blocks, more than the {tensors:,} tensors of "
                         f"{weights}; was run.json edited?")


_TEXT_ENCODERS: dict = {}  # max_length -> TextEncoder: loaded once per process (~1 s), shared by every run


def check_text_encoder(text_info: dict) -> None:
    """Refuse a run whose text encoder is not the installed one: other weights give other token states."""
    from .text.encoder import INSTALL, minilm_id

    have = minilm_id()
    if text_info["encoder"] != have:
        raise ValueError(f"this run was trained with the text encoder {text_info['encoder']}, but {have} is "
                         f"installed; install the run's version ({INSTALL} names the one this diffusekit expects)")


def load_text_encoder(text_info: dict):
    """The frozen text encoder of a text run (checked against run.json), loaded once per process."""
    from .text import TextEncoder

    check_text_encoder(text_info)
    key = int(text_info["max_length"])
    if key not in _TEXT_ENCODERS:
        _TEXT_ENCODERS[key] = TextEncoder.load(key)
    return _TEXT_ENCODERS[key]


def empty_prompt(text_info: dict) -> TextCond:
    """The encoding of "" (1, L0, C): the unconditional condition. Read from the caption cache (encoded once per
    machine), so loading a run or starting training does not need the encoder after the first time."""
    from .text import encode_captions

    check_text_encoder(text_info)
    enc = encode_captions([""], max_length=int(text_info["max_length"]))
    return TextCond(*enc.lookup([0])).trim()


def build_schedule(train_config):
    return get_schedule(train_config.schedule)


def describe_data(ds) -> dict:
    return {"name": ds.name, "source": ds.source, "n": len(ds), "shape": list(ds.x.shape[1:]),
            "num_classes": ds.num_classes, "class_names": ds.class_names, "rate": getattr(ds, "rate", None),
            "kind": getattr(ds, "kind", "grid"),  # "points": a set of points (N, 3, P), not a grid
            **(_molecule_record(ds) if getattr(ds, "kind", None) == "molecules" else {})}


def _molecule_record(ds) -> dict:
    return {"atom_types": list(ds.atom_types), "scale": ds.scale, "recipe": ds.recipe,
            "examples": ds.smiles[:8]}  # the molecules of a run's sample grids: 8 columns, one molecule each


_CODECS: dict = {}  # fingerprint -> LatentCodec: an autoencoder is loaded once per process, shared by every run


def latent_codec(record: dict, device="cpu"):
    """The autoencoder of a latent run (checked to be the one it was trained on), loaded once per process."""
    from .latent import LatentCodec

    key = (record["fingerprint"], record["run"], str(device))
    if key not in _CODECS or not LatentCodec.checkpoint_of(record).is_dir():  # gone since: say so, not the cache
        _CODECS[key] = LatentCodec.from_record(record, device=device)
    return _CODECS[key]


class TrainedModel:
    """A trained network with its denoiser, ready to sample. `TrainedModel.load(run_dir)` takes the EMA weights
    of the newest checkpoint; `TrainedModel.from_diffusers(path)` a diffusers UNet2DModel saved to disk (`step` is
    then None: unknown)."""

    def __init__(self, info: dict, net: torch.nn.Module, step: int, device="cpu", precision: str = "auto"):
        if precision not in ("auto", "fp32"):
            raise ValueError(f"precision must be 'auto' (bf16 network where the CPU has native bf16) or 'fp32', "
                             f"got {precision!r}")
        self.info, self.net, self.step = info, net.eval().requires_grad_(False), step
        self.device = torch.device(device)
        self.precision = precision
        self.schedule = schedule_from_dict(info["schedule"])
        self.denoiser = Denoiser(self.net, self.schedule, prediction=info["prediction"])
        self.shape = tuple(info["data"]["shape"])  # what the sampler draws: the data, or a latent run's latents
        self.codec = latent_codec(info["latent"], device) if "latent" in info else None  # latent runs: the decoder
        self.data_shape = self.codec.data_shape if self.codec is not None else self.shape  # what `sample` returns
        self.num_classes = info["data"]["num_classes"] if info["train"].get("cond") == "label" else None
        self.text = info.get("text") if info["train"].get("cond") == "text" else None  # see the module docstring
        self.kind = info["data"].get("kind", "grid")

    @classmethod
    def load(cls, run_dir: str | Path, weights: str = "ema", checkpoint: str | Path | None = None, device="cpu",
             precision: str = "auto"):
        run_dir = locate(run_dir)  # a run directory, a packed model, or a zoo model's name
        info = read_run_info(run_dir)
        path, state = model_weights(run_dir, weights, checkpoint)
        try:  # a run.json edited by hand can lack any field or hold any type: one line that names it
            train = info["train"]
            if train.get("cond") == "text" and "text" not in info:
                raise ValueError(f"{run_dir / RUN_FILE} is a text run without its 'text' record (encoder, "
                                 f"max_length); it was written by an unfinished version: train it again")
            args = (config_from_info(info), info["data"]["num_classes"] if train.get("cond") == "label" else None)
            check_loops(args[0], path, run_dir)
            text_null = empty_prompt(info["text"]) if train.get("cond") == "text" else None
            with torch.device("meta"):  # shapes only, no memory: a run.json asking for a huge network is refused here
                check_weights_fit(build_net(*args, text_null=text_null), path, run_dir)
            net = build_net(*args, text_null=text_null)
            tensors = load_file(str(path))  # a packed model's bf16 / fp16 weights are cast to the net's fp32 here
            bad = next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
            if bad is not None:
                raise ValueError(f"{path}: tensor {bad} holds NaN or inf; the checkpoint is corrupt")
            net.load_state_dict(tensors)
            step = state["step"]
            if precision == "auto":
                net = fast.prepare_model(net, device, len(info["data"]["shape"]) - 1)
            return cls(info, net.to(device), step, device, precision)
        except (KeyError, TypeError, AttributeError, IndexError, RuntimeError, ValueError, OverflowError) as e:
            if isinstance(e, ValueError) and str(run_dir) in str(e):
                raise  # already says which file
            raise bad_record(run_dir / RUN_FILE, e) from e

    @classmethod
    def from_diffusers(cls, path: str | Path, schedule=None, prediction: str | None = None, size=None,
                       device="cpu", precision: str = "fp32"):
        """A diffusers UNet2DModel folder (bare, or a pipeline's with its scheduler) as a model every sampler,
        `show` and `diffusekit sample` take: `diffusekit.interop.diffusers`. schedule (a name or DiscreteSchedule)
        and prediction (eps, v, x0) replace the scheduler's, or DDPM's where there is none; size: the image size
        where the config has none. precision "fp32": the network runs as diffusers runs it ("auto": bf16 autocast
        where the CPU has native bf16)."""
        from .interop.diffusers import load_diffusers

        info, net = load_diffusers(path, schedule=schedule, prediction=prediction, size=size, device=device)
        return cls(info, net, None, device, precision)

    def to_diffusers(self, out_dir: str | Path, source: str | Path | None = None) -> list[Path]:
        """Write this model (a 2-D UNet run) as a diffusers DDPMPipeline folder whose UNet2DModel computes what our
        network computes: `diffusekit.interop.diffusers_export` (what maps, what is refused). Returns the files."""
        from .interop.diffusers_export import export_diffusers

        return export_diffusers(self, out_dir, source=source)

    @torch.no_grad()
    def sample(self, num: int, sampler: str = "dpmpp-2m", steps: int = 20, seed: int = 0, batch: int = 64,
               labels=None, guidance: float = 1.0, callback=None, progress=None, prompts=None,
               negative_prompt=None, decode: bool = True, smiles=None, graphs=None, **options) -> torch.Tensor:
        """`num` samples in [-1, 1], shape (num, *data shape) (latent runs: decoded, unless decode=False, which
        returns the latents (num, *self.shape) the sampler drew; `callback` always sees latents there). Batches are drawn from one seeded generator, so
        the result depends on the seed and `batch`, not on anything else.

        labels: for class-conditional models, an int, a list of ints, or None (the classes in turn);
        prompts: for text models, a string, a list of strings taken in turn (sample i gets prompts[i % len]), or
            None (the prompts of the run's training grids, in turn);
        negative_prompt: for text models with guidance != 1, what guidance steers away from: a string, or a list
            of one per prompt; None is the empty prompt (plain classifier-free guidance);
        guidance: classifier-free guidance scale (1 = plain conditional model);
        smiles / graphs: for molecule models, the molecules, taken in turn: SMILES strings, or graphs (atoms (K, A),
            bonds (K, A, A)); None: the run's example molecules. Returns conformers (num, 3, A) in model units
            (x Å / scale), centred, 0 at padding (the module docstring)."""
        if num < 1 or batch < 1:
            raise ValueError(f"num and batch must be >= 1, got num={num}, batch={batch}")
        label_tensor = self.labels_for(num, labels)
        graph = self.graphs_for(num, smiles, graphs)  # None for models of other data
        text = self._text_conditions(num, prompts, negative_prompt, guidance)  # None for non-text models
        g = torch.Generator(device=self.device).manual_seed(seed)
        den = self.denoiser
        if label_tensor is not None and guidance != 1:
            den = Guided(self.denoiser, guidance, lambda c: torch.full_like(c, self.num_classes))
        out = []
        amp = fast.autocast(self.device, len(self.shape) - 1) if self.precision == "auto" else nullcontext()
        for start in range(0, num, batch):
            b = min(batch, num - start)
            cond = None if label_tensor is None else label_tensor[start:start + b].to(self.device)
            if graph is not None:
                cond = tuple(t[start:start + b].to(self.device) for t in graph)
            if text is not None:
                (table, index), negatives = text
                cond = table.select(index[start:start + b]).to(self.device)  # (b, L, C), (b, L)
                if guidance != 1:  # the unconditional pass: the empty prompt, or the negative prompts
                    null = (self.net.null(b, self.device) if negatives is None
                            else negatives[0].select(negatives[1][start:start + b]).to(self.device))
                    den = Guided(self.denoiser, guidance, lambda c, null=null: null)
            with amp:  # the network in bf16 where that is fast; the sampler's arithmetic stays fp32
                x = sample(den, (b, *self.shape), sampler=sampler, steps=steps, generator=g, cond=cond,
                           callback=callback, device=self.device, **options)
            if graph is not None:  # coordinates: unbounded; the mean the net never saw (its noise) removed
                out.append(centre(x.float(), cond[0]).cpu())
            else:  # images are clipped to their range; latents and point coordinates are not bounded (a cloud
                # clipped to the [-1, 1] cube would get square corners)
                bounded = self.codec is None and self.info["data"].get("kind", "grid") == "grid"
                out.append(x.clamp(-1, 1).cpu() if bounded else x.cpu())
            if progress is not None:
                progress(b)
        out = torch.cat(out)
        return self.codec.decode(out) if self.codec is not None and decode else out

    def graphs_for(self, num: int, smiles=None, graphs=None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The graph of each of `num` samples, (atoms (num, A), bonds (num, A, A)), for molecule models (None for
        others): `molsamples.graphs_for` (SMILES checked against the model, one-line errors)."""
        if self.kind != "molecules":
            if smiles is not None or graphs is not None:
                raise ValueError(f"smiles and graphs are for molecule models; this model makes {self.kind} data")
            return None
        from .molsamples import graphs_for

        return graphs_for(self.info["data"], num, smiles, graphs)

    def prompts_for(self, num: int, prompts=None) -> list[str] | None:
        """The prompt of each of `num` samples (None for models that are not text-conditioned); checks them."""
        if self.text is None:
            if prompts is not None:
                kind = "class-conditional (give labels)" if self.num_classes else "unconditional"
                raise ValueError(f"this model is {kind}: it takes no prompts (train with --cond text on captioned "
                                 f"data for text-to-image)")
            return None
        given = self.text["prompts"] if prompts is None else _prompt_list(prompts, "prompts")
        if prompts is not None and len(given) > num:
            raise ValueError(f"{len(given)} prompts for {num} samples: ask for at least {len(given)} samples "
                             f"(prompts are taken in turn)")
        return [given[i % len(given)] for i in range(num)]

    def encode_prompts(self, prompts: list[str]) -> tuple[TextCond, torch.Tensor]:
        """Prompts -> (table: each distinct prompt encoded once, (U, L, C) and (U, L); index (N,) into it)."""
        unique = sorted(set(prompts))
        row = {p: i for i, p in enumerate(unique)}
        tokens, mask = load_text_encoder(self.text).encode(unique)
        return TextCond(tokens.float().cpu(), mask.cpu()), torch.tensor([row[p] for p in prompts])

    def _text_conditions(self, num, prompts, negative_prompt, guidance):
        per_sample = self.prompts_for(num, prompts)
        if per_sample is None:
            if negative_prompt is not None:
                raise ValueError("negative_prompt is for text models; this model takes no prompts")
            return None
        negatives = None
        if negative_prompt is not None:
            neg = _prompt_list(negative_prompt, "negative_prompt")
            k = 1 if prompts is None or isinstance(prompts, str) else len(prompts)
            if len(neg) not in (1, k):
                raise ValueError(f"give one negative prompt, or one per prompt ({k}); got {len(neg)}")
            if guidance == 1:
                warnings.warn("negative_prompt has no effect at guidance 1 (the conditional model alone); use a "
                              "guidance scale > 1", stacklevel=3)
            else:
                negatives = self.encode_prompts([neg[i % len(neg)] for i in range(num)])
        return self.encode_prompts(per_sample), negatives

    def labels_for(self, num: int, labels=None) -> torch.Tensor | None:
        """The labels `sample` uses for `num` samples (None for models without labels); checks them."""
        if self.num_classes is None:
            if labels is not None and self.text is not None:
                raise ValueError("this model is text-conditioned: give prompts, not labels (e.g. prompts=\"the "
                                 "digit 7\", or --prompt on the command line)")
            if labels is not None:
                raise ValueError("this model is unconditional: it takes no labels (train with --cond label)")
            return None
        if labels is None:
            return torch.arange(num) % self.num_classes
        t = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if len(t) == 1:
            t = t.expand(num)
        bad = t[(t < 0) | (t >= self.num_classes)]
        if len(bad):
            names = self.info["data"].get("class_names")
            raise ValueError(f"unknown label {int(bad[0])}: this model knows labels 0..{self.num_classes - 1}"
                             + (f" ({', '.join(map(str, names))})" if names else ""))
        if len(t) != num:
            raise ValueError(f"give one label or {num} labels, got {len(t)}")
        return t.clone()


def _prompt_list(prompts, name: str) -> list[str]:
    """A string or a non-empty list of strings -> list, with an error that says what was wrong."""
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, (list, tuple)):
        raise ValueError(f"{name} must be a string or a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError(f"{name} is an empty list: give at least one prompt (or None)")
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise ValueError(f"{name} must be strings; item {bad[0]} is {type(prompts[bad[0]]).__name__}")
    return list(prompts)
