"""Models of other toolkits, both ways.

    diffusers.py         a folder written by diffusers' `save_pretrained` (a `UNet2DModel`, or a pipeline with
                         unet/ and scheduler/) read as a run record and a network: `TrainedModel.from_diffusers`
    diffusers_export.py  a diffusekit UNet run written as such a folder (a `DDPMPipeline`: unet/ + scheduler/),
                         its weights mapped exactly: `TrainedModel.to_diffusers`, `diffusekit export --diffusers`

diffusers itself is needed to run an imported network (`pip install diffusers`), not to export one. Nothing is
unpickled either way: weights are safetensors only.
"""

from .diffusers import DiffusersUNet, diffusers_record, load_diffusers
from .diffusers_export import export_diffusers, unet_to_diffusers

__all__ = ["DiffusersUNet", "diffusers_record", "export_diffusers", "load_diffusers", "unet_to_diffusers"]
