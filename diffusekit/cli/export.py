"""`diffusekit export`: a trained run written in another toolkit's format (`diffusekit.interop`)."""

from __future__ import annotations

from pathlib import Path


def add_export(sub):
    p = sub.add_parser("export", help="write a trained run as a diffusers pipeline folder",
                       description="Write the run's network (EMA weights of the newest checkpoint) as a diffusers "
                                   "DDPMPipeline folder: unet/ (a UNet2DModel whose output equals the network's) and "
                                   "scheduler/ (a DDPMScheduler with the run's schedule and prediction). Load it with "
                                   "DDPMPipeline.from_pretrained(OUT_DIR) or UNet2DModel.from_pretrained(OUT_DIR/unet), "
                                   "or sample it back with `diffusekit sample --diffusers OUT_DIR`. Class-conditional "
                                   "runs map their labels to num_class_embeds (the last one is the unconditional "
                                   "label). 2-D UNet runs only: 1-D/3-D data, text, latent and EDM runs are refused.")
    p.add_argument("run_dir", type=Path, help="a run directory, a packed model or a zoo model name")
    p.add_argument("--diffusers", type=Path, required=True, metavar="OUT_DIR",
                   help="the folder to write (new, or empty)")
    p.add_argument("--weights", choices=["ema", "model"], default="ema")


def cmd_export(a) -> int:
    from ..model import TrainedModel

    model = TrainedModel.load(a.run_dir, weights=a.weights, precision="fp32")
    for path in model.to_diffusers(a.diffusers, source=a.run_dir):
        print(path)
    return 0
