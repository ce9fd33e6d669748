"""COV-R / MAT-R of every checkpoint of a molecule run on the held-out molecules, beside ETKDG (computed once).

    PYTHONPATH=/work/wt-mol2 OMP_NUM_THREADS=1 python benchmarks/results/13-molecules/trend.py RUN [--n N]
        [--sampler dpmpp-2m --steps 20] [--only step-0001234]

Writes step-NNNNNNN[-SAMPLER-STEPS].json per checkpoint (skipped when it exists), etkdg.json once, and trend.json
(the table), each with the CPU model, threads and commit beside this file."""

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from diffusekit.data.molecules import MoleculeRecipe, load_molecules
from diffusekit.eval.conformers import etkdg_scores, evaluate_model
from diffusekit.model import TrainedModel
from diffusekit.rundir import list_checkpoints, read_run_info

HERE = Path(__file__).parent


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if ln.startswith("Model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "diffusekit"], capture_output=True, text=True,
                                cwd=HERE).stdout.strip())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_avg": os.getloadavg(), "commit": commit + ("+dirty" if dirty else ""), "torch": torch.__version__}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("run", type=Path)
    p.add_argument("--n", type=int)
    p.add_argument("--sampler", default="dpmpp-2m")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--only", help="comma-separated checkpoint names")
    p.add_argument("--every-minutes", type=float, help="only the first checkpoint past each multiple of this many "
                                                       "training minutes, and the last")
    p.add_argument("--with-last", action="store_true", help="with --every-minutes: the newest checkpoint too")
    a = p.parse_args()
    info = read_run_info(a.run)
    test = load_molecules("test", MoleculeRecipe(**info["data"]["recipe"])).first(a.n)
    tag = "" if (a.sampler, a.steps) == ("dpmpp-2m", 20) else f"-{a.sampler}-{a.steps}"
    base_path = HERE / f"etkdg{'' if a.n is None else f'-n{a.n}'}.json"
    if not base_path.exists():
        t = time.perf_counter()
        base = etkdg_scores(test, seed=0, progress=False)
        base_path.write_text(json.dumps({**base.summary(), "seed": 0, "line": base.format("ETKDG"),
                                         "seconds": round(time.perf_counter() - t, 1), "machine": machine()},
                                        indent=1))
    base = json.loads(base_path.read_text())
    rows, ckpts = [], list_checkpoints(a.run / "checkpoints")
    picked = set(a.only.split(",")) if a.only else {c.name for c in ckpts}
    if a.every_minutes:
        minutes = [json.loads((c / "state.json").read_text())["elapsed_s"] / 60 for c in ckpts]
        marks = [next(c.name for c, m in zip(ckpts, minutes) if m >= k * a.every_minutes - 0.05)
                 for k in range(1, int(minutes[-1] // a.every_minutes) + 1)]
        picked &= set(marks) | ({ckpts[-1].name} if a.with_last else set())
    for ckpt in ckpts:
        out = HERE / f"{ckpt.name}{tag}{'' if a.n is None else f'-n{a.n}'}.json"
        if not out.exists() and ckpt.name in picked:
            model = TrainedModel.load(a.run, checkpoint=ckpt)
            state = json.loads((ckpt / "state.json").read_text())
            t = time.perf_counter()
            res = evaluate_model(model, test, baseline=False, progress=False, sampler=a.sampler, steps=a.steps,
                                 seed=0)
            res.update(run=str(a.run), checkpoint=ckpt.name, training_minutes=round(state["elapsed_s"] / 60, 2),
                       images_seen=state["images_seen"], seconds=round(time.perf_counter() - t, 1),
                       etkdg=base, machine=machine())
            out.write_text(json.dumps(res, indent=1))
            print(res["lines"][0], f"({ckpt.name}, {res['training_minutes']} min)", flush=True)
        if out.exists():
            r = json.loads(out.read_text())
            rows.append({"checkpoint": r["checkpoint"], "step": r["step"], "minutes": r["training_minutes"],
                         "cov_mean": r["model"]["cov_mean"], "cov_median": r["model"]["cov_median"],
                         "mat_mean": r["model"]["mat_mean"], "mat_median": r["model"]["mat_median"],
                         "sampler": a.sampler, "steps": a.steps})
    (HERE / f"trend{tag}{'' if a.n is None else f'-n{a.n}'}.json").write_text(json.dumps(
        {"run": str(a.run), "molecules": len(test.smiles), "etkdg": base, "checkpoints": rows}, indent=1))
    print(base["line"])


if __name__ == "__main__":
    main()
