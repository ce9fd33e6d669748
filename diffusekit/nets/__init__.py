"""Denoising networks. One architecture per file; shared layers and embeddings in layers.py.

    unet.py    UNet for grids: 1-D signals, 2-D images, 3-D video and volumes (UNetConfig, PRESETS)
    points.py  a permutation-equivariant set transformer for point clouds (PointNetConfig, POINT_PRESETS)
    molecules.py  an E(3)-equivariant graph network for conformers, given the molecular graph (EGNNConfig,
               MOLECULE_PRESETS)

run.json names the architecture (`arch`, absent in runs from before there was a choice: the UNet) and keeps its
config; `config_from_info` and `build` turn that back into the network.
"""

from .molecules import EGNN, MOLECULE_PRESETS, EGNNConfig, molecule_config
from .points import POINT_PRESETS, PointNetConfig, PointTransformer, point_config
from .unet import PRESETS, UNet, UNetConfig, param_count, param_counts, unet_config

ARCHS = {"unet": (UNetConfig, UNet), "points": (PointNetConfig, PointTransformer), "molecules": (EGNNConfig, EGNN)}


def config_from_info(info: dict):
    """The network config a run.json describes: `info["unet"]` for UNets, `info["net"]` for the others."""
    arch = info.get("arch", "unet")
    if arch not in ARCHS:
        raise ValueError(f"run.json names an unknown network architecture {arch!r}; known: {', '.join(ARCHS)}")
    return ARCHS[arch][0].from_dict(info["unet"] if arch == "unet" else info["net"])


def arch_of(config) -> str:
    return next(name for name, (cls, _) in ARCHS.items() if isinstance(config, cls))


def net_record(config) -> dict:
    """What run.json keeps of a network config (the inverse of `config_from_info`)."""
    arch = arch_of(config)
    return {"unet": config.to_dict()} if arch == "unet" else {"arch": arch, "net": config.to_dict()}


def build(config):
    """The bare network of a config in ARCHS (UNetConfig, PointNetConfig, EGNNConfig)."""
    return ARCHS[arch_of(config)][1](config)


__all__ = ["ARCHS", "EGNN", "EGNNConfig", "MOLECULE_PRESETS", "POINT_PRESETS", "PRESETS", "PointNetConfig", "PointTransformer", "UNet", "UNetConfig", "build",
           "config_from_info", "molecule_config", "net_record", "param_count", "param_counts", "point_config", "unet_config"]
