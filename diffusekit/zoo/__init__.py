"""The model zoo: models trained by diffusekit that ship inside the package, each a packed model (`rundir`: run.json,
weights.safetensors, card.json, MODEL.md) in a folder of this package named after it.

    diffusekit models                                    # what there is: name, task, size, quality
    diffusekit sample mnist5k --num 16 --out s.npz       # a zoo name works wherever a run directory does
    TrainedModel.load("shapes-text")                     # and from Python

`locate` turns what a user typed into a folder: a run directory (or packed model) on disk wins; else a zoo name;
else an error that lists the zoo. Each model's card says how it was trained (the committed command) and measured.
"""

from __future__ import annotations

from pathlib import Path

from ..rundir import CARD, RUN_FILE, read_card, read_json

ZOO_DIR = Path(__file__).parent
PREFIX = "zoo:"  # how a run.json names a zoo model it depends on (a latent model's autoencoder): "zoo:NAME"


def names() -> list[str]:
    """The zoo's model names, sorted."""
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / CARD).is_file())


def path_of(name: str) -> Path:
    """The folder of zoo model `name`; an unknown name is a FileNotFoundError that lists the known ones."""
    name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if name not in names():
        raise FileNotFoundError(f"no zoo model named {name!r}; the zoo has: {', '.join(names()) or '(none)'} "
                                f"(`diffusekit models` describes them)")
    return ZOO_DIR / name


def locate(source: str | Path) -> Path:
    """The folder `source` names: a run directory or packed model on disk, else the zoo model of that name. A
    name that is neither is one error naming both possibilities."""
    if str(source).startswith(PREFIX):
        return path_of(str(source))
    path = Path(source)
    if (path / RUN_FILE).is_file():
        return path
    if str(source) in names():
        return ZOO_DIR / str(source)
    if path.exists() or len(path.parts) > 1:
        return path  # a folder that is not a run: the reader's own error says what is wrong with it
    raise FileNotFoundError(f"{source} is neither a run directory nor a zoo model; the zoo has: "
                            f"{', '.join(names()) or '(none)'} (`diffusekit models`), or train a run with "
                            f"`diffusekit train --out {source}`")


def in_zoo(path: Path) -> bool:
    return Path(path).resolve().parent == ZOO_DIR.resolve()


def default_output(source: str | Path, leaf: str) -> Path:
    """Where a command writes its default output for `source`: inside a run directory (RUN/show), but never into the
    installed package: for a zoo model, NAME-leaf in the working directory."""
    path = locate(source)
    return Path(f"{path.name}-{leaf}") if in_zoo(path) else path / leaf


def card(name: str) -> dict:
    """The card of zoo model `name`, its files checked."""
    return read_card(path_of(name))


def catalogue() -> list[dict]:
    """One row per zoo model: name, task, size in bytes, headline quality, steps trained (what `diffusekit models`
    prints). Cards are read without hashing the weights (listing stays instant); loading a model checks them."""
    rows = []
    for name in names():
        c = read_json(ZOO_DIR / name / CARD, "model card")
        size = sum(f.stat().st_size for f in (ZOO_DIR / name).iterdir() if f.is_file())
        rows.append({"name": name, "task": c.get("task", ""), "bytes": size, "quality": c.get("headline", ""),
                     "steps": c.get("state", {}).get("step"), "dtype": c.get("dtype", "")})
    return rows


__all__ = ["ZOO_DIR", "PREFIX", "names", "path_of", "locate", "in_zoo", "default_output", "card", "catalogue"]
