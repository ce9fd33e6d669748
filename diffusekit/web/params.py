"""What a client may ask of `diffusekit serve`, checked before anything runs: every field's type and range, with a
message that says what was wrong (the API answers 400 with it). A checked request is the job's `params`: complete
(defaults filled in, a "random" seed drawn), so it reproduces the job, and it is what the PNGs carry."""

from __future__ import annotations

import base64
import binascii
import secrets

from ..inverse.latent import check_latent_method
from ..inverse.solvers import METHOD_OPTIONS, METHODS
from ..inverse.tasks import MASK_KINDS
from ..samplers import SAMPLERS, sampler_options
from ..schedules import SPACINGS
from .models import RECONSTRUCT_TASKS, ServedModel

MAX_NUM = 64  # images per job
MAX_STEPS = 1000  # sampler steps
MAX_PROMPT = 500  # characters
MAX_IMAGE_BYTES = 4 * 1024 * 1024  # an uploaded image or mask, decoded
MAX_BODY_BYTES = 12 * 1024 * 1024  # a whole request (base64 images are 4/3 their size)
MAX_SEED = 2**63 - 1
MAX_REPEATS = 100  # restarts, restart_steps, resample: each multiplies a job's network calls
MAX_CALLS = 10 * MAX_STEPS  # steps x resample, restarts x restart_steps: a job a worker finishes, not one it holds for days
SAMPLING_KEYS = {"spacing": None, "sigma_min": 0.0, "sigma_max": 0.0}  # the sampling options' kinds: a name, numbers


class BadRequest(ValueError):
    """A request the server will not run; the message is the API's answer (HTTP 400)."""


class TooLarge(BadRequest):
    """A request or upload over the size limits (HTTP 413)."""


def number(body: dict, key: str, default, lo, hi, integer: bool = False):
    v = body.get(key, default)
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or not lo <= v <= hi:
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"{key} must be {kind} in [{lo}, {hi}], got {v!r}")
    return v


def text(body: dict, key: str) -> str | None:
    v = body.get(key)
    if v is None or v == "":
        return None
    if not isinstance(v, str) or len(v) > MAX_PROMPT:
        raise BadRequest(f"{key} must be a string of at most {MAX_PROMPT} characters")
    return v


def one_of(body: dict, key: str, default, allowed, what: str):
    """A name from `allowed` (a JSON list or object is not one, and is not hashable either)."""
    v = body.get(key, default)
    if not isinstance(v, str) or v not in allowed:
        raise BadRequest(f"unknown {what} {v!r}; allowed: {', '.join(allowed)}")
    return v


def check_repeats(options: dict, steps: int) -> None:
    """The options that multiply a job's work, bounded (see MAX_REPEATS, MAX_CALLS); the sampler or solver itself
    checks that they are whole numbers."""
    for k in ("restarts", "restart_steps", "resample", "jump_length"):
        v = options.get(k)
        hi = MAX_STEPS if k == "jump_length" else MAX_REPEATS
        if v is not None and (isinstance(v, str) or not 0 <= v <= hi):
            raise BadRequest(f"option {k} must be a whole number in [0, {hi}], got {v!r}")
    product = {"restart": options.get("restarts", 0) * options.get("restart_steps", 0),
               "resample": steps * options.get("resample", 1)}
    if max(product.values()) > MAX_CALLS:
        raise BadRequest(f"steps x resample and restarts x restart_steps must be at most {MAX_CALLS}")


def seed_of(body: dict) -> int:
    """An integer seed, or "random" (drawn here and recorded, so the job can be repeated)."""
    v = body.get("seed", 0)
    if v == "random" or v is None:
        return secrets.randbelow(2**31)
    return number(body, "seed", 0, 0, MAX_SEED, integer=True)


def options_of(body: dict, names: dict) -> dict:
    """The sampler's (or solver's) own options: a JSON object of numbers / strings, only keys `names` knows."""
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequest("options must be a JSON object, e.g. {\"eta\": 0.5}")
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise BadRequest(f"unknown option(s) {unknown}; this one takes: {', '.join(sorted(names)) or 'none'}")
    out = {}
    for k, v in options.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, str)) or (isinstance(v, str) and len(v) > 64):
            raise BadRequest(f"option {k} must be a number or a short string, got {v!r}")
        out[k] = as_number(v)
        if out[k] != out[k]:
            raise BadRequest(f"option {k} is NaN")
        wants_number = isinstance(names[k], (int, float)) and not isinstance(names[k], bool)
        if wants_number and isinstance(out[k], str):  # "abc" for eta reached the sampler: a TypeError in the job
            raise BadRequest(f"option {k} must be a number, got {v!r}")
    return out


def as_number(v):
    """A number written as a string ("inf", "0.5", as the models' listing writes what JSON cannot hold) -> float;
    anything else as it is."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def image_bytes(body: dict, key: str, required: bool) -> bytes | None:
    """A PNG/JPEG/WebP/BMP upload as a data URL ("data:image/png;base64,...") or bare base64, decoded."""
    v = body.get(key)
    if v is None or v == "":
        if required:
            raise BadRequest(f"{key} is required: an image as a data URL (data:image/png;base64,...)")
        return None
    if not isinstance(v, str):
        raise BadRequest(f"{key} must be a data URL string")
    payload = v.split(",", 1)[1] if v.startswith("data:") else v
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise TooLarge(f"{key} is larger than {MAX_IMAGE_BYTES // 2**20} MB")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{key} is not valid base64") from None


def check_job(served: ServedModel, body: dict) -> dict:
    """A job request -> its complete params (see the module docstring)."""
    task = body.get("task", "generate")
    if task not in served.tasks:
        raise BadRequest(f"model {served.name!r} does not do task {task!r}; it does: {', '.join(served.tasks)}")
    if task == "generate":
        return check_generate(served, body)
    return check_reconstruct(served, body, task)


def check_generate(served: ServedModel, body: dict) -> dict:
    m = served.model
    sampler = one_of(body, "sampler", "dpmpp-2m", SAMPLERS, "sampler")
    p = {"task": "generate", "sampler": sampler, "steps": number(body, "steps", 20, 1, MAX_STEPS, integer=True),
         "seed": seed_of(body), "num": number(body, "num", 8, 1, MAX_NUM, integer=True),
         "guidance": number(body, "guidance", 1.0, 0.0, 30.0)}
    p["options"] = options_of(body, {**sampler_options(sampler), **SAMPLING_KEYS})
    check_repeats({**sampler_options(sampler), **p["options"]}, p["steps"])
    if p["options"].get("spacing") is not None and p["options"]["spacing"] not in SPACINGS:
        raise BadRequest(f"spacing must be one of {', '.join(SPACINGS)}")
    label, prompt, negative = body.get("label"), text(body, "prompt"), text(body, "negative_prompt")
    if label is not None:
        if m.num_classes is None:
            raise BadRequest(f"model {served.name!r} is not class-conditional: it takes no label")
        p["label"] = number(body, "label", 0, 0, m.num_classes - 1, integer=True)
    if (prompt is not None or negative is not None) and m.text is None:
        raise BadRequest(f"model {served.name!r} is not text-conditioned: it takes no prompt")
    if prompt is not None:
        p["prompt"] = prompt
    if negative is not None:
        p["negative_prompt"] = negative
    return p


def check_reconstruct(served: ServedModel, body: dict, task: str) -> dict:
    latent = served.model.codec is not None
    method = one_of(body, "method", "dps" if latent else "ddnm", METHODS, "method")
    if latent:
        try:
            check_latent_method(method)
        except ValueError as e:
            raise BadRequest(str(e).replace("--method dps", "method dps")) from None
    p = {"task": task, "method": method, "steps": number(body, "steps", 50, 1, MAX_STEPS, integer=True),
         "seed": seed_of(body), "options": options_of(body, METHOD_OPTIONS[method]),
         "sigma_y": number(body, "sigma_y", 0.0, 0.0, 1.0)}
    check_repeats({**METHOD_OPTIONS[method], **p["options"]}, p["steps"])
    if task == "superres":
        p["scale"] = number(body, "scale", 4, 2, 16, integer=True)
    if task == "mri":
        p["acceleration"] = number(body, "acceleration", 4.0, 1.0, 32.0)
    if task == "inpaint" and body.get("mask") is None:
        p["mask_kind"] = body.get("mask_kind", "box")
        if p["mask_kind"] not in MASK_KINDS:
            raise BadRequest(f"mask_kind must be one of {', '.join(MASK_KINDS)} (or draw a mask)")
    if "example" in body and body.get("image") is None:
        p["example"] = number(body, "example", 0, 0, 10**6, integer=True)
    elif body.get("image") is None:
        raise BadRequest("give an image (a data URL) or the index of one of the model's examples (\"example\": 0)")
    return p


def check_forward(body: dict) -> dict:
    return {"t": number(body, "t", 500, 0, 999, integer=True), "seed": seed_of(body),
            "example": number(body, "example", 0, 0, 10**6, integer=True) if body.get("image") is None else None}


__all__ = ["BadRequest", "TooLarge", "MAX_BODY_BYTES", "MAX_NUM", "MAX_STEPS", "RECONSTRUCT_TASKS", "check_forward", "check_job",
           "image_bytes"]
