"""A diffusekit UNet run written as a diffusers pipeline folder, weights mapped exactly:

    OUT/model_index.json                                  DDPMPipeline: `DDPMPipeline.from_pretrained(OUT)`
    OUT/unet/config.json + diffusion_pytorch_model.safetensors   UNet2DModel: `UNet2DModel.from_pretrained(OUT/unet)`
    OUT/unet/diffusekit.json                              the unconditional label, class names, the run it came from
    OUT/scheduler/scheduler_config.json                   DDPMScheduler: the run's schedule and prediction

Why it maps: our 2-D UNet (`diffusekit.nets.unet`) is, block for block, diffusers' UNet2DModel with
`resnet_time_scale_shift="scale_shift"`:

    diffusekit                                   diffusers UNet2DModel
    SinusoidalEmbedding (cos first, 1/half)      Timesteps(flip_sin_to_cos=True, freq_shift=0)
    emb_mlp Linear-SiLU-Linear, width 4 ch       TimestepEmbedding linear_1, linear_2 (time_embed_dim = 4 ch)
    label embedding + cond_proj (both linear)    class_embedding, one row per label, folded: E W^T + b
    ResBlock norm1/conv1/film/norm2/conv2/skip   ResnetBlock2D norm1/conv1/time_emb_proj/norm2/conv2/conv_shortcut
    Attention norm/qkv/proj, residual            Attention group_norm/to_q,to_k,to_v/to_out.0, residual
    level: res blocks (+ attention), stride-2    DownBlock2D / AttnDownBlock2D, Downsample2D(conv, padding 1)
      conv; skips after each block and Downsample
    middle: res, attention, res                  UNetMidBlock2D (attn_norm_num_groups: its attention keeps a norm)
    level up: res blocks on cat([h, skip]),      UpBlock2D / AttnUpBlock2D (layers_per_block + 1),
      nearest x2 + 3x3 conv                       Upsample2D(conv)
    norm_out + SiLU, conv_out                    conv_norm_out, conv_act, conv_out

Refused, one line each, where diffusers' UNet2DModel cannot express the run: 1-D or 3-D data, text
cross-attention, latent runs (their samples need a diffusekit autoencoder), EDM runs (log-sigma noise input, a
continuous schedule), point and molecule networks, and two structural differences of a config: a width that
norm_groups does not divide (diffusekit then uses gcd groups; diffusers one count everywhere), attention layers
whose head sizes differ (diffusers has one attention_head_dim), and an image size that is not a multiple of
2^(levels - 1) (diffusekit pads it, diffusers does not).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..nets.layers import Attention
from ..nets.groupnorm import GroupNormAct
from .diffusers import META, PREDICTIONS, SCHEDULES, WEIGHTS

DIFFUSERS_TESTED = "0.42.1"  # the diffusers these folders are tested against (tests/interop)
NORM_EPS = 1e-5  # GroupNormAct's eps, everywhere


def check_exportable(info: dict) -> None:
    """Refuse a run diffusers' UNet2DModel + DDPMScheduler cannot express (see the module docstring)."""
    arch, train = info.get("arch", "unet"), info.get("train", {})
    if arch != "unet":
        raise ValueError(f"this run's network is {arch!r}; diffusers' UNet2DModel is an image UNet (export takes "
                         f"2-D UNet runs)")
    if len(info["data"]["shape"]) != 3:
        raise ValueError(f"this run's data has shape {info['data']['shape']}; diffusers' UNet2DModel takes images "
                         f"(C, H, W) only (1-D signals and 3-D video do not export)")
    if train.get("cond") == "text" or (info.get("unet") or {}).get("context_dim") is not None:
        raise ValueError("this run cross-attends to text; diffusers' UNet2DModel has no cross-attention (text "
                         "runs do not export)")
    if "latent" in info:
        raise ValueError("this is a latent run: its samples are latents that only its diffusekit autoencoder "
                         "decodes, which a diffusers pipeline cannot run")
    if info["prediction"] not in PREDICTIONS.values() or info["schedule"].get("name") not in SCHEDULES.values():
        raise ValueError(f"this run uses {info['schedule'].get('name')} noise levels with {info['prediction']!r} "
                         f"prediction (EDM: log-sigma inputs); diffusers' UNet2DModel and DDPMScheduler take a "
                         f"discrete VP schedule with eps, v or x0 prediction")
    if (info.get("unet") or {}).get("emb_scale", 1.0) != 1.0:
        raise ValueError("this run's UNet embeds its noise level with emb_scale != 1 (log-sigma inputs); diffusers' "
                         "Timesteps embedding has no such scale")


def head_dim_of(unet: nn.Module, where: str = "this run's UNet") -> int | None:
    """diffusers' attention_head_dim for our attention layers: their one head size, or None (one head each, of
    its width) where layers of several widths have one head each; refused if neither fits."""
    sizes = {(a.qkv.in_features, a.heads) for a in unet.modules() if isinstance(a, Attention)}
    head_sizes = {c // h for c, h in sizes}
    if len(head_sizes) <= 1:
        return next(iter(head_sizes), None)
    if all(h == 1 for _, h in sizes):
        return None
    raise ValueError(f"{where} has attention heads of sizes {sorted(head_sizes)}; diffusers' UNet2DModel has one "
                     f"attention_head_dim for all (choose head_dim to divide every attention width)")


def unet_config(unet: nn.Module, shape, num_class_embeds: int | None) -> dict:
    """UNet2DModel's config for our UNet (see the module docstring); structural differences refused."""
    cfg = unet.config
    if cfg.dims != 2 or cfg.context_dim is not None or cfg.emb_scale != 1.0:
        raise ValueError("only 2-D UNets without cross-attention and with emb_scale 1 map onto UNet2DModel")
    odd = sorted({m.weight.numel() for m in unet.modules() if isinstance(m, GroupNormAct) and
                  m.groups != cfg.norm_groups})
    if odd:
        raise ValueError(f"this run's UNet has widths {odd} that norm_groups={cfg.norm_groups} does not divide "
                         f"(diffusekit normalises them in gcd groups, diffusers' UNet2DModel in norm_groups "
                         f"everywhere)")
    m = 2 ** (len(cfg.channel_mult) - 1)
    if any(s % m for s in shape[1:]):
        raise ValueError(f"the images are {tuple(shape[1:])}, not a multiple of {m} (2^(levels - 1)): diffusekit "
                         f"pads them, diffusers' UNet2DModel does not")
    levels = range(len(cfg.channel_mult))
    h, w = shape[1:]
    return {
        "_class_name": "UNet2DModel", "_diffusers_version": diffusers_version(),
        "sample_size": h if h == w else [h, w], "in_channels": cfg.in_channels,
        "out_channels": cfg.out_channels or cfg.in_channels, "center_input_sample": False,
        "time_embedding_type": "positional", "freq_shift": 0, "flip_sin_to_cos": True,
        "down_block_types": ["AttnDownBlock2D" if i in cfg.attn_levels else "DownBlock2D" for i in levels],
        "mid_block_type": "UNetMidBlock2D",
        "up_block_types": ["AttnUpBlock2D" if i in cfg.attn_levels else "UpBlock2D" for i in reversed(levels)],
        "block_out_channels": [cfg.channels * k for k in cfg.channel_mult], "layers_per_block": cfg.num_res_blocks,
        "mid_block_scale_factor": 1, "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv",
        "dropout": cfg.dropout, "act_fn": "silu", "attention_head_dim": head_dim_of(unet),
        "norm_num_groups": cfg.norm_groups, "attn_norm_num_groups": cfg.norm_groups, "norm_eps": NORM_EPS,
        "resnet_time_scale_shift": "scale_shift", "add_attention": cfg.mid_attn, "class_embed_type": None,
        "num_class_embeds": num_class_embeds,
    }


def _block(out: dict, prefix: str, j: int, block) -> None:
    """A UNetBlock's res block (and attention) under diffusers' names."""
    res = block.res
    names = {"norm1": res.norm1, "conv1": res.conv1, "time_emb_proj": res.film, "norm2": res.norm2,
             "conv2": res.conv2}
    if isinstance(res.skip, nn.Conv2d):
        names["conv_shortcut"] = res.skip
    out.update({f"{prefix}.resnets.{j}.{k}": v for k, v in names.items()})
    if block.attn is not None:
        out[f"{prefix}.attentions.{j}"] = block.attn


def module_names(unet: nn.Module) -> dict[str, nn.Module]:
    """diffusers' name of each of our UNet's layers (their order is the same: see the module docstring)."""
    levels, n = len(unet.config.channel_mult), unet.config.num_res_blocks
    out = {"conv_in": unet.conv_in, "time_embedding.linear_1": unet.emb_mlp[0],
           "time_embedding.linear_2": unet.emb_mlp[2], "conv_norm_out": unet.norm_out, "conv_out": unet.conv_out}
    down, up = iter(unet.down), iter(unet.up)
    for level in range(levels):
        for j in range(n):
            _block(out, f"down_blocks.{level}", j, next(down))
        if level < levels - 1:
            out[f"down_blocks.{level}.downsamplers.0.conv"] = next(down).conv
    _block(out, "mid_block", 0, unet.mid[0])
    _block(out, "mid_block", 1, unet.mid[1])
    for i in range(levels):
        for j in range(n + 1):
            _block(out, f"up_blocks.{i}", j, next(up))
        if i < levels - 1:
            out[f"up_blocks.{i}.upsamplers.0.conv"] = next(up).conv
    return out


def unet_to_diffusers(net: nn.Module, shape) -> tuple[dict, dict[str, torch.Tensor]]:
    """(UNet2DModel config, its state dict) for our UNet `net`, or a LabelConditioned one (its label embedding and
    cond_proj folded into class_embedding, the unconditional label last). shape: the images' (C, H, W)."""
    label = hasattr(net, "embed") and hasattr(net, "num_classes")
    unet = net.net if label else net
    config = unet_config(unet, shape, net.num_classes + 1 if label else None)
    state = {}
    for name, mod in module_names(unet).items():
        if isinstance(mod, Attention):
            w, b = mod.qkv.weight.chunk(3), mod.qkv.bias.chunk(3)  # rows: q, k, v, each head after head
            for i, part in enumerate(("to_q", "to_k", "to_v")):
                state[f"{name}.{part}.weight"], state[f"{name}.{part}.bias"] = w[i], b[i]
            pairs = {"group_norm": mod.norm, "to_out.0": mod.proj}
            state.update({f"{name}.{p}.{t}": getattr(m, t) for p, m in pairs.items() for t in ("weight", "bias")})
        else:
            state[f"{name}.weight"], state[f"{name}.bias"] = mod.weight, mod.bias
    if label:  # emb + cond_proj(embed[y]) = emb + (E W^T + b)[y]: one table
        state["class_embedding.weight"] = net.embed.weight @ unet.cond_proj.weight.T + unet.cond_proj.bias
    return config, {k: v.detach().float().contiguous().clone() for k, v in state.items()}


def diffusers_version() -> str:
    try:
        import diffusers
        return diffusers.__version__
    except ImportError:  # writing needs no diffusers; name the version the format was tested with
        return DIFFUSERS_TESTED


def scheduler_config(info: dict) -> dict:
    """DDPMScheduler's config for the run's schedule and prediction. No clipping of x0: diffusekit's samplers do
    not clip, and the pipeline then samples what `diffusekit sample --sampler ddpm` samples."""
    s = info["schedule"]
    return {"_class_name": "DDPMScheduler", "_diffusers_version": diffusers_version(),
            "num_train_timesteps": s["num_timesteps"], "beta_start": s["beta_start"], "beta_end": s["beta_end"],
            "beta_schedule": {v: k for k, v in SCHEDULES.items()}[s["name"]], "trained_betas": None,
            "variance_type": "fixed_small", "clip_sample": False, "clip_sample_range": 1.0,
            "prediction_type": {v: k for k, v in PREDICTIONS.items()}[info["prediction"]],
            "rescale_betas_zero_snr": bool(s.get("zero_terminal_snr", False)), "timestep_spacing": "leading",
            "steps_offset": 0, "thresholding": False}


def export_diffusers(model, out_dir: str | Path, source: str | None = None) -> list[Path]:
    """Write `model` (a `TrainedModel` of a 2-D UNet run) as a DDPMPipeline folder `out_dir` (see the module
    docstring); returns the files written. source: the run it came from, recorded in unet/diffusekit.json."""
    from safetensors.torch import save_file

    check_exportable(model.info)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; give a new folder to export into")
    config, state = unet_to_diffusers(model.net, model.info["data"]["shape"])
    label = config["num_class_embeds"] is not None
    meta = {"null_label": model.num_classes if label else None,
            "class_names": model.info["data"].get("class_names") if label else None,
            "data": model.info["data"].get("name"), "run": None if source is None else str(source),
            "step": model.step}
    files = {out / "model_index.json": {"_class_name": "DDPMPipeline", "_diffusers_version": diffusers_version(),
                                        "scheduler": ["diffusers", "DDPMScheduler"],
                                        "unet": ["diffusers", "UNet2DModel"]},
             out / "unet" / "config.json": config, out / "unet" / META: meta,
             out / "scheduler" / "scheduler_config.json": scheduler_config(model.info)}
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2) + "\n")
    save_file(state, str(out / "unet" / WEIGHTS), metadata={"format": "pt"})
    return [*files, out / "unet" / WEIGHTS]


__all__ = ["check_exportable", "export_diffusers", "head_dim_of", "module_names", "scheduler_config",
           "unet_to_diffusers"]
