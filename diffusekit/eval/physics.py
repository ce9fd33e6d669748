"""Physics-style statistics of data and samples: field power spectra, one-point histograms, signal and video
statistics, and distances between two batches, so generated data can be judged against the real thing.

    from diffusekit.eval import physics
    report = physics.compare_fields(samples, data)   # samples, data: (B, C, S, S) fields
    report.passed, report.rel_err, report.hist_tv
    physics.compare_signals(samples, data, rate=16000)   # W1 distances of dominant frequency, peak, rms
    physics.compare_videos(samples, data)                # W1 distance of frame-to-frame differences
    physics.compare_distributions(s, a, b)   # W1 and KS of per-example values s vs a, with the floor b vs a

Conventions (numpy float64 out; inputs are torch tensors or numpy arrays):
    Field power spectrum of one square S x S field f (periodic): F = fft2(f), P_hat(k) = |F_k|^2 / S^2, so that
        mean over pixels of f^2 = sum_k P_hat(k) / S^2 (Parseval). Wavenumbers k = (kx, ky) are integers in
        cycles per box (numpy fftfreq(S) * S), |k| = sqrt(kx^2 + ky^2).
    Radial bins (`radial_bins`): bin j = 1 .. S // 2 holds the modes with j - 0.5 <= |k| < j + 0.5, i.e.
        edges = [0.5, 1.5, ..., S//2 + 0.5]. k = 0 (the mean) and the corner modes beyond S//2 + 0.5 (incomplete
        annuli) are left out. The binned spectrum is the mean of P_hat over the modes in a bin and over every
        field and channel of the batch; its standard error is the spread over fields / sqrt(number of fields).
        Coarser bands take other edges (`octave_edges`: k = 1 | 2-3 | 4-7 | 8-16 for S = 32), with the same
        rules: a band's power is the mean of P_hat over its modes.
    Gaussian fields (`gaussian_binned_spectrum`): for a stationary periodic Gaussian field with per-mode
        spectrum P_k, E[P_hat_k] = P_k and the bin mean over M modes has variance 2 sum_{k in bin} P_k^2 / M^2
        for one field: |F_k|^2 is exponential (variance P_k^2) and F_{-k} = conj(F_k) doubles each pair; a
        self-conjugate mode (2k = 0 mod S) is chi^2 with one degree of freedom (variance 2 P_k^2), which gives
        the same sum. Distinct pairs are independent.
    One-point histogram: the distribution of single pixel (or sample) values over fixed edges (HIST_EDGES:
        40 bins of width 0.05 on [-1, 1], the data range); values outside the edges count in the end bins.
    Distances: total variation 0.5 sum |p - q| between histograms (0 = same, 1 = disjoint); Wasserstein-1
        between empirical 1-D distributions (exact, in the data's units); Kolmogorov-Smirnov, the largest gap
        between the two empirical CDFs (0..1, unitless, sensitive to shifts in the bulk where W1 weighs the
        tails); a "floor" is the same distance between two halves of the reference batch (even and odd
        indices), or between two disjoint real sets of the samples' size (`compare_distributions`): the size of
        pure sampling noise. Distances between finite samples are biased upwards, more so the smaller the
        sets: only a floor at the same n says what "indistinguishable" would read.
    Moments (`moments`): mean, standard deviation, skewness E[(x - mu)^3] / sigma^3 and excess kurtosis
        E[(x - mu)^4] / sigma^4 - 3 of all values (population formulas; 0 and 0 for a Gaussian).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.fields import wavenumbers

HIST_EDGES = np.linspace(-1.0, 1.0, 41)  # width 0.05 over the [-1, 1] data range


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


# ---- fields ---------------------------------------------------------------------------------------------------


def radial_bins(size: int, edges=None) -> tuple[np.ndarray, np.ndarray]:
    """(edges (S//2 + 1,), bin index (S, S) of every mode: 0 .. S//2 - 1, or -1 for k = 0 and the corners).
    `edges` (increasing, in cycles per box) replaces the unit-width bins, e.g. `octave_edges(S)`."""
    edges = np.arange(size // 2 + 1) + 0.5 if edges is None else np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"radial_bins: edges must be increasing, at least 2 of them; got {edges}")
    k = wavenumbers(size)
    idx = np.searchsorted(edges, k, side="right") - 1  # edges[j] <= k < edges[j + 1] -> j
    idx[(k < edges[0]) | (k >= edges[-1])] = -1
    return edges, idx


def octave_edges(size: int) -> np.ndarray:
    """Band edges one octave wide over the radial bins 1 .. S//2: k = 1 | 2-3 | 4-7 | ... , the last band running
    to S//2 (for S = 32: 1 | 2-3 | 4-7 | 8-16). Power laws are straight lines per octave, and the bands hold
    1, 2, 4, 9 bins, so the noisy large scales are not drowned in the many small-scale modes."""
    if size < 4:
        raise ValueError(f"octave_edges: need a field size >= 4, got {size}")
    edges = [2.0**j - 0.5 for j in range(int(np.log2(size // 2)) + 1)]  # 0.5, 1.5, 3.5, ... <= S//2 - 0.5
    edges[-1] = size // 2 + 0.5
    return np.array(edges)


@dataclass
class Spectrum:
    """A radially binned power spectrum (see the module docstring); arrays have one entry per bin."""

    k: np.ndarray  # bin centres 1 .. S//2 (cycles per box); for other edges the middle of each band
    k_mean: np.ndarray  # mean |k| of the modes in each bin
    edges: np.ndarray  # (nbins + 1,)
    counts: np.ndarray  # modes per bin
    power: np.ndarray  # mean of P_hat over the bin's modes and the batch's fields
    stderr: np.ndarray  # standard error of `power` over fields (nan for a single field)
    n_fields: int  # B * C


def power_spectrum(x, edges=None) -> Spectrum:
    """Radially averaged power spectrum of a batch of square fields (B, C, S, S) or (B, S, S); `edges` for
    other bands than the unit-width bins (e.g. `octave_edges(S)`)."""
    f = _np(x)
    if f.ndim == 3:
        f = f[:, None]
    if f.ndim != 4 or f.shape[-1] != f.shape[-2] or f.shape[-1] < 2:
        raise ValueError(f"power_spectrum: expected square fields (B, C, S, S); got shape {f.shape}")
    s = f.shape[-1]
    f = f.reshape(-1, s, s)  # every channel of every field is one sample of the field
    p = np.abs(np.fft.fft2(f)) ** 2 / s**2  # (n, S, S) P_hat per mode
    edges, idx = radial_bins(s, edges)
    nb = len(edges) - 1
    counts = np.bincount(idx[idx >= 0], minlength=nb)
    if np.any(counts == 0):
        raise ValueError(f"power_spectrum: bands {np.flatnonzero(counts == 0).tolist()} of edges {edges} hold no "
                         f"modes of a {s} x {s} field; use wider bands")
    per_field = _bin(p, s, edges)  # (n, nbins)
    k_mean = np.bincount(idx[idx >= 0], weights=wavenumbers(s)[idx >= 0], minlength=nb) / counts
    n = per_field.shape[0]
    stderr = per_field.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.full(nb, np.nan)
    return Spectrum((edges[:-1] + edges[1:]) / 2, k_mean, edges, counts, per_field.mean(0), stderr, n)


def _bin(p: np.ndarray, s: int, edges=None) -> np.ndarray:
    """Per-mode values (n, S, S) -> bin means (n, nbins)."""
    edges, idx = radial_bins(s, edges)
    nb = len(edges) - 1
    keep = idx >= 0
    onehot = np.zeros((keep.sum(), nb))
    onehot[np.arange(keep.sum()), idx[keep]] = 1
    return p[:, keep] @ onehot / onehot.sum(0)


def gaussian_binned_spectrum(p_modes, edges=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact (mean, standard deviation) of one field's binned spectrum, for a Gaussian field whose per-mode
    spectrum on the fft2 grid is `p_modes` (S, S). For a batch of n independent fields divide the std by sqrt(n).
    `edges` as in `power_spectrum`."""
    p = _np(p_modes)
    s = p.shape[-1]
    mean = _bin(p[None], s, edges)[0]
    edges, idx = radial_bins(s, edges)
    counts = np.bincount(idx[idx >= 0], minlength=len(edges) - 1)
    sq = np.bincount(idx[idx >= 0], weights=p[idx >= 0] ** 2, minlength=len(edges) - 1)
    return mean, np.sqrt(2 * sq) / counts


def compare_spectra(a: Spectrum, b: Spectrum, null: bool = False) -> dict[str, np.ndarray]:
    """Per-band relative error of a against b: rel_err = P_a / P_b - 1, its standard error sigma_rel (from both
    batches' sampling noise, first order), and z = rel_err / sigma_rel.

    null=True: sigma_rel under the hypothesis being tested, that a is drawn like b: a's standard error is b's
    per-field scatter at a's batch size. Use it to pass or fail samples: otherwise samples that scatter more than
    the data (a few fields full of noise) would widen their own tolerance."""
    if a.power.shape != b.power.shape:
        raise ValueError(f"compare_spectra: {len(a.power)} bins vs {len(b.power)}; compare fields of one size")
    rel = a.power / b.power - 1
    if null:
        se_a = b.stderr * np.sqrt(b.n_fields / a.n_fields)
        sigma = np.sqrt(se_a**2 + b.stderr**2) / b.power
    else:
        sigma = np.sqrt((a.stderr / b.power) ** 2 + (a.power * b.stderr / b.power**2) ** 2)
    return {"k": a.k, "rel_err": rel, "sigma_rel": sigma, "z": rel / sigma}


def one_point_histogram(x, edges=HIST_EDGES) -> np.ndarray:
    """Probabilities (len(edges) - 1,) of single values of x over `edges`; outside values go to the end bins."""
    v = _np(x).ravel()
    e = np.asarray(edges, dtype=np.float64)
    counts = np.histogram(np.clip(v, e[0], e[-1]), bins=e)[0]
    return counts / max(1, counts.sum())


def histogram_distance(p, q) -> float:
    """Total variation 0.5 sum |p - q| between two histograms over the same bins (each normalised to sum 1)."""
    p, q = _np(p), _np(q)
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def wasserstein1(a, b) -> float:
    """Exact Wasserstein-1 distance between the empirical distributions of the values of a and b (any shapes):
    the integral of |F_a - F_b| over the line."""
    a, b = np.sort(_np(a).ravel()), np.sort(_np(b).ravel())
    if a.size == 0 or b.size == 0:
        raise ValueError("wasserstein1: empty sample")
    v = np.concatenate([a, b])
    v.sort()
    fa = np.searchsorted(a, v[:-1], side="right") / a.size
    fb = np.searchsorted(b, v[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * np.diff(v)))


def ks_distance(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: max |F_a - F_b| over the line, between the empirical CDFs of the
    values of a and b (any shapes). 0 for identical samples, 1 for disjoint ranges."""
    a, b = np.sort(_np(a).ravel()), np.sort(_np(b).ravel())
    if a.size == 0 or b.size == 0:
        raise ValueError("ks_distance: empty sample")
    v = np.concatenate([a, b])  # the CDFs only jump at these points: the max is at one of them
    fa = np.searchsorted(a, v, side="right") / a.size
    fb = np.searchsorted(b, v, side="right") / b.size
    return float(np.abs(fa - fb).max())


def moments(x) -> dict[str, float]:
    """Mean, std, skewness and excess kurtosis of all values of x (module docstring; Gaussian: skew = kurt = 0).
    Constant x has no shape: skew and kurtosis are nan."""
    v = _np(x).ravel()
    mu, sd = v.mean(), v.std()
    if not sd > 0:
        return {"mean": float(mu), "std": float(sd), "skew": float("nan"), "kurtosis": float("nan")}
    z = (v - mu) / sd
    return {"mean": float(mu), "std": float(sd), "skew": float((z**3).mean()), "kurtosis": float((z**4).mean() - 3)}


def compare_distributions(samples, reference, floor) -> dict[str, float]:
    """W1 and KS between the values of `samples` and `reference`, and the same between `floor` and `reference`:
    pass per-example statistics (e.g. `signal_stats(x)["peak"]`) of n samples, n real examples, and n other real
    examples disjoint from the first; all three should have the same size (the floor depends on n)."""
    return {"w1": wasserstein1(samples, reference), "w1_floor": wasserstein1(floor, reference),
            "ks": ks_distance(samples, reference), "ks_floor": ks_distance(floor, reference),
            "n": int(_np(samples).size), "n_reference": int(_np(reference).size), "n_floor": int(_np(floor).size)}


@dataclass
class FieldReport:
    """`compare_fields` result. A band passes when |rel_err| <= rel_tol + z_tol * sigma_rel; the histogram
    passes when hist_tv <= hist_tol + hist_tv_floor. `passed` is all of them."""

    spectrum: Spectrum  # of the samples
    reference: Spectrum  # of the data
    rel_err: np.ndarray  # per band, P_samples / P_data - 1
    sigma_rel: np.ndarray  # per band, sampling noise of rel_err
    band_ok: np.ndarray  # per band, bool
    hist_tv: float  # total variation between one-point histograms
    hist_tv_floor: float  # the same between the two halves of the data
    w1: float  # Wasserstein-1 between pixel values
    w1_floor: float
    passed: bool


def compare_fields(samples, data, rel_tol: float = 0.1, z_tol: float = 3.0, hist_tol: float = 0.02,
                   edges=HIST_EDGES) -> FieldReport:
    """Judge generated fields by physics: power spectrum per band and one-point histogram against the data's.

    Defaults: each band's power within 10 % (plus 3 standard errors of sampling noise, under the hypothesis that
    the samples are drawn like the data: `compare_spectra(null=True)`), and a histogram total
    variation within 0.02 of what two halves of the data differ by. State the tolerances with any result.
    """
    a, b = power_spectrum(samples), power_spectrum(data)
    c = compare_spectra(a, b, null=True)
    band_ok = np.abs(c["rel_err"]) <= rel_tol + z_tol * np.nan_to_num(c["sigma_rel"])
    hs, hd = one_point_histogram(samples, edges), one_point_histogram(data, edges)
    tv = histogram_distance(hs, hd)
    d0, d1 = _halves(data)
    tv_floor = histogram_distance(one_point_histogram(d0, edges), one_point_histogram(d1, edges))
    w1, w1_floor = wasserstein1(samples, data), wasserstein1(d0, d1)
    passed = bool(band_ok.all() and tv <= hist_tol + tv_floor)
    return FieldReport(a, b, c["rel_err"], c["sigma_rel"], band_ok, tv, tv_floor, w1, w1_floor, passed)


def _halves(x) -> tuple[np.ndarray, np.ndarray]:
    v = _np(x)
    if v.shape[0] < 2:
        raise ValueError(f"need at least 2 examples in the reference batch to split it; got shape {v.shape}")
    return v[0::2], v[1::2]


# ---- 1-D signals ----------------------------------------------------------------------------------------------


def dominant_frequency(x, rate: float = 1.0, pad: int = 4) -> np.ndarray:
    """(B,) frequency of the highest FFT peak of each signal (B, C, L) or (B, L), in Hz (cycles per sample for
    rate=1). Channels are averaged first; a Hann window, `pad`-fold zero padding and a parabola through the log
    magnitudes of the peak bin and its neighbours locate the peak to a small fraction of rate / L. DC excluded."""
    v = _np(x)
    if v.ndim == 3:
        v = v.mean(1)
    if v.ndim != 2 or v.shape[-1] < 4:
        raise ValueError(f"dominant_frequency: expected signals (B, C, L) with L >= 4; got shape {_np(x).shape}")
    n = v.shape[-1] * pad
    mag = np.abs(np.fft.rfft(v * np.hanning(v.shape[-1] + 2)[1:-1], n=n))  # Hann, without its zero end points
    mag[:, 0] = 0
    i = np.clip(mag.argmax(-1), 1, mag.shape[-1] - 2)
    rows = np.arange(len(v))
    lm, l0, lp = (np.log(mag[rows, i + d] + 1e-300) for d in (-1, 0, 1))
    denom = lm - 2 * l0 + lp
    shift = np.where(denom < 0, 0.5 * (lm - lp) / np.where(denom < 0, denom, -1), 0.0)  # vertex of the parabola
    return (i + np.clip(shift, -0.5, 0.5)) * rate / n


def signal_stats(x, rate: float = 1.0) -> dict[str, np.ndarray]:
    """Per signal (B,): "dominant_freq" (Hz), "peak" (max |x|), "rms" (over channels and time) and "crest"
    = peak / rms, the crest factor (sqrt 2 for a steady sinusoid, more for a decaying note or a click: it reads
    the envelope, whatever the loudness; 0 for a silent signal)."""
    v = _np(x)
    flat = v.reshape(v.shape[0], -1)
    peak, rms = np.abs(flat).max(1), np.sqrt((flat**2).mean(1))
    return {"dominant_freq": dominant_frequency(v, rate), "peak": peak, "rms": rms,
            "crest": np.divide(peak, rms, out=np.zeros_like(peak), where=rms > 0)}


def compare_signals(samples, data, rate: float = 1.0) -> dict[str, float]:
    """Wasserstein-1 distances between two batches' distributions of dominant frequency (in octaves, log2 Hz:
    an error of one semitone is 1/12 at any pitch), peak and rms, each with its "<name>_floor" between the two
    halves of `data`."""
    sa, sd = signal_stats(samples, rate), signal_stats(data, rate)
    d0, d1 = _halves(data)
    s0, s1 = signal_stats(d0, rate), signal_stats(d1, rate)
    out = {}
    for name in ("dominant_freq", "peak", "rms"):
        f = (lambda v: np.log2(np.maximum(v, 1e-12))) if name == "dominant_freq" else (lambda v: v)
        out[name] = wasserstein1(f(sa[name]), f(sd[name]))
        out[name + "_floor"] = wasserstein1(f(s0[name]), f(s1[name]))
    return out


# ---- video ----------------------------------------------------------------------------------------------------


def frame_differences(x) -> np.ndarray:
    """(B, T - 1) mean |x[:, :, t + 1] - x[:, :, t]| over channels and pixels, for clips (B, C, T, H, W)."""
    v = _np(x)
    if v.ndim != 5 or v.shape[2] < 2:
        raise ValueError(f"frame_differences: expected clips (B, C, T, H, W) with T >= 2; got shape {v.shape}")
    return np.abs(np.diff(v, axis=2)).mean(axis=(1, 3, 4))


def compare_videos(samples, data) -> dict[str, float]:
    """Temporal consistency: W1 between the distributions of frame-to-frame differences ("frame_diff", with
    "frame_diff_floor" between halves of the data), and the mean difference of each ("mean_samples",
    "mean_data"). Frames that flicker or jump raise the samples' mean; frozen clips lower it."""
    fs, fd = frame_differences(samples), frame_differences(data)
    d0, d1 = _halves(data)
    return {"frame_diff": wasserstein1(fs, fd),
            "frame_diff_floor": wasserstein1(frame_differences(d0), frame_differences(d1)),
            "mean_samples": float(fs.mean()), "mean_data": float(fd.mean())}


def frame_features(clips, data: str = "mnist5k", batch_size: int = 1000) -> np.ndarray:
    """Features (B * T, D) of every frame of clips (B, 1, T, H, W) in [-1, 1], from the shipped feature classifier
    of `data` (diffusekit.eval; its penultimate layer), for a per-frame Frechet distance. Frames whose size is not
    the classifier's (moving-digits: 32 x 32 frames, mnist5k classifier: 28 x 28) are resized whole, bilinear with
    antialiasing: nothing is cropped away (digits may sit at the edge of the frame); the digits then measure ~14 px
    instead of MNIST's ~20, so the features are a fixed, sensible map of frames rather than a recognition of them,
    which is why such an FD is read against its real-vs-real floor."""
    import torch.nn.functional as F

    from .classifier import classifier_outputs, load_classifier

    v = torch.as_tensor(_np(clips), dtype=torch.float32)
    if v.ndim != 5:
        raise ValueError(f"frame_features: expected clips (B, C, T, H, W); got shape {tuple(v.shape)}")
    clf = load_classifier(data)
    c_in, size = clf.cfg.in_channels, clf.cfg.image_size
    if v.shape[1] != c_in:
        raise ValueError(f"frame_features: the {data} classifier takes {c_in}-channel frames; got {v.shape[1]}")
    frames = v.transpose(1, 2).reshape(-1, c_in, *v.shape[3:])  # (B*T, C, H, W)
    if frames.shape[-2:] != (size, size):
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return classifier_outputs(clf, frames.clamp(-1, 1), batch_size)[0].double().numpy()


__all__ = [
    "HIST_EDGES",
    "FieldReport",
    "Spectrum",
    "compare_distributions",
    "compare_fields",
    "compare_signals",
    "compare_spectra",
    "compare_videos",
    "dominant_frequency",
    "frame_differences",
    "frame_features",
    "gaussian_binned_spectrum",
    "histogram_distance",
    "ks_distance",
    "moments",
    "octave_edges",
    "one_point_histogram",
    "power_spectrum",
    "radial_bins",
    "signal_stats",
    "wasserstein1",
    "wavenumbers",
]
