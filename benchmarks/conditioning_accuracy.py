"""Conditioning benchmarks: does the model make what was asked for, and what does guidance cost in quality/diversity?

label mode (class-conditional run, e.g. mnist5k --cond label, beside an unconditional run on the same data):
    for each guidance scale, n samples (labels cycling 0..9, 20-step DPM-Solver++(2M)); the data's shipped
    classifier (diffusekit.eval, trained on the other 80% split) reads each sample, and we report how often it
    agrees with the asked label, per class too; and the Frechet distance (classifier features, n samples vs n real,
    with the real-vs-real floor at the same n) beside the unconditional run's FD at the same n and seed.
    The issue's bar: agreement >= 97% at some scale with FD within 20% of the unconditional model's.

    python benchmarks/conditioning_accuracy.py label --run runs/bench/mnist5k-label --uncond runs/ttq/ours [--n 2000]

text mode (a text run on `shapes`):
    prompts are captions of fresh `make_shapes` images, drawn with seeds other than the training data's (0):
      heldout  split="heldout": every prompt names at least one colour-kind combination never seen in training
      train    split="train": in-distribution combinations (new draws; many captions also occur in training)
    for each guidance scale, `--per-prompt` samples per prompt; `score_attributes` reads colour, kind, size and
    position back from the pixels: per-attribute accuracy and the whole-prompt match rate (everything read back
    exactly, object count included). Diversity: the mean pairwise RMS pixel distance between samples of the same
    prompt (in [-1, 1] units; 0 = identical samples). The same read-back on the real images of those prompts is the
    ceiling of what the reader can confirm. The issue's bar: >= 90% of held-out prompts matched.

    python benchmarks/conditioning_accuracy.py text --run runs/bench/shapes-text [--prompts 200 --per-prompt 4]

Writes JSON (and PNGs: sample grids, and for text the accuracy-against-diversity plot over guidance scales) to
--out (default: benchmarks/results/6-class-conditional/ for label, benchmarks/results/7-text-to-image/ for text,
the folders of BENCHMARKS.md sections 6 and 7) and prints markdown tables.
"""

import argparse
import json
import math
import time
from pathlib import Path

import torch

import machine  # benchmarks/machine.py (python puts this script's folder first on sys.path)
from diffusekit.model import TrainedModel
from diffusekit.viz import save_grid

LABEL_SCALES = (1, 1.5, 2, 3, 4, 6)
TEXT_SCALES = (1, 2, 3, 5, 7.5)
HELDOUT_SEED, TRAIN_SEED = 1234, 4321  # prompt draws; the training data is make_shapes(seed=0)


def floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


# ---- label mode -------------------------------------------------------------------------------------------------


def run_label(args) -> dict:
    from diffusekit.eval import CLASSIFIERS, evaluate
    from diffusekit.eval.classifier import classifier_outputs, load_classifier

    model = TrainedModel.load(args.run, device=args.device)
    if model.num_classes is None:
        raise SystemExit(f"{args.run} is not a class-conditional run (train it with --cond label)")
    data = model.info["train"]["data"]
    if data not in CLASSIFIERS:
        raise SystemExit(f"label mode needs a data set with a shipped classifier ({', '.join(CLASSIFIERS)}); "
                         f"{args.run} was trained on {data!r}")
    uncond = TrainedModel.load(args.uncond, device=args.device)
    if uncond.num_classes is not None or uncond.text is not None or uncond.info["train"]["data"] != data:
        raise SystemExit(f"--uncond must be an unconditional run on {data!r}; {args.uncond} is "
                         f"cond={uncond.info['train'].get('cond')!r} on {uncond.info['train']['data']!r}")
    clf = load_classifier(data)
    kw = dict(sampler="dpmpp-2m", steps=args.steps, batch=args.batch)

    t0 = time.perf_counter()
    x_u = uncond.sample(args.n, seed=args.seed, **kw)
    fd_u = evaluate(x_u, data, metrics=("fd",), n=args.n, seed=args.seed, progress=False)["fd"]
    print(f"unconditional {args.uncond}: FD {fd_u['value']:.3f} (floor {fd_u['floor']:.3f}, n={args.n}, "
          f"{time.perf_counter() - t0:.0f} s)")
    labels = torch.arange(args.n) % model.num_classes
    rows, grid = [], []
    for w in args.scales:
        t0 = time.perf_counter()
        x = model.sample(args.n, labels=labels, guidance=w, seed=args.seed, **kw)
        _, logits = classifier_outputs(clf, x)
        hit = logits.argmax(1) == labels  # (n,)
        per_class = [hit[labels == c].double().mean().item() for c in range(model.num_classes)]
        fd = evaluate(x, data, metrics=("fd",), n=args.n, seed=args.seed, progress=False)["fd"]
        rows.append({"guidance": w, "agreement": hit.double().mean().item(), "agreement_per_class": per_class,
                     "fd": fd["value"], "fd_floor": fd["floor"], "fd_ratio_to_uncond": fd["value"] / fd_u["value"],
                     "seconds": time.perf_counter() - t0})
        grid.append(x[:model.num_classes])
        print(f"  guidance {w:g}: agreement {rows[-1]['agreement']:.2%}, FD {fd['value']:.3f} "
              f"({rows[-1]['fd_ratio_to_uncond']:.2f}x unconditional), {rows[-1]['seconds']:.0f} s")
    ok = [r for r in rows if r["agreement"] >= 0.97 and r["fd_ratio_to_uncond"] <= 1.2]
    result = {"mode": "label", "run": str(args.run), "uncond_run": str(args.uncond), "data": data, "n": args.n,
              "sampler": "dpmpp-2m", "steps": args.steps, "seed": args.seed,
              "classifier": {"name": clf.name, "test_accuracy": clf.record.get("test_accuracy")},
              "uncond": {"fd": fd_u["value"], "fd_floor": fd_u["floor"]}, "scales": rows,
              "meets_bar": bool(ok), "best_meeting_bar": max(ok, key=lambda r: r["agreement"])["guidance"] if ok
              else None, "steps_trained": model.step, "torch": torch.__version__}
    print(f"\n| guidance | label agreement (n={args.n}) | FD | FD / unconditional FD |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['guidance']:g} | {r['agreement']:.2%} | {r['fd']:.3f} | {r['fd_ratio_to_uncond']:.2f} |")
    print(f"\nunconditional FD {fd_u['value']:.3f}, real-vs-real floor {fd_u['floor']:.3f}; classifier "
          f"{clf.name} (test accuracy {clf.record.get('test_accuracy')}); bar (>= 97% and FD <= 1.2x) met: "
          f"{result['meets_bar']}")
    save_grid(torch.cat(grid), args.out / f"conditioning-label-{data}-grid.png", nrow=model.num_classes)
    return result


# ---- text mode --------------------------------------------------------------------------------------------------


def pairwise_rms(x: torch.Tensor) -> float:
    """Mean RMS pixel distance over the pairs of k samples (k, C, H, W)."""
    flat = x.flatten(1).double()  # (k, D)
    d = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])  # (k, k)
    k = len(flat)
    return (d.sum() / (k * (k - 1))).item()


def score_set(model, prompts, attributes, args, w) -> dict:
    from diffusekit.data.shapes import score_attributes

    k = args.per_prompt
    per_sample = [p for p in prompts for _ in range(k)]  # prompt i's samples are rows i*k .. i*k + k-1
    x = model.sample(len(per_sample), prompts=per_sample, guidance=w, seed=args.seed, sampler="dpmpp-2m",
                     steps=args.steps, batch=args.batch)
    targets = [a for a in attributes for _ in range(k)]
    scores = score_attributes(x, targets)
    # one- and two-object prompts apart: a two-object prompt has twice the attributes to get right, and binding
    # (which colour goes with which kind and place) to get right as well
    by_objects = {}
    for m in sorted({len(a) for a in targets}):
        rows = [i for i, a in enumerate(targets) if len(a) == m]
        by_objects[str(m)] = {"prompts": len(rows) // k, **score_attributes(x[rows], [targets[i] for i in rows])}
    groups = x.reshape(len(prompts), k, *x.shape[1:])
    diversity = sum(pairwise_rms(g) for g in groups) / len(groups) if k > 1 else None
    return {**scores, "by_objects": by_objects, "diversity": diversity}, groups[:, 0]


def run_text(args) -> dict:
    from diffusekit.data.shapes import make_shapes, score_attributes

    model = TrainedModel.load(args.run, device=args.device)
    if model.text is None:
        raise SystemExit(f"{args.run} is not a text run (train it with --data shapes --cond text)")
    if model.info["data"]["name"] != "shapes":
        raise SystemExit(f"text mode reads attributes back from `shapes` images; {args.run} was trained on "
                         f"{model.info['data']['name']!r}")
    sets = {"heldout": make_shapes(args.prompts, seed=HELDOUT_SEED, split="heldout"),
            "train": make_shapes(args.prompts, seed=TRAIN_SEED, split="train")}
    result = {"mode": "text", "run": str(args.run), "prompts": args.prompts, "per_prompt": args.per_prompt,
              "sampler": "dpmpp-2m", "steps": args.steps, "seed": args.seed, "steps_trained": model.step,
              "prompt_seeds": {"heldout": HELDOUT_SEED, "train": TRAIN_SEED}, "torch": torch.__version__,
              "real_readback": {n: score_attributes(ds.x, ds.attributes) for n, ds in sets.items()}, "scales": []}
    grids = []
    for w in args.scales:
        t0 = time.perf_counter()
        row = {"guidance": w}
        for name, ds in sets.items():
            row[name], firsts = score_set(model, ds.captions, ds.attributes, args, w)
            if name == "heldout":
                grids.append(firsts[:8])
        row["seconds"] = time.perf_counter() - t0
        result["scales"].append(row)
        h, t = row["heldout"], row["train"]
        div = "n/a" if h["diversity"] is None else f"{h['diversity']:.3f}"
        apart = ", ".join(f"{m} object(s) {v['image']:.1%} of {v['prompts']}" for m, v in h["by_objects"].items())
        print(f"  guidance {w:g}: held-out match {h['image']:.1%} (colour {h['colour']:.1%}, kind {h['kind']:.1%}; "
              f"{apart}), train match {t['image']:.1%}, diversity {div}, {row['seconds']:.0f} s", flush=True)
    n = args.prompts * args.per_prompt
    print(f"\n| guidance | held-out: prompt match | colour | kind | size | position | one object | two objects | "
          f"train: prompt match | diversity (held-out) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in result["scales"]:
        h, t = r["heldout"], r["train"]
        div = "n/a" if h["diversity"] is None else f"{h['diversity']:.3f}"
        one, two = (h["by_objects"].get(m, {}).get("image", float("nan")) for m in ("1", "2"))
        print(f"| {r['guidance']:g} | {h['image']:.1%} | {h['colour']:.1%} | {h['kind']:.1%} | {h['size']:.1%} | "
              f"{h['position']:.1%} | {one:.1%} | {two:.1%} | {t['image']:.1%} | {div} |")
    real = result["real_readback"]
    print(f"\n{args.prompts} prompts x {args.per_prompt} samples = {n} images per set and scale; read-back on the real "
          f"images of the same prompts: held-out {real['heldout']['image']:.1%}, train {real['train']['image']:.1%}")
    best = max(r["heldout"]["image"] for r in result["scales"])
    result["meets_bar"] = best >= 0.9
    print(f"best held-out prompt match {best:.1%}; bar (>= 90%) met: {result['meets_bar']}")
    save_grid(torch.cat(grids), args.out / "conditioning-text-grid.png", nrow=8)
    (args.out / "conditioning-text-grid.txt").write_text(
        "# rows: guidance " + ", ".join(f"{w:g}" for w in args.scales) + "; columns: these held-out prompts\n"
        + "\n".join(sets["heldout"].captions[:8]) + "\n")
    if args.per_prompt > 1:
        _plot_text(result, args.out / "conditioning-text.png")
    return result


def _plot_text(result: dict, path: Path) -> None:
    """Whole-prompt match rate (y) against diversity (x), one point per guidance scale, a line per prompt set;
    drawn with Pillow (no matplotlib here), as benchmarks/time_to_quality.py does."""
    from PIL import Image, ImageDraw

    W, H, m = 640, 420, 56
    series = {"held-out combinations": ("heldout", (200, 30, 30)), "training combinations": ("train", (30, 30, 200))}
    pts = [(r[key]["diversity"], r[key]["image"], r["guidance"]) for r in result["scales"]
           for key, _ in series.values()]
    d_lo, d_hi = min(p[0] for p in pts), max(p[0] for p in pts)
    pad = max(d_hi - d_lo, 1e-3) * 0.1
    d_lo, d_hi = d_lo - pad, d_hi + pad
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    X = lambda v: m + (W - 2 * m) * (v - d_lo) / (d_hi - d_lo)  # noqa: E731
    Y = lambda a: H - m - (H - 2 * m) * a  # noqa: E731  accuracy 0..1
    d.rectangle([m, m, W - m, H - m], outline="black")
    for a in (0.0, 0.5, 0.9, 1.0):
        d.line([(m, Y(a)), (W - m, Y(a))], fill=(220, 220, 220) if a != 0.9 else (150, 150, 150))
        d.text((8, Y(a) - 6), f"{a:.0%}", fill="black")
    for i, (name, (key, col)) in enumerate(series.items()):
        xy = [(X(r[key]["diversity"]), Y(r[key]["image"])) for r in result["scales"]]
        d.line(xy, fill=col, width=2)
        for (px, py), r in zip(xy, result["scales"]):
            d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=col)
            d.text((px + 5, py - 12), f"w={r['guidance']:g}", fill=col)
        d.text((W - m - 170, H - m - 36 + 14 * i), name, fill=col)
    d.text((m, H - m + 8), f"diversity: mean pairwise RMS pixel distance per prompt ({d_lo:.3f} .. {d_hi:.3f})",
           fill="black")
    d.text((m, 10), f"whole-prompt match rate against diversity over guidance scales "
                    f"({result['prompts']} prompts x {result['per_prompt']})", fill="black")
    d.text((m, 26), "grey line: the 90% bar for held-out combinations", fill=(120, 120, 120))
    img.save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    lab = sub.add_parser("label", help="class-conditional run: classifier agreement and FD over guidance scales")
    lab.add_argument("--run", type=Path, required=True, help="class-conditional run directory (--cond label)")
    lab.add_argument("--uncond", type=Path, required=True, help="unconditional run on the same data")
    lab.add_argument("--n", type=int, default=2000, help="samples per scale (and for the unconditional FD)")
    lab.add_argument("--scales", type=floats, default=LABEL_SCALES, help="comma-separated guidance scales")
    txt = sub.add_parser("text", help="shapes text run: attribute read-back and diversity over guidance scales")
    txt.add_argument("--run", type=Path, required=True, help="text run directory (--data shapes --cond text)")
    txt.add_argument("--prompts", type=int, default=200, help="prompts per set (held-out, train)")
    txt.add_argument("--per-prompt", type=int, default=4, help="samples per prompt (>= 2 for diversity)")
    txt.add_argument("--scales", type=floats, default=TEXT_SCALES, help="comma-separated guidance scales")
    for p, section in ((lab, "6-class-conditional"), (txt, "7-text-to-image")):
        p.add_argument("--steps", type=int, default=20, help="DPM-Solver++(2M) steps")
        p.add_argument("--seed", type=int, default=0, help="sampling seed")
        p.add_argument("--batch", type=int, default=250, help="samples per network batch")
        p.add_argument("--out", type=Path, default=Path("benchmarks/results") / section,
                       help=f"where the JSON and pictures go (default: benchmarks/results/{section})")
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = run_label(args) if args.mode == "label" else run_text(args)
    suffix = result["data"] if args.mode == "label" else "shapes"
    path = args.out / f"conditioning-{args.mode}-{suffix}.json"
    result["machine"] = machine.record()
    path.write_text(json.dumps(result, indent=2))
    print(path)


if __name__ == "__main__":
    main()
