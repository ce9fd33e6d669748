"""Denoising networks. One architecture per file; shared layers and embeddings in layers.py."""

from .unet import PRESETS, UNet, UNetConfig, param_count, param_counts, unet_config

__all__ = ["PRESETS", "UNet", "UNetConfig", "param_count", "param_counts", "unet_config"]
