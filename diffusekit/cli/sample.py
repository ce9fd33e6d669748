"""`diffusekit sample`, `show` and `info`: use a trained run (`diffusekit.model`, `viz.show`, `rundir`); sample and
show also take a diffusers model folder (`--diffusers PATH`: `TrainedModel.from_diffusers`)."""

from __future__ import annotations

import json
from pathlib import Path


def add_sample(sub):
    from ..samplers import SAMPLERS
    from ..schedules import SPACINGS

    p = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Draw samples with the EMA weights of the run's newest checkpoint, or from a "
                                   "diffusers UNet2DModel saved to disk (--diffusers PATH). The .npz "
                                   "holds `images` as uint8 (N, H, W, C) (point clouds: `points`, float32 (N, P, 3)), "
                                   "`labels` where there are labels, and "
                                   "`prompts` (one string per image) for text runs. Text runs: --prompt (repeat it "
                                   "for several; the prompts are taken in turn over --num samples; default: the "
                                   "prompts of the run's training grids), --negative-prompt to steer away from "
                                   "(replaces the empty prompt in guidance's unconditional pass, as in Stable "
                                   "Diffusion) and --guidance (e.g. 3.0). A --grid gets its prompts in a .txt beside "
                                   "it. Molecule runs: --smiles (repeat it for several; default: the run's example "
                                   "molecules) and --num conformers OF EACH; the .npz holds `coords` float32 (N, A, 3) "
                                   "in Å, `atoms` (N, A) (0 padding, i: `atom_types`[i - 1]), `bonds` and `smiles`; "
                                   "--sdf and --xyz write them for chemistry tools.")
    add_model_source(p)
    p.add_argument("--num", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument("--sampler", default="dpmpp-2m", choices=list(SAMPLERS), help="(default: dpmpp-2m)")
    p.add_argument("--steps", type=int, default=20, help="sampler steps (default: 20); restart adds 2 restarts of 5 "
                                                        "Heun steps to them (10 steps: 39 network calls)")
    p.add_argument("--spacing", choices=SPACINGS,
                   help="noise-level spacing (default: leading for ddpm/ddim on a discrete schedule, karras otherwise; "
                        "logsnr: uniform in logSNR)")
    p.add_argument("--sigma-min", type=float, help="karras / logsnr spacing: the lowest noise level before the last "
                                                   "step to 0 (default: the schedule's; at 10 steps 0.05 helped on "
                                                   "digits; on mnist5k heun gained 3-5%% and the logsnr spacing hurt "
                                                   "DPM-Solver++: BENCHMARKS.md section 5)")
    p.add_argument("--sigma-max", type=float, help="karras / logsnr spacing: the starting noise level (default: "
                                                   "the schedule's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output .npz")
    p.add_argument("--grid", type=Path, help="also write a PNG grid of the samples (point clouds: renders in a "
                                             ".png, or the grid turning a full circle in a .gif)")
    p.add_argument("--batch", type=int, default=64, help="samples per network batch (default: 64)")
    p.add_argument("--label", type=int, action="append", help="class label(s) for class-conditional runs")
    p.add_argument("--prompt", action="append", help="text runs: a prompt; repeat for several, taken in turn")
    p.add_argument("--negative-prompt", action="append",
                   help="text runs: what guidance steers away from; one for all, or one per --prompt")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (default: 1; 1 is "
                                                               "the plain conditional model, >1 follows the label "
                                                               "or prompt more closely)")
    p.add_argument("--eta", type=float, help="noise scale for ddim / euler-ancestral / dpmpp-2m-sde")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", default=[],
                   help="any of the sampler's own options, repeat for several, e.g. --sampler heun --option "
                        "s_churn=0.5 --option s_noise=1.003; restart: restarts=3, restart_steps=5; ddpm: "
                        "variance=fixed_large (`diffusekit sample --sampler NAME --option help=1` lists them)")
    p.add_argument("--weights", choices=["ema", "model"], default="ema")
    p.add_argument("--wav", type=Path, help="signals only: also write each sample as DIR/sample-NNNN.wav (16-bit, "
                                            "at the data's sample rate, else 16 kHz) and, when the data has a "
                                            "rate, DIR/sample-NNNN.png (its waveform above its spectrogram)")
    p.add_argument("--ply", type=Path, help="point clouds only: also write each sample as DIR/sample-NNNN.ply "
                                            "(binary float32 x, y, z: MeshLab, Blender and Open3D read it)")
    p.add_argument("--smiles", action="append", help="molecule runs: a molecule to make conformers of; repeat for "
                                                     "several (--num conformers of each)")
    p.add_argument("--sdf", type=Path, help="molecule runs: also write every conformer to this SD file (titles: "
                                            "the SMILES)")
    p.add_argument("--xyz", type=Path, help="molecule runs: also write each conformer as DIR/sample-NNNN.xyz")


def add_model_source(p) -> None:
    """The model a command uses: a run directory, or --diffusers PATH (exactly one)."""
    p.add_argument("run_dir", type=Path, nargs="?", help="a run directory, a packed model or a zoo model name "
                                                         "(`diffusekit models`); or give --diffusers PATH")
    p.add_argument("--diffusers", type=Path, metavar="PATH",
                   help="instead of a run: a diffusers UNet2DModel folder written by save_pretrained (config.json + "
                        "safetensors), or a pipeline folder with unet/ and scheduler/ (needs `pip install diffusers`)")
    p.add_argument("--schedule", choices=["linear", "scaled_linear", "cosine", "sigmoid"],
                   help="--diffusers only: the noise schedule (default: the scheduler's; a bare UNet: DDPM's linear)")
    p.add_argument("--prediction", choices=["eps", "v", "x0"],
                   help="--diffusers only: what the network predicts (default: the scheduler's; a bare UNet: eps)")


def load_model(a, **load_options):
    """The model of `add_model_source`'s arguments."""
    from ..model import TrainedModel

    if (a.run_dir is None) == (a.diffusers is None):
        raise ValueError("give a run directory or --diffusers PATH (exactly one of them)")
    if a.diffusers is not None:
        return TrainedModel.from_diffusers(a.diffusers, schedule=a.schedule, prediction=a.prediction)
    if a.schedule or a.prediction:
        raise ValueError("--schedule and --prediction are for --diffusers models; a run records its own")
    return TrainedModel.load(a.run_dir, **load_options)


def cmd_sample(a) -> int:
    from dataclasses import asdict

    from tqdm.auto import tqdm

    from ..sample_files import write_samples
    from ..samplers import SamplerConfig

    if a.out.suffix != ".npz":
        raise ValueError(f"--out must be a .npz file, got {a.out}")
    options = sampler_option_flags(a.sampler, a.option)
    if a.eta is not None:
        options["eta"] = a.eta
    config = SamplerConfig(a.sampler, a.steps, a.spacing, options, a.sigma_min, a.sigma_max)  # checks the options
    model = load_model(a, weights=a.weights)
    smiles = a.smiles
    if model.kind == "molecules":  # --num conformers of each molecule, molecule by molecule
        smiles = [s for s in (a.smiles or model.info["data"]["examples"]) for _ in range(a.num)]
        model.graphs_for(len(smiles), smiles)  # a bad SMILES fails here, before sampling or writing
    num = len(smiles) if smiles else a.num
    options = {**options, **{k: v for k, v in (("sigma_min", a.sigma_min), ("sigma_max", a.sigma_max))
                             if v is not None}}
    with tqdm(total=num, unit="img", desc=f"{a.sampler} x{a.steps}") as bar:
        images = model.sample(num, sampler=a.sampler, steps=a.steps, seed=a.seed, batch=a.batch,
                              labels=a.label, guidance=a.guidance, progress=bar.update, prompts=a.prompt,
                              negative_prompt=a.negative_prompt, smiles=smiles,
                              **({"spacing": a.spacing} if a.spacing else {}), **options)
    for path in write_samples(model, images, a.out, grid=a.grid, wav=a.wav, ply=a.ply, labels=a.label, prompts=a.prompt,
                              negative_prompt=a.negative_prompt, guidance=a.guidance, smiles=smiles, sdf=a.sdf,
                              xyz=a.xyz):
        print(path)
    source = {"diffusers": str(a.diffusers)} if a.diffusers else {"run_dir": str(a.run_dir)}
    record = {**source, "step": model.step, "weights": None if a.diffusers else a.weights, "sampling": asdict(config),
              "num": num, "smiles": a.smiles, "seed": a.seed, "batch": a.batch, "labels": a.label, "prompts": a.prompt,
              "negative_prompts": a.negative_prompt, "guidance": a.guidance}
    a.out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    print(a.out.with_suffix(".json"))
    return 0


def sampler_option_flags(sampler: str, given: list[str]) -> dict:
    """--option KEY=VALUE flags -> the sampler's options (numbers where they parse as numbers); an unknown key, or
    `help`, answers with the sampler's options and their defaults."""
    from ..samplers import sampler_options

    known = sampler_options(sampler)
    listing = ", ".join(f"{k} (default {v})" for k, v in known.items()) or "none"
    options = {}
    for item in given:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in known:
            what = "takes" if key == "help" else f"has no option {key!r}; it takes"
            raise ValueError(f"--option {item}: sampler {sampler} {what}: {listing}")
        try:
            options[key] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            options[key] = value.strip()
    return options


def add_show(sub):
    p = sub.add_parser("show", help="draw the forward and reverse process of a trained run",
                       description="Write forward.png (a real image at rising noise levels), reverse.png (noise to "
                                   "sample, with the predicted clean image at each step) and reverse.gif. Molecule "
                                   "runs: forward.png (conformers of the data at rising noise), reverse.png (x0_hat "
                                   "of each step for a few of the run's example molecules) and samples.png. A "
                                   "--diffusers model has no data: reverse.png and reverse.gif only.")
    add_model_source(p)
    p.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/show; needed with --diffusers)")
    p.add_argument("--sampler", default="dpmpp-2m")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=8, help="samples in the GIF (default: 8)")


def cmd_show(a) -> int:
    from ..viz.show import show

    from ..zoo import default_output

    if a.diffusers is not None and a.out is None:
        raise ValueError("give --out DIR for a --diffusers model (its folder is not written into)")
    model = load_model(a)
    paths = show(model, a.out or default_output(a.run_dir, "show"), sampler=a.sampler, steps=a.steps, seed=a.seed,
                 num=a.num)
    for p in paths.values():
        print(p)
    return 0


def add_info(sub):
    p = sub.add_parser("info", help="what a run is: config, size, steps trained, data, last loss",
                       description="Describe a run directory (a diffusion run or an autoencoder run): the network and "
                                   "its size, the data, how long it trained, the last loss, its checkpoints, the "
                                   "autoencoder of a latent run, and every setting, grouped (data, model, diffusion, "
                                   "training, output).")
    p.add_argument("run_dir", type=Path, help="a run directory written by `diffusekit train` or `train-autoencoder`, a packed model, or a zoo model name")
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_info(a) -> int:
    from ..rundir import format_summary, run_summary

    from ..zoo import locate

    summary = run_summary(locate(a.run_dir))
    print(json.dumps(summary, indent=2) if a.json else format_summary(summary))
    return 0
