"""Physics benchmarks (issue 7): samples of trained grf, waves and moving-digits models judged against their data.

    python benchmarks/physics_of_samples.py --grf runs/grf --waves runs/waves --video runs/video
           [--n-grf 256 --n-waves 512 --n-video 128] [--sampler dpmpp-2m --steps 20 --seed 0]
           [--out benchmarks/results/9-signals-video-fields]

Any subset of the three runs may be given. For each: n samples from the run's EMA weights (the same sampler for
all), the data the run trained on (run.json), and two disjoint random sets A, B of n real examples
(numpy default_rng(seed)). Every distance is samples-vs-A beside its floor B-vs-A: the same distance between two
real sets of the same size, i.e. what sampling noise alone gives at this n (distances between finite sets are
biased upwards, so only a floor at equal n says what "indistinguishable" would read).

grf (fields (n, 1, S, S)):
    power spectrum  radially averaged (physics.power_spectrum) in unit bins and in octave bands (k = 1 | 2-3 | 4-7 |
                    8-16 for S = 32); per band the relative error P_samples / P_A - 1 with its sampling noise sigma,
                    the floor P_B / P_A - 1, and against the analytic spectrum of the data's definition
                    (data.fields.grf_power, exact per-band scatter from physics.gaussian_binned_spectrum).
                    TOLERANCE: a band passes when |rel_err| <= 10 % + 3 sigma (vs A; sigma under the hypothesis
                    tested, samples drawn like the data: from A's spread at both sets' sizes).
                    Sampler: use --sampler heun --steps 50 for grf. Strided DDPM (fixed-small variance) loses
                    fine-scale power even with the exact denoiser (tests/test_video_fields.py).
    one-point       histogram (40 bins on [-1, 1]) total variation, Wasserstein-1 and Kolmogorov-Smirnov of pixel
                    values, each with its floor; mean, std, skew, excess kurtosis of samples, A and the analytic
                    Gaussian (0, std, 0, 0). TOLERANCE: TV <= floor + 0.02.
waves (signals (n, 1, L) at the data's rate):
    per signal      dominant frequency (FFT peak; compared in octaves, log2 Hz), peak |x|, RMS and crest factor
                    peak / RMS (physics.signal_stats); W1 and KS of each distribution, with floors.
video (clips (n, 1, T, H, W)):
    temporal        mean |frame t+1 - frame t| per frame pair (physics.frame_differences); W1 and KS, floors.
    per frame       Frechet distance of all n*T frames in the mnist5k classifier's features (physics.
                    frame_features: 32x32 frames resized whole to the classifier's 28x28, bilinear + antialias,
                    nothing cropped), with its floor.
No pass/fail is declared for waves and video: the distances are read against their floors.

Writes OUT/physics.json (sections for runs not given this time are kept from an earlier file; each section names
its run, checkpoint step and settings) and OUT/physics-{grf,waves,video}.png (overlaid histograms and spectra,
drawn with Pillow like benchmarks/time_to_quality.py), plus OUT/physics-video-samples.png (sample clips).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import machine  # benchmarks/machine.py (python puts this script's folder first on sys.path)
from diffusekit.eval import physics
from diffusekit.data import load_data
from diffusekit.eval import frechet_distance_from_features
from diffusekit.model import TrainedModel, read_run_info

REL_TOL, Z_TOL, HIST_TOL = 0.10, 3.0, 0.02  # grf tolerances (module docstring)
DATA_COLOUR, SAMPLE_COLOUR, FLOOR_COLOUR, THEORY_COLOUR = (0, 0, 0), (200, 30, 30), (150, 150, 150), (30, 90, 200)


# ---- common ---------------------------------------------------------------------------------------------------


def draw_samples(run: Path, n: int, args) -> tuple[torch.Tensor, dict, object]:
    """n samples of the run's EMA model, the run's info, and the data it trained on (checked first: sampling is
    the slow part)."""
    info = read_run_info(run)
    ds = load_data(info["train"]["data"])
    if 2 * n > len(ds):
        raise SystemExit(f"{run}: n = {n} needs 2n = {2 * n} real examples for the reference A and the floor B; "
                         f"{info['train']['data']} has {len(ds)}. Pass a smaller --n-...")
    model = TrainedModel.load(run)
    t0 = time.time()
    x = model.sample(n, sampler=args.sampler, steps=args.steps, seed=args.seed, batch=args.batch)
    meta = {"run": str(run), "step": model.step, "params": info.get("params"), "data": info["train"]["data"],
            "n": n, "sampler": args.sampler, "steps": args.steps, "seed": args.seed,
            "sampling_seconds": round(time.time() - t0, 1)}
    return x, meta, ds


def real_sets(data: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint random sets of n real examples (A: the reference, B: for the floor)."""
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(data)))
    return data[perm[:n].sort().values], data[perm[n:2 * n].sort().values]


def jsonable(v):
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.integer, np.bool_)):
        return v.item()
    return v


# ---- grf ------------------------------------------------------------------------------------------------------


def bench_grf(run: Path, args) -> tuple[dict, dict]:
    s, meta, ds = draw_samples(run, args.n_grf, args)
    a, b = real_sets(ds.x, args.n_grf, args.seed)
    size = s.shape[-1]
    theory = None
    if ds.name == "grf" and {"alpha", "std", "size"} <= set(ds.params or {}):
        from diffusekit.data.fields import grf_power

        theory = grf_power(ds.params["size"], ds.params["alpha"], ds.params["std"])
    tolerance = {"band": f"|rel_err| <= {REL_TOL} + {Z_TOL} sigma", "hist_tv": f"<= floor + {HIST_TOL}"}
    out = {**meta, "tolerance": tolerance}

    for name, edges in (("bands", physics.octave_edges(size)), ("bins", None)):
        ps, pa, pb = (physics.power_spectrum(v, edges) for v in (s, a, b))
        # sigma under the hypothesis tested (samples drawn like the data): wider scatter must not widen the band
        vs, floor = physics.compare_spectra(ps, pa, null=True), physics.compare_spectra(pb, pa, null=True)
        sec = {"k": ps.k, "edges": ps.edges, "modes": ps.counts, "power_samples": ps.power, "power_data": pa.power,
               "rel_err": vs["rel_err"], "sigma": vs["sigma_rel"], "rel_err_floor": floor["rel_err"]}
        if name == "bands":
            ok = np.abs(vs["rel_err"]) <= REL_TOL + Z_TOL * vs["sigma_rel"]
            sec["passed"], sec["floor_passed"] = ok, np.abs(floor["rel_err"]) <= REL_TOL + Z_TOL * floor["sigma_rel"]
        if theory is not None:
            mean, sd_one = physics.gaussian_binned_spectrum(theory, edges)
            se = sd_one / math.sqrt(args.n_grf)  # exact standard error of a batch mean of n fields
            sec.update(power_theory=mean, rel_err_theory=ps.power / mean - 1, z_theory=(ps.power - mean) / se,
                       rel_err_theory_floor=pa.power / mean - 1, z_theory_floor=(pa.power - mean) / se)
        out[name] = sec

    hs, ha, hb = (physics.one_point_histogram(v) for v in (s, a, b))
    tv, tv_floor = physics.histogram_distance(hs, ha), physics.histogram_distance(hb, ha)
    one = {"edges": physics.HIST_EDGES, "hist_samples": hs, "hist_data": ha, "hist_tv": tv, "hist_tv_floor": tv_floor,
           "hist_passed": tv <= tv_floor + HIST_TOL, **physics.compare_distributions(s, a, b),
           "moments_samples": physics.moments(s), "moments_data": physics.moments(a)}
    if theory is not None:
        one["moments_theory"] = {"mean": 0.0, "std": ds.params["std"], "skew": 0.0, "kurtosis": 0.0}
    out["one_point"] = one
    out["passed"] = bool(np.all(out["bands"]["passed"]) and one["hist_passed"])
    return out, {"s": s, "a": a}


def plot_grf(res: dict, path: Path):
    bins, one = res["bins"], res["one_point"]
    lines = [("data", bins["k"], bins["power_data"], DATA_COLOUR), ("samples", bins["k"], bins["power_samples"],
                                                                      SAMPLE_COLOUR)]
    if "power_theory" in bins:
        lines.insert(0, ("analytic", bins["k"], bins["power_theory"], THEORY_COLOUR))
    centres = (np.asarray(one["edges"][:-1]) + np.asarray(one["edges"][1:])) / 2
    hist = [("data", centres, one["hist_data"], DATA_COLOUR), ("samples", centres, one["hist_samples"], SAMPLE_COLOUR)]
    bands = res["bands"]
    text = [f"n = {res['n']} fields, {res['sampler']} {res['steps']} steps, step {res['step']}",
            "band rel. error (floor): " + ", ".join(f"{e:+.2f} ({f:+.2f})" for e, f in
                                                  zip(bands["rel_err"], bands["rel_err_floor"])),
            f"histogram TV {one['hist_tv']:.3f} (floor {one['hist_tv_floor']:.3f}); "
            f"{'PASS' if res['passed'] else 'FAIL'} at 10% + 3 sigma per band, TV <= floor + 0.02"]
    draw_figure(path, [("power spectrum P(k) (log-log)", lines, True, True, "k (cycles per box)"),
                       ("one-point histogram (log y)", hist, False, True, "pixel value")], text)


# ---- waves ----------------------------------------------------------------------------------------------------

WAVE_STATS = ("dominant_freq", "peak", "rms", "crest")


def bench_waves(run: Path, args) -> tuple[dict, dict]:
    s, meta, ds = draw_samples(run, args.n_waves, args)
    a, b = real_sets(ds.x, args.n_waves, args.seed)
    rate = ds.rate or 1
    stats = [physics.signal_stats(v, rate) for v in (s, a, b)]
    out = {**meta, "rate": rate, "units": {"dominant_freq": "octaves (log2 Hz)", "peak": "x", "rms": "x",
                                           "crest": "peak / rms"}}
    values = {}
    for name in WAVE_STATS:
        f = (lambda v: np.log2(np.maximum(v, 1e-12))) if name == "dominant_freq" else (lambda v: v)
        vs, va, vb = (f(st[name]) for st in stats)
        out[name] = {**physics.compare_distributions(vs, va, vb), "mean_samples": vs.mean(), "mean_data": va.mean()}
        values[name] = (vs, va, vb)
    return out, values


def plot_waves(res: dict, values: dict, path: Path):
    panels = []
    for name in WAVE_STATS:
        vs, va, vb = values[name]
        edges = np.linspace(min(va.min(), vs.min()), max(va.max(), vs.max()), 31)
        c = (edges[:-1] + edges[1:]) / 2
        h = [np.histogram(np.clip(v, edges[0], edges[-1]), edges)[0] / len(v) for v in (vb, va, vs)]
        r = res[name]
        title = f"{name}: W1 {r['w1']:.3g} (floor {r['w1_floor']:.3g}), KS {r['ks']:.2f} ({r['ks_floor']:.2f})"
        panels.append((title, [("floor set B", c, h[0], FLOOR_COLOUR), ("data", c, h[1], DATA_COLOUR),
                               ("samples", c, h[2], SAMPLE_COLOUR)], False, False, res["units"][name]))
    draw_figure(path, panels, [f"waves: n = {res['n']} signals each, {res['sampler']} {res['steps']} steps, "
                               f"step {res['step']}; histograms as fractions"])


# ---- video ----------------------------------------------------------------------------------------------------


def bench_video(run: Path, args) -> tuple[dict, dict]:
    s, meta, ds = draw_samples(run, args.n_video, args)
    a, b = real_sets(ds.x, args.n_video, args.seed)
    d = [physics.frame_differences(v) for v in (s, a, b)]  # (n, T - 1) each
    out = {**meta, "frames": int(s.shape[2]), "frame_size": list(s.shape[3:])}
    out["frame_diff"] = {**physics.compare_distributions(*d), "mean_samples": d[0].mean(), "mean_data": d[1].mean()}
    fs, fa, fb = (physics.frame_features(v) for v in (s, a, b))
    out["frame_fd"] = {"value": frechet_distance_from_features(fs, fa), "floor": frechet_distance_from_features(fb, fa),
                       "frames_per_set": len(fs), "features": "mnist5k classifier (diffusekit.eval), penultimate layer",
                       "resize": f"{tuple(s.shape[3:])} -> 28x28, bilinear with antialiasing, whole frame"}
    return out, {"d": d, "s": s}


def plot_video(res: dict, values: dict, path: Path):
    ds, da, db = (v.ravel() for v in values["d"])
    edges = np.linspace(0, max(ds.max(), da.max()) + 1e-9, 31)
    c = (edges[:-1] + edges[1:]) / 2
    h = [np.histogram(v, edges)[0] / len(v) for v in (db, da, ds)]
    r, fd = res["frame_diff"], res["frame_fd"]
    title = (f"mean |frame t+1 - frame t|: W1 {r['w1']:.4f} (floor {r['w1_floor']:.4f}), KS {r['ks']:.2f} "
             f"({r['ks_floor']:.2f})")
    series = [("floor set B", c, h[0], FLOOR_COLOUR), ("data", c, h[1], DATA_COLOUR),
              ("samples", c, h[2], SAMPLE_COLOUR)]
    draw_figure(path, [(title, series, False, False, "difference")],
                [f"video: n = {res['n']} clips of {res['frames']} frames, {res['sampler']} {res['steps']} steps, "
                 f"step {res['step']}", f"per-frame FD (mnist5k features) {fd['value']:.2f}, floor {fd['floor']:.2f}"])


# ---- drawing (Pillow) -----------------------------------------------------------------------------------------


def draw_figure(path: Path, panels, text: list[str], W: int = 560, H: int = 300, m: int = 48):
    """Panels stacked vertically, each (title, [(label, x, y, colour), ...], log_x, log_y, x label), then text."""
    img = Image.new("RGB", (W, len(panels) * H + 16 * len(text) + 10), "white")
    d = ImageDraw.Draw(img)
    for i, (title, series, log_x, log_y, xlabel) in enumerate(panels):
        _panel(d, (m, i * H + 28, W - m // 2, (i + 1) * H - 30), title, series, log_x, log_y, xlabel)
    for j, line in enumerate(text):
        d.text((8, len(panels) * H + 4 + 16 * j), line, fill="black")
    img.save(path)


def _panel(d, box, title, series, log_x, log_y, xlabel):
    x0, y0, x1, y1 = box
    tx = (lambda v: np.log10(v)) if log_x else (lambda v: v)
    ty = (lambda v: np.log10(np.maximum(v, 1e-12))) if log_y else (lambda v: v)
    xs = np.concatenate([tx(np.asarray(x, float)) for _, x, _, _ in series])
    ys = np.concatenate([ty(np.asarray(y, float)) for _, _, y, _ in series])
    if log_y:  # empty histogram bins would stretch the axis down to 1e-12
        ys = ys[ys > -11]
    xlo, xhi, ylo, yhi = xs.min(), xs.max(), ys.min(), ys.max()
    X = lambda v: x0 + (x1 - x0) * (v - xlo) / max(xhi - xlo, 1e-12)  # noqa: E731
    Y = lambda v: y1 - (y1 - y0) * (np.clip(v, ylo, yhi) - ylo) / max(yhi - ylo, 1e-12)  # noqa: E731
    d.rectangle([x0, y0, x1, y1], outline="black")
    d.text((x0, y0 - 16), title, fill="black")
    fmt = (lambda v: f"{10 ** v:.3g}") if log_x else (lambda v: f"{v:.3g}")
    d.text((x0, y1 + 4), fmt(xlo), fill="black")
    d.text((x1 - 40, y1 + 4), fmt(xhi), fill="black")
    d.text(((x0 + x1) // 2 - 30, y1 + 4), xlabel, fill="black")
    fmty = (lambda v: f"{10 ** v:.2g}") if log_y else (lambda v: f"{v:.2g}")
    d.text((2, y0), fmty(yhi), fill="black")
    d.text((2, y1 - 10), fmty(ylo), fill="black")
    for k, (label, x, y, colour) in enumerate(series):
        pts = [(X(a), Y(b)) for a, b in zip(tx(np.asarray(x, float)), ty(np.asarray(y, float)))]
        d.line(pts, fill=colour, width=2)
        d.text((x1 - 110, y0 + 4 + 12 * k), label, fill=colour)


# ---- main -----------------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grf", type=Path, help="run directory of a model trained on grf")
    ap.add_argument("--waves", type=Path, help="run directory of a model trained on waves")
    ap.add_argument("--video", type=Path, help="run directory of a model trained on moving-digits")
    ap.add_argument("--n-grf", type=int, default=256)
    ap.add_argument("--n-waves", type=int, default=512)
    ap.add_argument("--n-video", type=int, default=128)
    ap.add_argument("--sampler", default="dpmpp-2m")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="sampling seed, and the draw of the real sets A and B")
    ap.add_argument("--batch", type=int, default=64, help="samples per sampling batch")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "9-signals-video-fields",
                    help="default: benchmarks/results/9-signals-video-fields (BENCHMARKS.md section 9)")
    args = ap.parse_args(argv)
    if not (args.grf or args.waves or args.video):
        ap.error("give at least one of --grf, --waves, --video (run directories)")
    for name in ("n_grf", "n_waves", "n_video"):
        if getattr(args, name) < 2:
            ap.error(f"--{name.replace('_', '-')} must be >= 2")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "physics.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    result["torch"], result["threads"] = torch.__version__, torch.get_num_threads()
    result["machine"] = machine.record()
    if args.grf:
        res, _ = bench_grf(args.grf, args)
        result["grf"] = res
        plot_grf(jsonable(res), args.out / "physics-grf.png")
        print(f"grf: bands rel. error {np.round(res['bands']['rel_err'], 3).tolist()} "
              f"(floor {np.round(res['bands']['rel_err_floor'], 3).tolist()}); histogram TV "
              f"{res['one_point']['hist_tv']:.4f} (floor {res['one_point']['hist_tv_floor']:.4f}); "
              f"{'PASS' if res['passed'] else 'FAIL'}", flush=True)
    if args.waves:
        res, values = bench_waves(args.waves, args)
        result["waves"] = res
        plot_waves(jsonable(res), values, args.out / "physics-waves.png")
        for name in WAVE_STATS:
            r = res[name]
            print(f"waves {name}: W1 {r['w1']:.4g} (floor {r['w1_floor']:.4g}), KS {r['ks']:.3f} "
                  f"(floor {r['ks_floor']:.3f})", flush=True)
    if args.video:
        res, values = bench_video(args.video, args)
        result["video"] = res
        plot_video(jsonable(res), values, args.out / "physics-video.png")
        from diffusekit.viz.signals import save_clip_strip

        save_clip_strip(values["s"][:8], args.out / "physics-video-samples.png", captions=False)
        r, fd = res["frame_diff"], res["frame_fd"]
        print(f"video frame diff: W1 {r['w1']:.4g} (floor {r['w1_floor']:.4g}), KS {r['ks']:.3f} (floor "
              f"{r['ks_floor']:.3f}); per-frame FD {fd['value']:.3f} (floor {fd['floor']:.3f})", flush=True)
    path.write_text(json.dumps(jsonable(result), indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
