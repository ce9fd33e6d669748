"""The spoken-digit judge: a small CNN on log-mel spectrograms, trained on the real clips of `spoken-digits`, that
scores generated clips as SC09 papers do (WaveGAN, Donahue et al. 2019; DiffWave, Kong et al. 2021, section 5.3).

    from diffusekit.eval.audio import judge_speech, format_speech
    res = judge_speech(samples, asked=labels)   # samples (N, 1, 8000) in [-1, 1]; asked: the digits asked for
    print(format_speech(res))

Front end (no torchaudio): |STFT|^2 with a periodic Hann window of N_FFT = 256 (32 ms at 8 kHz), hop 80 (10 ms),
centred frames (101 a second), summed into N_MELS = 40 triangular mel bands (HTK mel scale, 2595 log10(1 + f/700),
20 Hz .. 4 kHz, Slaney-style area normalisation off: each triangle peaks at 1), then log(power + 1e-6) and a fixed
affine (mel_mean, mel_std: the train clips' mean and std, stored in the config). The front end is part of the
module, so it sees exactly the waveform the judge is given: loudness counts (the data's peaks are 0.3 .. 0.9).
Network: Conv1d over time with the 40 bands as channels, stages of two 3-tap convs + ReLU then max-pool 2
(101 -> 50 -> 25 frames), then the mean and the max over time concatenated, Linear -> ReLU: the features
(penultimate layer, FEATURE_DIM), then Linear -> 10 logits. Pooling over time makes it indifferent to where in the
second the word falls.

What `judge_speech` reports (n = min(len(samples), len(real) // 2) unless given):
    accuracy      share of samples the judge recognises as the digit asked for (class-conditional samples)
    fd            Frechet distance in the judge's features, a random n of the samples against real half A of the
                  train clips; floor = real half B against A, same n (as `evaluate`)
    is            the Inception-Score-style figure exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016) over all
                  samples, with p(y) their mean prediction; 10 at most (ten classes). `is_real`: the same for as
                  many real clips (the figure real speech reaches under this judge)
    classes       the predicted-class histogram (`classes.class_histogram`)
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .classes import class_histogram
from .frechet import frechet_distance, gaussian_stats

DATA = "spoken-digits"
N_FFT, HOP, N_MELS, F_MIN = 256, 80, 40, 20.0
MIN_N = 10


@dataclass
class AudioClassifierConfig:
    data: str = DATA
    kind: str = "audio"  # tells `classifier.load_classifier` which network the record describes
    rate: int = 8000
    length: int = 8000
    n_fft: int = N_FFT
    hop: int = HOP
    n_mels: int = N_MELS
    f_min: float = F_MIN
    mel_mean: float = 0.0  # the fixed affine of the log-mel input: (log mel - mel_mean) / mel_std
    mel_std: float = 1.0
    channels: tuple[int, ...] = (32, 64, 96)  # one stage per entry: two 3-tap convs + ReLU, then max-pool 2
    feature_dim: int = 128
    num_classes: int = 10


def mel_filters(rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, peak 1, centres equally spaced on the HTK mel scale."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = hz(np.linspace(mel(f_min), mel(f_max), n_mels + 2))  # (n_mels + 2,) Hz
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft  # (F,) Hz
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    w = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return torch.from_numpy(w.astype(np.float32))


class AudioClassifier(nn.Module):
    """log-mel front end -> Conv1d stages -> [mean, max] over time -> Linear -> ReLU (features) -> Linear (logits)."""

    def __init__(self, cfg: AudioClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        self.register_buffer("mel", mel_filters(cfg.rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.rate / 2),
                             persistent=False)
        layers, c_in = [], cfg.n_mels
        for c in cfg.channels:
            layers += [nn.Conv1d(c_in, c, 3, padding=1), nn.ReLU(), nn.Conv1d(c, c, 3, padding=1), nn.ReLU()]
            layers += [nn.MaxPool1d(2)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(2 * c_in, cfg.feature_dim)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 1, L) waveform in [-1, 1] -> (B, n_mels, frames) log mel power, fixed-affine normalised
        spec = torch.stft(x.flatten(1), self.cfg.n_fft, self.cfg.hop, window=self.window.to(x.dtype), center=True,
                          return_complex=True).abs() ** 2  # (B, F, frames); centre padding reflects
        m = torch.einsum("mf,bft->bmt", self.mel.to(x.dtype), spec)
        return (torch.log(m + 1e-6) - self.cfg.mel_mean) / self.cfg.mel_std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.log_mel(x))  # (B, C, frames / 2^stages)
        return F.relu(self.fc(torch.cat([h.mean(-1), h.amax(-1)], 1)))  # (B, feature_dim), non-negative

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes) logits


def audio_config_from_arch(arch: dict) -> AudioClassifierConfig:
    return AudioClassifierConfig(**{**arch, "channels": tuple(arch["channels"])})


def audio_config_dict(cfg: AudioClassifierConfig) -> dict:
    d = asdict(cfg)
    d["channels"] = list(d["channels"])
    return d


def inception_score(logits: np.ndarray | torch.Tensor) -> float:
    """exp(mean_x KL(p(y|x) || p(y))), p(y) the mean of p(y|x): from 1 (one class, or no confidence) to K."""
    logp = torch.as_tensor(np.asarray(logits), dtype=torch.float64).log_softmax(1)  # (N, K)
    p = logp.exp()
    log_py = torch.log(p.mean(0, keepdim=True))
    return float(math.exp((p * (logp - log_py)).sum(1).mean()))


def judge_speech(samples: torch.Tensor, asked=None, n: int | None = None, seed: int = 0, real=None,
                 classifier=None) -> dict:
    """Score clips (N, 1, 8000) in [-1, 1] with the shipped judge (see the module docstring). `asked`: the digit
    each sample was asked for (None for unconditional samples: no accuracy). `real`: the reference clips
    (default: the train split of `spoken-digits`, what a model learns from); `classifier`: a LoadedClassifier
    (default: the shipped one)."""
    from .classifier import classifier_outputs, load_classifier

    t0 = time.time()
    x = torch.as_tensor(samples).float()
    clf = classifier or load_classifier(DATA)
    cfg = clf.cfg
    if x.ndim != 3 or tuple(x.shape[1:]) != (1, cfg.length):
        raise ValueError(f"spoken-digit judge: samples must be (N, 1, {cfg.length}) at {cfg.rate} Hz; got "
                         f"{tuple(x.shape)}")
    if real is None:
        from ..data.speech import load_spoken_digits

        ds = load_spoken_digits("train")
        real = (ds.x, ds.labels)
    x_r, y_r = real
    f_s, l_s = (t.double().numpy() for t in classifier_outputs(clf, x, batch_size=250))
    f_r, l_r = (t.double().numpy() for t in classifier_outputs(clf, x_r, batch_size=250))
    n_max = min(len(x), len(x_r) // 2)
    n = n_max if n is None else int(n)
    if not MIN_N <= n <= n_max:
        raise ValueError(f"n = {n} clips per set is not possible: need {MIN_N} <= n <= min(samples = {len(x)}, "
                         f"real // 2 = {len(x_r) // 2})")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x_r))
    a, b = np.sort(perm[:n]), np.sort(perm[n : 2 * n])
    pick = np.sort(rng.permutation(len(x))[:n])
    mu_a, sig_a = gaussian_stats(f_r[a])
    res = {"data": DATA, "n_samples": len(x), "n_real": len(x_r), "n": n, "seed": seed,
           "classifier": {"name": clf.name, "heldout_voice_accuracy": clf.record.get("test_accuracy")},
           "fd": {"value": frechet_distance(*gaussian_stats(f_s[pick]), mu_a, sig_a),
                  "floor": frechet_distance(*gaussian_stats(f_r[b]), mu_a, sig_a), "n": n}}
    res["fd"]["ratio"] = res["fd"]["value"] / res["fd"]["floor"]
    real_pick = np.sort(perm[: min(len(x), len(x_r))])
    res["is"] = {"value": inception_score(l_s), "real": inception_score(l_r[real_pick]), "n": len(x),
                 "n_real": len(real_pick), "max": cfg.num_classes}
    counts = np.bincount(np.asarray(y_r), minlength=cfg.num_classes)
    res["classes"] = class_histogram(l_s, counts / counts.sum(), real_logits=l_r[real_pick])
    if asked is not None:
        asked = torch.as_tensor(asked, dtype=torch.long).reshape(-1).numpy()
        if len(asked) != len(x):
            raise ValueError(f"asked: one digit per sample; got {len(asked)} for {len(x)} samples")
        pred = l_s.argmax(1)
        per = [float((pred[asked == k] == k).mean()) if (asked == k).any() else None for k in range(cfg.num_classes)]
        res["accuracy"] = {"value": float((pred == asked).mean()), "per_digit": per, "n": len(x)}
    res["seconds"] = round(time.time() - t0, 2)
    return res


def format_speech(r: dict) -> str:
    """A few lines: accuracy of the asked digit, FD with its floor, the IS-style figure beside real clips'."""
    lines = [f"{r['data']}: {r['n_samples']} samples vs {r['n_real']} real clips (judge {r['classifier']['name']}, "
             f"held-out-voice accuracy {r['classifier']['heldout_voice_accuracy']:.3f})"]
    if "accuracy" in r:
        lines.append(f"asked digit recognised: {r['accuracy']['value']:.3f} (n = {r['accuracy']['n']})")
    fd = r["fd"]
    lines.append(f"FD (judge features): {fd['value']:.4g}   real-vs-real floor {fd['floor']:.4g}   "
                 f"ratio {fd['ratio']:.3g}   n = {fd['n']}")
    lines.append(f"IS-style score: {r['is']['value']:.3f}   real clips {r['is']['real']:.3f}   (max {r['is']['max']}, "
                 f"n = {r['is']['n']})")
    c = r["classes"]
    lines.append("predicted digits: " + " ".join(f"{i}:{k}" for i, k in enumerate(c["counts"])))
    return "\n".join(lines)


__all__ = ["AudioClassifier", "AudioClassifierConfig", "format_speech", "inception_score", "judge_speech",
           "mel_filters"]
