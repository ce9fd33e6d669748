"""The models a server offers: each run directory given to `diffusekit serve`, loaded once, under a short name, with
what the page needs to know of it (data kind and shape, conditioning, the tasks it supports, every sampler's options).
Clients only ever name a model by that name: no path a client sends reaches the file system."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..model import TrainedModel
from ..samplers import SAMPLERS, sampler_options
from ..zoo import locate

RECONSTRUCT_TASKS = ("inpaint", "superres", "mri")
FIELD_DATA = ("grf",)  # data sets drawn as fields with their power spectrum


def data_kind(shape: tuple, data: str) -> str:
    """signal (C, L) | image (C, H, W) | field (an image of a physical field) | video (C, T, H, W)."""
    if len(shape) == 2:
        return "signal"
    if len(shape) == 4:
        return "video"
    return "field" if data in FIELD_DATA else "image"


@dataclass
class ServedModel:
    name: str
    run_dir: Path
    model: TrainedModel
    examples: torch.Tensor | None = None  # a few real items of the training data, loaded on first use
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def data(self) -> str:
        return str(self.model.info["train"]["data"])

    @property
    def kind(self) -> str:
        return data_kind(tuple(self.model.data_shape), self.data)

    @property
    def tasks(self) -> list[str]:
        """generate always; reconstruction for 2-D images (latent runs by DPS through the decoder)."""
        tasks = ["generate"]
        if self.kind in ("image", "field"):
            tasks += list(RECONSTRUCT_TASKS)
        return tasks

    def describe(self) -> dict:
        m = self.model
        cond = "text" if m.text is not None else "label" if m.num_classes is not None else "none"
        info = m.info
        return {"name": self.name, "data": self.data, "kind": self.kind, "shape": list(m.data_shape),
                "latent": m.codec is not None, "cond": cond, "num_classes": m.num_classes,
                "class_names": info["data"].get("class_names") if m.num_classes else None,
                "prompts": list(m.text["prompts"])[:16] if m.text is not None else None,
                "rate": info["data"].get("rate"), "step": m.step, "params": info.get("params"),
                "tasks": self.tasks,
                "samplers": {name: {k: _jsonable(v) for k, v in sampler_options(name).items()}
                             for name in SAMPLERS}}

    def example(self, index: int) -> torch.Tensor:
        """Real item `index` (mod the number kept) of the model's training data, (C, *spatial) in [-1, 1]."""
        with self.lock:
            if self.examples is None:
                from ..data import load_data

                train = self.model.info["train"]
                try:
                    ds = load_data(train["data"], image_size=train.get("image_size"))
                except (ValueError, FileNotFoundError) as e:
                    raise FileNotFoundError(f"the training data of {self.name!r} ({train['data']}) cannot be "
                                            f"loaded here, so it has no examples; upload an image instead ({e})")
                g = torch.Generator().manual_seed(0)
                self.examples = ds.x[torch.randperm(len(ds), generator=g)[:64]].clone()
        return self.examples[index % len(self.examples)]


def _jsonable(v):
    """A default as JSON can hold it: inf and nan as strings (the API reads them back as numbers)."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)


def load_models(sources: list[str | Path], device: str = "cpu") -> dict[str, ServedModel]:
    """Load each run directory once; its name is the folder's name (made unique with -2, -3, ...). A source that
    is not a run directory stops the server before it starts, with a message naming it."""
    served: dict[str, ServedModel] = {}
    for source in sources:
        run = locate(source)  # a run directory, a packed model or a zoo model's name
        if not (run / "run.json").is_file():
            raise FileNotFoundError(f"{run} is not a diffusekit run directory (no run.json); give run directories "
                                    f"made by `diffusekit train`")
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", run.resolve().name) or "model"
        name, k = base, 2
        while name in served:
            name, k = f"{base}-{k}", k + 1
        served[name] = ServedModel(name, run, TrainedModel.load(run, device=device))
    if not served:
        raise ValueError("give at least one run directory to serve (e.g. `diffusekit serve runs/digits`)")
    return served
