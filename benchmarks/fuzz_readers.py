"""A seeded mutation fuzzer for every reader of user files: mutated files through the entry points users meet, each
in a worker process with a time limit and a memory cap, every outcome classified.

    python benchmarks/fuzz_readers.py                 # bounded: 300 cases, ~1 min on 2 cores (what the test runs)
    python benchmarks/fuzz_readers.py --full --out benchmarks/results/14-reliability/fuzz.json   # 10,400 cases

Seeds are valid files made by the project's writers, Pillow and numpy (`fuzz_seeds.py`); mutators are written by
hand (`fuzz_mutators.py`: bytes, lying header fields, JSON / .npy / .npz / safetensors / PLY structure, file kinds,
bombs), driven by one random.Random per case, so case i is the same file on every run. Outcomes:
    ok          the reader returned (and what it returned is finite and in range)
    clean       it raised ValueError (DataError, WavError) or FileNotFoundError with a one-line message naming the
                file: what `diffusekit` prints as one line
    traceback   any other exception, or a message of several lines or not naming the file
    bad-output  it returned NaN/inf or values outside [-1, 1]
    hang        no answer within 10 s (the worker is killed)
    memory      MemoryError under the cap (RLIMIT_AS: the worker's size after imports + 2 GiB)
    crash       the worker died (a signal)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the seed and mutator modules beside this script
import fuzz_mutators as M  # noqa: E402
import machine  # noqa: E402  benchmarks/machine.py

TIMEOUT_S = 10.0
MEMORY_CAP = 2 << 30  # bytes of address space a worker may add to what its imports hold
OUTCOMES = ("ok", "clean", "traceback", "bad-output", "hang", "memory", "crash")
RUN = "run/checkpoints/step-0000001/"
FORMATS = {".png": "png", ".jpg": "jpeg", ".gif": "gif", ".bmp": "bmp", ".webp": "webp", ".wav": "wav",
           ".npy": "npy", ".npz": "npz", ".json": "json", ".jsonl": "jsonl", ".safetensors": "st", ".ply": "ply",
           ".xyz": "xyz", ".txt": "txt"}
BY_FORMAT = {
    "png": [M.png_lie, M.bomb("bomb-huge.png"), M.bomb("bomb-mid.png")], "jpeg": [M.jpeg_lie], "bmp": [M.bmp_lie],
    "gif": [M.gif_lie, M.bomb("bomb-screen.gif"), M.bomb("bomb-frames.gif")], "webp": [M.riff_lie],
    "wav": [M.wav_lie, M.wav_lie, M.riff_lie], "npy": [M.npy_array, M.npy_array, M.npy_header, M.npy_header],
    "npz": [M.npz_member, M.npz_member, M.bomb("bomb.npz")], "json": [M.json_struct, M.json_struct, M.json_text],
    "jsonl": [M.json_struct, M.json_struct, M.json_text], "st": [M.st_header, M.st_header, M.st_nan],
    "ply": [M.ply_header, M.ply_header, M.text_tokens], "xyz": [M.text_tokens, M.text_tokens],
    "txt": [M.text_tokens, M.text_tokens],
}
GENERIC = [M.truncate, M.bitflip, M.overwrite, M.int_smash, M.chunk, M.append]


# ---- the readers and the cases they get ----------------------------------------------------------------------------

def _load_data(arg):
    from diffusekit.data import load_data
    ds = load_data(arg)
    for reason in ds.skipped:  # an image folder skips what it cannot read: the reason must be a decoder's, not a bug
        kind = reason.split(": ")[1] if reason.count(": ") > 1 else ""
        if kind in BUG_TYPES:
            raise RuntimeError(f"skipped for a bug: {reason}")
    return ds.x


def _captioned(arg):
    from diffusekit.data.captions import load_captioned
    return load_captioned(arg).x


def _image(arg):
    from diffusekit.inverse.task import load_image
    path, channels = arg
    return load_image(path, (channels, 16, 16))[0]


def _mask(arg):
    from diffusekit.inverse.task import load_mask
    return load_mask(arg, (16, 16))[0]


def _model(arg):
    from diffusekit.model import TrainedModel
    return list(TrainedModel.load(arg).net.parameters())


def _info(arg):
    from diffusekit.rundir import format_summary, run_summary
    return format_summary(run_summary(arg))


def _config(arg):
    from diffusekit.train.config import TrainConfig
    return TrainConfig.from_json_file(arg)


BUG_TYPES = {"KeyError", "AttributeError", "NameError", "TypeError", "ZeroDivisionError", "RecursionError",
             "MemoryError", "AssertionError", "UnboundLocalError"}
IMAGES = ["gray.png", "rgb.png", "rgba.png", "gray16.png", "palette.png", "rgb.jpg", "gray.jpg", "rgb.webp",
          "rgba.webp", "rgb.bmp", "palette.bmp"]
# name -> (reader, files that get mutated, (valid files beside the victim: seed -> name), name of the victim in the
#          case or None for its own name, what the reader is given: "dir" the case folder, "file" the victim)
TARGETS = {
    "image folder": (_load_data, IMAGES, {"gray.png": "a.png", "rgb.jpg": "b.jpg"}, "z", "dir"),
    "GIF clips": (_load_data, ["a.gif", "b.gif"], {"a.gif": "a.gif", "b.gif": "b.gif"}, "z", "dir"),
    "WAV folder": (_load_data, ["pcm8.wav", "pcm16.wav", "pcm24.wav", "pcm32.wav", "stereo.wav", "float.wav"],
                   {"pcm16.wav": "a.wav"}, "z", "dir"),
    ".npy": (_load_data, ["u8.npy", "f32.npy", "f64.npy", "i16.npy"], {}, None, "file"),
    ".npz": (_load_data, ["plain.npz", "packed.npz"], {}, None, "file"),
    "point clouds": (_load_data, ["cloud.ply", "ascii.ply", "cloud.npy", "cloud.xyz"], {"cloud.ply": "a.ply"}, "z",
                     "dir"),
    "captions.jsonl": (_captioned, ["captions.jsonl"], {"gray.png": "gray.png", "rgb.png": "rgb.png"}, None, "dir"),
    ".txt captions": (_captioned, ["caption.txt"], {"gray.png": "gray.png", "rgb.png": "rgb.png",
                                                    "caption.txt": "rgb.txt"}, "gray", "dir"),
    "reconstruct input": (_image, ["gray.png", "rgb.jpg", "rgb.webp", "rgb.bmp", "rgba.png", "gray16.png",
                                   "image.npy"], {}, None, "file"),
    "reconstruct mask": (_mask, ["mask.png", "gray.png", "palette.bmp"], {}, None, "file"),
    "run dir (load)": (_model, ["run/run.json", RUN + "ema.safetensors", RUN + "state.json"], {}, None, "run"),
    "run dir (info)": (_info, ["run/run.json", RUN + "state.json", "run/metrics.jsonl"], {}, None, "run"),
    "config JSON": (_config, ["config.json", "small-config.json"], {}, None, "file"),
}
RUN_FILES = ["run/run.json", "run/metrics.jsonl"] + [RUN + f for f in ("model.safetensors", "ema.safetensors",
                                                                       "state.safetensors", "state.json")]


def mutations(victim: str) -> list:
    """Every mutation a victim gets: the generic byte ones, its format's, and the file kinds."""
    fmt = FORMATS[Path(victim).suffix]
    text_ply = victim == "ascii.ply"
    own = [m for m in BY_FORMAT[fmt] if text_ply or m is not M.text_tokens or fmt != "ply"]
    return GENERIC + own + list(M.PATH_KINDS)


def schedule(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(target, victim, mutation name) of cases 0..n-1: targets in turn, each cycling through its (victim,
    mutation) pairs in a seeded order, so even a small n reaches every kind of mutation."""
    rng = random.Random(seed)
    pairs = {}
    for name, (_, victims, *_rest) in TARGETS.items():
        p = [(v, m if isinstance(m, str) else m.__name__) for v in victims for m in mutations(v)]
        rng.shuffle(p)
        pairs[name] = p
    names = list(TARGETS)
    return [(names[i % len(names)], *pairs[names[i % len(names)]][(i // len(names)) % len(
        pairs[names[i % len(names)]])]) for i in range(n)]


def build_case(seeds: Path, case: Path, target: str, victim: str, mutation: str, rng: random.Random):
    """Make the case's folder; returns (the victim's path, what the reader is given)."""
    _, _, beside, rename, given = TARGETS[target]
    case.mkdir(parents=True)
    outside = case.parent / (case.name + "-outside")
    outside.mkdir()
    if given == "run":
        for f in RUN_FILES:
            (case / f).parent.mkdir(parents=True, exist_ok=True)
            if f != victim:
                os.link(seeds / f, case / f)
        path = case / victim
    else:
        for src, name in beside.items():
            os.link(seeds / src, case / name)
        path = case / ((rename + Path(victim).suffix) if rename else Path(victim).name)
    data = (seeds / victim).read_bytes()
    if mutation in M.PATH_KINDS:
        M.place(mutation, rng, path, data, outside)
    else:
        fn = next(m for m in mutations(victim) if not isinstance(m, str) and m.__name__ == mutation)
        fmt = FORMATS[Path(victim).suffix]
        path.write_bytes(fn(rng, data, fmt, seeds) if getattr(fn, "needs_seeds", False) else fn(rng, data, fmt))
    if given == "dir":
        arg = case
    elif given == "run":
        arg = case / "run"
    elif target == "reconstruct input":
        arg = (path, 1 if "gray" in victim or victim.endswith(".npy") else 3)
    else:
        arg = path
    return path, arg


# ---- one worker ----------------------------------------------------------------------------------------------------

def classify(victim: Path, arg, result=None, error: BaseException | None = None,
             decoder: bool = False) -> tuple[str, str]:
    """(outcome, message) of one read (see the module docstring)."""
    import torch

    if error is None:
        values = result if isinstance(result, list) else [result]
        for v in values:
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                if not torch.isfinite(v).all():
                    return "bad-output", "returned NaN or inf"
                if result is not values and v.abs().max() > 1 + 1e-6:  # data, not weights: [-1, 1]
                    return "bad-output", f"returned values up to {float(v.abs().max()):.3g}"
        return "ok", ""
    msg = str(error).strip()
    line = f"{type(error).__name__}: {msg}"
    if isinstance(error, MemoryError):
        return "memory", line
    where = str(arg[0] if isinstance(arg, tuple) else arg)
    if not isinstance(error, (ValueError, FileNotFoundError, FileExistsError)) or isinstance(error, RecursionError):
        return "traceback", line
    if "\n" in msg:
        return "traceback", "several lines: " + line
    if decoder and any(f"({t}: " in msg for t in BUG_TYPES):  # a decoder's KeyError is a bug; run.json's is data
        return "traceback", "a bug wrapped in a clean error: " + line  # e.g. "cannot read x.png (KeyError: 'MPO')"
    if victim.name not in msg and where not in msg:
        return "traceback", "does not name the file: " + line
    return "clean", line


def worker(conn, seeds: str, work: str) -> None:
    import resource
    import warnings

    import torch

    torch.set_num_threads(1)
    import diffusekit.data.captions, diffusekit.inverse.task, diffusekit.model  # noqa: E401,F401

    _model(Path(seeds) / "run")  # the first load of a run pays one-off costs (~4 s) that are not the file's
    size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + MEMORY_CAP, resource.RLIM_INFINITY))
    warnings.simplefilter("ignore")
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        i, seed, target, victim, mutation = job
        case = Path(work) / f"case-{i}"
        path, arg = build_case(Path(seeds), case, target, victim, mutation, random.Random(f"{seed}:{i}"))
        t0 = time.perf_counter()
        decoder = target.startswith("reconstruct")  # they wrap any of Pillow's errors, bugs included
        try:
            outcome, msg = classify(path, arg, result=TARGETS[target][0](arg))
        except BaseException as e:  # noqa: B036: every outcome is recorded, KeyboardInterrupt aside
            if isinstance(e, KeyboardInterrupt):
                raise
            outcome, msg = classify(path, arg, error=e, decoder=decoder)
        seconds = time.perf_counter() - t0
        if seconds > TIMEOUT_S:
            outcome = "hang"
        shutil.rmtree(case, ignore_errors=True)
        shutil.rmtree(f"{case}-outside", ignore_errors=True)
        conn.send((i, outcome, msg[:400], seconds))


# ---- the pool ------------------------------------------------------------------------------------------------------

class Pool:
    """Workers that each take one case at a time; one that overstays TIMEOUT_S is killed and replaced."""

    def __init__(self, n: int, seeds: Path, work: Path):
        self.ctx, self.seeds, self.work = mp.get_context("spawn"), str(seeds), str(work)
        self.slots = [self._start() for _ in range(n)]

    def _start(self):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=worker, args=(child, self.seeds, self.work), daemon=True)
        p.start()
        if parent.recv() != "ready":
            raise RuntimeError("a fuzz worker did not start")
        return {"proc": p, "conn": parent, "job": None, "t0": 0.0}

    def run(self, jobs: list) -> list[dict]:
        todo, out = list(reversed(jobs)), []
        while todo or any(s["job"] for s in self.slots):
            for s in self.slots:
                if s["job"] is None and todo:
                    s["job"], s["t0"] = todo.pop(), time.monotonic()
                    s["conn"].send(s["job"])
            busy = [s for s in self.slots if s["job"]]
            deadline = min(s["t0"] for s in busy) + TIMEOUT_S + 2  # +2 s: building the case, the pipe
            for conn in wait([s["conn"] for s in busy] + [s["proc"].sentinel for s in busy],
                             timeout=max(deadline - time.monotonic(), 0.01)):
                s = next(s for s in busy if conn in (s["conn"], s["proc"].sentinel))
                if s["job"] is None:
                    continue
                if conn is s["conn"]:
                    i, outcome, msg, seconds = s["conn"].recv()
                    out.append(self._record(s["job"], outcome, msg, seconds))
                    s["job"] = None
                elif not s["conn"].poll():  # died without answering
                    code = s["proc"].exitcode
                    out.append(self._record(s["job"], "crash", f"worker died (exit {code})", 0.0))
                    self._replace(s)
            for s in busy:
                if s["job"] and time.monotonic() - s["t0"] > TIMEOUT_S + 2:
                    out.append(self._record(s["job"], "hang", f"no answer in {TIMEOUT_S:g} s", TIMEOUT_S))
                    self._replace(s)
        return sorted(out, key=lambda r: r["case"])

    def _record(self, job, outcome, msg, seconds) -> dict:
        i, _, target, victim, mutation = job
        return {"case": i, "reader": target, "file": victim, "mutation": mutation, "outcome": outcome,
                "seconds": round(seconds, 4), "message": msg}

    def _replace(self, s) -> None:
        s["proc"].kill()
        s["proc"].join()
        i = s["job"][0]
        for p in (Path(self.work) / f"case-{i}", Path(self.work) / f"case-{i}-outside"):
            shutil.rmtree(p, ignore_errors=True)
        s.update(self._start())

    def close(self) -> None:
        for s in self.slots:
            s["conn"].send(None)
            s["proc"].join(timeout=5)


def fuzz(n: int, seed: int = 0, workers: int = 2) -> dict:
    """Run n cases; returns the report (what --out writes)."""
    from fuzz_seeds import make_seeds

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dk-fuzz-") as tmp:
        seeds = make_seeds(Path(tmp) / "seeds")
        t_seeds = time.perf_counter() - t0
        work = Path(tmp) / "work"
        work.mkdir()
        pool = Pool(workers, seeds, work)
        jobs = [(i, seed, *case) for i, case in enumerate(schedule(n, seed))]
        rows = pool.run(jobs)
        pool.close()
    return report(rows, n, seed, workers, time.perf_counter() - t0, t_seeds)


def report(rows: list[dict], n: int, seed: int, workers: int, seconds: float, t_seeds: float) -> dict:
    readers = {}
    for name in TARGETS:
        mine = [r for r in rows if r["reader"] == name]
        slow = max(mine, key=lambda r: r["seconds"], default=None)
        readers[name] = {"files": len(mine), **{o: sum(r["outcome"] == o for r in mine) for o in OUTCOMES},
                         "slowest_s": slow and slow["seconds"],
                         "slowest": slow and f"{slow['file']} / {slow['mutation']}",
                         "mutations": dict(Counter(r["mutation"] for r in mine))}
    slowest = max(rows, key=lambda r: r["seconds"])
    return {"meta": meta(), "seed": seed, "cases": n, "workers": workers, "seconds": round(seconds, 1),
            "seconds_making_seeds": round(t_seeds, 1), "timeout_s": TIMEOUT_S, "memory_cap_bytes": MEMORY_CAP,
            "totals": dict(Counter(r["outcome"] for r in rows)), "slowest": slowest, "readers": readers,
            "failures": [r for r in rows if r["outcome"] not in ("ok", "clean")],
            # one letter a case (o ok, c clean, t traceback, b bad-output, h hang, m memory, x crash), in case order:
            # two runs of one seed compare letter by letter
            "outcome_codes": "".join("octbhmx"[OUTCOMES.index(r["outcome"])] for r in rows)}


def meta() -> dict:
    """The machine and commit (benchmarks/machine.py), with the versions of the libraries the readers use."""
    import numpy
    import PIL
    return {**machine.record(), "pillow": PIL.__version__, "numpy": numpy.__version__}


def table(rep: dict) -> str:
    head = ("| reader | files | ok | clean errors | tracebacks | bad output | hangs | memory blow-ups | crashes | "
            "slowest |")
    lines = [head, "|" + "---|" * 10]
    for name, r in rep["readers"].items():
        lines.append(f"| {name} | {r['files']} | {r['ok']} | {r['clean']} | {r['traceback']} | {r['bad-output']} | "
                     f"{r['hang']} | {r['memory']} | {r['crash']} | {r['slowest_s'] or 0:.2f} s |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="10,400 cases (800 per reader) instead of 300")
    ap.add_argument("--cases", type=int, help="number of cases (overrides --full)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", help="write the report as JSON here")
    a = ap.parse_args()
    n = a.cases or (800 * len(TARGETS) if a.full else 300)
    rep = fuzz(n, a.seed, a.workers)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(rep, indent=1) + "\n")
    print(table(rep))
    for r in rep["failures"][:40]:
        print(f"case {r['case']} {r['reader']} {r['file']} {r['mutation']}: {r['outcome']}: {r['message'][:200]}")
    print(f"{n} cases in {rep['seconds']} s: {rep['totals']}")
    return 1 if rep["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
