"""Video and scientific fields: moving-digits against a step-by-step simulation, GRFs against their analytic
spectrum (tolerances from the exact sampling variance), the physics metrics, and the clip GIFs and strips."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from diffusekit import physics
from diffusekit.data import DataError, load_data
from diffusekit.data.fields import grf_power, make_grf
from diffusekit.data.video import make_moving_digits
from diffusekit.viz_signals import save_clip_gif, save_clip_strip

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mnist5k():
    return load_data("mnist5k")


# ---- moving digits --------------------------------------------------------------------------------------------


def test_moving_digits_deterministic_shape_range(mnist5k):
    a = make_moving_digits(64, seed=0, digits=mnist5k)
    b = make_moving_digits(64, seed=0, digits=mnist5k)
    c = make_moving_digits(64, seed=1, digits=mnist5k)
    assert torch.equal(a.x, b.x) and all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    assert not torch.equal(a.x, c.x)
    assert a.x.shape == (64, 1, 8, 32, 32) and a.x.dtype == torch.float32
    assert float(a.x.min()) == -1.0 and float(a.x.max()) <= 1.0 and float(a.x.max()) > 0.9
    assert a.labels is None and set(a.params["n_digits"].tolist()) == {1, 2}
    assert ((a.params["digits"][:, 1] == -1) == (a.params["n_digits"] == 1)).all()
    pos = a.params["position"]
    assert float(pos.min()) >= 0 and float(pos.max()) <= 16  # the digit box never leaves the frame
    long = make_moving_digits(8, seed=0, frames=16, digits=mnist5k)
    assert long.x.shape == (8, 1, 16, 32, 32)
    with pytest.raises(DataError, match="frames >= 2"):
        make_moving_digits(4, frames=1, digits=mnist5k)


def test_moving_digits_match_a_step_by_step_simulation(mnist5k):
    """Independent oracle: move each digit frame by frame, reversing a velocity component at each wall, and paste
    the shrunk source digit at the rounded position."""
    ds = make_moving_digits(40, seed=7, frames=12, num_digits=(1, 1), digits=mnist5k)
    assert torch.equal(ds.labels, mnist5k.labels[ds.params["source_index"][:, 0]])  # one digit: labels = its class
    assert ds.class_names == mnist5k.class_names
    glyphs = F.interpolate((mnist5k.x + 1) / 2, size=(16, 16), mode="bilinear", antialias=True,
                           align_corners=False).clamp(0, 1)[:, 0]
    for i in range(len(ds)):
        p = ds.params["position"][i, 0, 0].double().clone()
        v = ds.params["velocity"][i, 0].double().clone()
        g = glyphs[ds.params["source_index"][i, 0]]
        for t in range(12):
            assert torch.allclose(ds.params["position"][i, t, 0].double(), p, atol=1e-4), (i, t)
            frame = torch.zeros(32, 32)
            y, x = (int(round(float(q))) for q in ds.params["position"][i, t, 0])
            frame[y : y + 16, x : x + 16] = g
            assert torch.allclose(ds.x[i, 0, t], frame * 2 - 1, atol=1e-6)
            p = p + v
            for d in range(2):  # bounce off the walls at 0 and 32 - 16
                if p[d] < 0:
                    p[d], v[d] = -p[d], -v[d]
                elif p[d] > 16:
                    p[d], v[d] = 32 - p[d], -v[d]


def test_two_digits_combine_by_max(mnist5k):
    ds = make_moving_digits(20, seed=3, num_digits=(2, 2), digits=mnist5k)
    one = ds.params["digits"]
    assert (one >= 0).all() and ds.labels is None
    u = (ds.x + 1) / 2
    assert float(u.max()) <= 1 and float(u.sum(dim=(-1, -2)).min()) > 0  # every frame shows something


# ---- GRF ------------------------------------------------------------------------------------------------------


def test_grf_deterministic_shape_and_exact_moments():
    a, b, c = make_grf(400, seed=0), make_grf(400, seed=0), make_grf(400, seed=1)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert a.x.shape == (400, 1, 32, 32) and a.x.dtype == torch.float32 and a.params["std"] == 0.25
    assert float(a.x.mean(dim=(-1, -2)).abs().max()) < 1e-6  # P_0 = 0: every field has mean exactly 0
    p = grf_power(32, 3.0, 0.25)
    assert p[0, 0] == 0 and math.isclose(p.sum() / 32**2, 0.25**2, rel_tol=1e-12)  # pixel variance std^2
    # the ensemble pixel variance is std^2; its sampling error follows from the spectrum (per-field variance of
    # the spatial mean square is 2 sum_k P_k^2 / S^4), so the tolerance is computed, not tuned
    big = make_grf(2000, seed=2).x.double()
    ms = (big**2).mean(dim=(1, 2, 3))
    se = math.sqrt(2 * (p**2).sum() / 32**4 / 2000)
    assert abs(float(ms.mean()) - 0.0625) < 5 * se
    assert 0.95 < float(ms.std()) / math.sqrt(2 * (p**2).sum() / 32**4) < 1.05
    assert make_grf(4, size=64).x.shape == (4, 1, 64, 64)
    with pytest.raises(DataError, match="even size"):
        make_grf(4, size=33)


def test_power_spectrum_of_a_plane_wave_is_exact():
    s, amp = 32, 0.7
    yy, xx = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    f = amp * np.cos(2 * np.pi * 3 * xx / s)  # all power at k = (0, +-3)
    sp = physics.power_spectrum(f[None, None])
    edges, idx = physics.radial_bins(s)
    assert np.array_equal(edges, np.arange(17) + 0.5) and sp.k.tolist() == list(range(1, 17))
    assert sp.counts.sum() == (idx >= 0).sum() and sp.counts[0] == 8  # |k| in [0.5, 1.5): 4 axis + 4 diagonal
    expected = np.zeros(16)
    expected[2] = 2 * (amp * s * s / 2) ** 2 / s**2 / sp.counts[2]  # two modes of |F| = A S^2 / 2, mean over bin
    assert np.allclose(sp.power, expected, atol=1e-12)
    # Parseval: every mode counted (here all inside the bins) gives the mean square
    assert math.isclose((sp.power * sp.counts).sum() / s**2, (f**2).mean(), rel_tol=1e-12)


def test_grf_spectrum_matches_the_analytic_one_within_sampling_error():
    n = 2000
    ds = make_grf(n, seed=4)
    sp = physics.power_spectrum(ds.x)
    mean, sd_one = physics.gaussian_binned_spectrum(grf_power(32, 3.0, 0.25))
    se = sd_one / math.sqrt(n)  # exact standard error of each band's batch mean (module docstring of physics)
    z = (sp.power - mean) / se
    assert np.abs(z).max() < 4.5, z  # 16 independent, nearly normal bands: P(max |z| > 4.5) ~ 1e-4
    assert np.abs(sp.power / mean - 1).max() < 0.03  # in words: every band within 3 % at n = 2000
    assert np.allclose(sp.stderr / se, 1, atol=0.1)  # the measured scatter is the analytic one
    # the power law itself: log-log slope of the analytic binned spectrum near -alpha
    slope = np.polyfit(np.log(sp.k_mean[2:]), np.log(sp.power[2:]), 1)[0]
    assert -3.2 < slope < -2.8


def test_octave_bands_pool_the_unit_bins_by_mode_count():
    edges = physics.octave_edges(32)
    assert edges.tolist() == [0.5, 1.5, 3.5, 7.5, 16.5] and physics.octave_edges(64).tolist()[-2:] == [15.5, 32.5]
    ds = make_grf(300, seed=6)
    fine, bands = physics.power_spectrum(ds.x), physics.power_spectrum(ds.x, edges)
    assert bands.counts.sum() == fine.counts.sum() and bands.k.tolist() == [1, 2.5, 5.5, 12]
    for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):  # a band = the mode-weighted mean of its bins
        inside = (fine.k > lo) & (fine.k < hi)
        pooled = (fine.power[inside] * fine.counts[inside]).sum() / fine.counts[inside].sum()
        assert bands.counts[j] == fine.counts[inside].sum() and math.isclose(bands.power[j], pooled, rel_tol=1e-12)
    # against the analytic band spectrum, with its exact per-band scatter
    mean, sd_one = physics.gaussian_binned_spectrum(grf_power(32, 3.0, 0.25), edges)
    assert np.abs((bands.power - mean) / (sd_one / math.sqrt(300))).max() < 4.5
    assert np.allclose(bands.stderr / (sd_one / math.sqrt(300)), 1, atol=0.2)
    with pytest.raises(ValueError, match="hold no modes"):
        physics.power_spectrum(ds.x, [0.5, 0.6, 16.5])


def test_grf_batches_agree_and_a_different_alpha_is_caught():
    a, b = make_grf(1000, seed=10).x, make_grf(1000, seed=11).x
    report = physics.compare_fields(a, b)
    assert report.passed and report.band_ok.all(), report.rel_err
    assert np.abs(report.rel_err / report.sigma_rel).max() < 4.5
    assert report.hist_tv < 0.02 + report.hist_tv_floor and report.w1 < 0.01
    other = physics.compare_fields(make_grf(1000, seed=12, alpha=2.0).x, b)
    assert not other.passed and not other.band_ok[-4:].any()  # alpha 2 has far more small-scale power
    wide = physics.compare_fields(1.3 * a, b)  # the right shape but the wrong amplitude
    assert not wide.passed and wide.hist_tv > 0.05


@pytest.mark.parametrize("sampler,steps,passes", [("heun", 50, True), ("ddpm", 100, False)])
def test_samplers_on_the_exact_grf_denoiser(sampler, steps, passes):
    """The grf's exact denoiser (a Wiener filter) through our samplers, judged by `compare_fields` as the physics
    benchmark judges models. Heun reproduces the spectrum; 100 strided DDPM steps do not: with fixed-small
    variance each step drops the posterior variance of x0, so modes whose power is near the step's noise level
    (the fine scales) come out too weak. That is why the physics benchmark samples grf with heun."""
    from oracles import FieldOracle

    import diffusekit as dk

    oracle = FieldOracle(grf_power(32, 3.0, 0.25))
    sigmas = dk.DiscreteSchedule().sigmas(steps, dk.SamplerConfig(sampler, steps).resolved_spacing)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 32, 32, generator=g, dtype=torch.float64) * math.sqrt(1 + float(sigmas[0]) ** 2)
    x = dk.get_sampler(sampler)(oracle, x, sigmas, generator=g).float()
    report = physics.compare_fields(x, make_grf(2000, seed=8).x)
    assert report.passed == passes, (report.rel_err, report.hist_tv)
    if not passes:  # too little power, and most missing at the finest scales
        assert (report.rel_err < 0).all() and report.rel_err[-1] < -0.3, report.rel_err


def test_band_tolerance_uses_the_data_scatter_not_the_samples():
    """A few fields with 16x the power put the mean 47 % too high; their scatter must not excuse it."""
    edges = physics.octave_edges(32)
    b = make_grf(1000, seed=20).x
    a = make_grf(256, seed=21).x.clone()
    a[:8] *= 4.0
    pa, pb = physics.power_spectrum(a, edges), physics.power_spectrum(b, edges)
    own = physics.compare_spectra(pa, pb)  # sigma from the samples' own scatter: wide enough to pass every band
    assert (np.abs(own["rel_err"]) <= 0.1 + 3 * own["sigma_rel"]).all() and (own["rel_err"] > 0.4).all()
    null = physics.compare_spectra(pa, pb, null=True)
    assert (null["sigma_rel"] < own["sigma_rel"] / 3).all()
    assert not physics.compare_fields(a, b).band_ok.any()
    same = physics.compare_fields(make_grf(256, seed=22).x, b)  # drawn like the data: passes
    assert same.band_ok.all()


def test_grf_one_point_histogram_is_gaussian():
    x = make_grf(1000, seed=5).x
    h = physics.one_point_histogram(x)
    edges = physics.HIST_EDGES
    cdf = np.array([0.5 * (1 + math.erf(e / (0.25 * math.sqrt(2)))) for e in edges])
    expected = np.diff(cdf)
    expected[0] += cdf[0]  # values beyond the edges are counted in the end bins
    expected[-1] += 1 - cdf[-1]
    assert math.isclose(h.sum(), 1) and physics.histogram_distance(h, expected) < 0.01


# ---- video metrics --------------------------------------------------------------------------------------------


def test_frame_differences_and_temporal_consistency(mnist5k):
    still = torch.zeros(2, 1, 5, 4, 4)
    assert np.array_equal(physics.frame_differences(still), np.zeros((2, 4)))
    blink = torch.zeros(1, 1, 3, 4, 4)
    blink[:, :, 1] = 1  # 0 -> 1 -> 0
    assert np.allclose(physics.frame_differences(blink), [[1, 1]])
    ds = make_moving_digits(400, seed=0, digits=mnist5k)
    same = physics.compare_videos(make_moving_digits(400, seed=1, digits=mnist5k).x, ds.x)
    assert same["frame_diff"] < 3 * same["frame_diff_floor"] + 1e-3
    shuffled = ds.x[torch.randperm(400, generator=torch.Generator().manual_seed(0))]
    flicker = shuffled.clone()
    flicker[:, :, 1::2] = ds.x[:, :, 1::2]  # odd frames from other clips: jumps between frames
    bad = physics.compare_videos(flicker, ds.x)
    assert bad["mean_samples"] > 1.5 * bad["mean_data"] and bad["frame_diff"] > 10 * same["frame_diff_floor"]


def test_per_frame_features_tell_real_frames_from_broken_ones(mnist5k):
    """Frechet distance in mnist5k classifier features of every frame (32x32 frames resized to the classifier's
    28x28): two disjoint sets of real clips are close (the floor); blurred or faded digits are not. At 100 clips
    the floor itself varies ~2x between seeds (frames of one clip show the same digits), hence the wide margins."""
    from diffusekit.eval import frechet_distance_from_features as fd

    a, b = (make_moving_digits(100, seed=s, digits=mnist5k).x for s in (20, 21))
    fa = physics.frame_features(a)
    assert fa.shape == (800, 128) and np.isfinite(fa).all()
    floor = fd(physics.frame_features(b), fa)
    blurred = F.avg_pool3d(b, (1, 3, 3), stride=1, padding=(0, 1, 1), count_include_pad=False)  # per frame
    faded = 0.5 * b - 0.5  # digits at half intensity on the same black background
    assert fd(physics.frame_features(blurred), fa) > 2 * floor and fd(physics.frame_features(faded), fa) > 5 * floor
    with pytest.raises(ValueError, match="expected clips"):
        physics.frame_features(a[:, :, 0])


# ---- pictures -------------------------------------------------------------------------------------------------


def test_clip_gif_and_strip(tmp_path, mnist5k):
    ds = make_moving_digits(6, seed=0, frames=10, digits=mnist5k)
    path = save_clip_gif(ds.x, tmp_path / "clips.gif", nrow=3, upscale=2)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 10
        assert im.size == (3 * (64 + 2) + 2, 2 * (64 + 2) + 2)  # viz grid: ncol * (W*s + pad) + pad
        frames = []
        for t in range(im.n_frames):
            im.seek(t)
            frames.append(np.asarray(im.convert("L")).copy())
            assert im.info.get("duration") == 120
    assert not np.array_equal(frames[0], frames[5])  # the digits move
    strip = save_clip_strip(ds.x[0], tmp_path / "strip.png", upscale=2)  # one clip (C, T, H, W)
    with Image.open(strip) as im:
        assert im.format == "PNG" and im.size[0] == 10 * (64 + 2) + 2 and im.size[1] == 14 + 64 + 2 + 2
    rows = save_clip_strip(ds.x[:3], tmp_path / "rows.png", upscale=2, captions=False)
    with Image.open(rows) as im:
        assert im.size == (10 * 66 + 2, 3 * 66 + 2)
    with pytest.raises(ValueError, match=r"expected clips \(B, C, T, H, W\)"):
        save_clip_gif(torch.zeros(2, 2, 3, 8, 8), tmp_path / "x.gif")


def test_save_samples_picks_the_picture_by_shape(tmp_path, mnist5k):
    from diffusekit.viz_signals import save_samples

    clips = make_moving_digits(3, seed=0, digits=mnist5k).x
    with Image.open(save_samples(clips, tmp_path / "v.gif")) as im:
        assert im.format == "GIF" and im.n_frames == 8
    with Image.open(save_samples(clips, tmp_path / "v.png")) as im:
        assert im.format == "PNG" and im.size[1] > im.size[0] / 8 * 2  # 3 rows of 8 frames
    with Image.open(save_samples(make_grf(4).x, tmp_path / "f.png")) as im:
        assert im.format == "PNG"
    save_samples(torch.zeros(2, 1, 512), tmp_path / "s.png", rate=8000)
    assert (tmp_path / "s.png").is_file() and (tmp_path / "s-spectrogram.png").is_file()


# ---- a user's folder of clips ------------------------------------------------------------------------------


def _gif(path, frames):
    """frames (T, H, W) or (T, H, W, 3) uint8 -> an animated GIF, every frame kept (no optimisation)."""
    ims = [Image.fromarray(f) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=100, loop=0, optimize=False, disposal=1)


def test_clip_folder_reads_gifs_exactly_with_labels(tmp_path):
    from diffusekit.data import load_data

    rng = np.random.default_rng(0)
    levels = np.array([0, 51, 102, 153, 204, 255], np.uint8)  # gray levels a GIF palette keeps exactly
    truth = {}
    for cls in ("left", "right"):
        for i in range(2):
            clip = levels[rng.integers(0, len(levels), (6, 12, 10))]
            _gif(tmp_path / cls / f"{i}.gif", clip)
            truth[(cls, i)] = clip
    ds = load_data(tmp_path)
    assert ds.x.shape == (4, 1, 6, 12, 10) and ds.class_names == ["left", "right"]
    assert ds.labels.tolist() == [0, 0, 1, 1]
    for k, key in enumerate(sorted(truth)):
        assert torch.equal(ds.x[k, 0], torch.from_numpy(truth[key]).float() / 127.5 - 1)
    rgb = np.zeros((4, 8, 8, 3), np.uint8)
    rgb[..., 0] = np.array([255, 204, 153, 102], np.uint8)[:, None, None]  # red frames (distinct: a GIF writer
    _gif(tmp_path / "rgb" / "a.gif", rgb)                                   # merges repeated frames) stay RGB
    _gif(tmp_path / "rgb" / "b.gif", rgb[..., ::-1].copy())
    two = load_data(tmp_path / "rgb")
    assert two.x.shape == (2, 3, 4, 8, 8) and two.x[0, 0, 0].eq(1).all() and two.x[1, 2, 0].eq(1).all()
    assert two.x[0, 1:].eq(-1).all() and two.x[1, :2].eq(-1).all()


def test_clip_folder_bad_input_says_what_to_do(tmp_path):
    from diffusekit.data import DataError, load_data
    from diffusekit.data.video import load_clip_folder

    rng = np.random.default_rng(1)
    for name, t in (("a.gif", 8), ("b.gif", 8), ("c.gif", 5)):
        _gif(tmp_path / "clips" / name, rng.integers(0, 255, (t, 8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match=r"different lengths \(8 frames \(2 files, e\.g\. a\.gif\), 5 frames "
                                        r"\(1 file: c\.gif\)\); pass fit='crop'"):
        load_data(tmp_path / "clips")
    cropped = load_clip_folder(tmp_path / "clips", fit="crop")
    assert cropped.x.shape == (3, 1, 5, 8, 8) and "cropped to their first 5 frames" in cropped.notes[0]
    _gif(tmp_path / "sizes" / "a.gif", rng.integers(0, 255, (3, 8, 8), dtype=np.uint8))
    _gif(tmp_path / "sizes" / "b.gif", rng.integers(0, 255, (3, 8, 9), dtype=np.uint8))
    with pytest.raises(DataError, match="different frame sizes .*resize them"):
        load_data(tmp_path / "sizes")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.gif").write_bytes(b"GIF89a not really")
    with pytest.raises(DataError, match="x.gif: not a readable GIF"):
        load_data(tmp_path / "broken")
