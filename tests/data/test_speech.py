"""`spoken-digits` (eSpeak NG clips), its judge (`eval.audio`) and WAV clips given to the judge: tiny recipes of a
few clips, so each test builds in about a second; the full data set only in the test marked slow."""

import shutil

import numpy as np
import pytest
import torch

from diffusekit.data import DataError, load_data
from diffusekit.data import speech
from diffusekit.data.speech import LENGTH, RATE, WORDS, SpeechRecipe, build, load_spoken_digits, load_wav_clips
from diffusekit.data.wav import WavError, write_wav
from diffusekit.eval.audio import inception_score, judge_speech
from diffusekit.eval.classifier import classifier_outputs, load_classifier, mel_filters

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed "
                                  "(scripts/install.sh installs it)")
TINY = SpeechRecipe(n_train=12, n_test=6)


@pytest.fixture(scope="module")
def tiny(own_cache):
    return build(TINY, processes=1, progress=False)


@needs_espeak
def test_recipe_is_deterministic_for_a_seed_and_changes_with_it(tiny):
    arrays, meta = tiny
    again, _ = build(TINY, processes=2, progress=False)  # another process count: the same clips
    assert arrays.keys() == again.keys() and all(np.array_equal(arrays[k], again[k]) for k in arrays)
    other, _ = build(SpeechRecipe(n_train=12, n_test=6, seed=1), processes=1, progress=False)
    assert not np.array_equal(arrays["train_x"], other["train_x"])
    assert meta["espeak"].startswith("eSpeak NG") and meta["recipe"]["seed"] == 0 and meta["rate"] == RATE


@needs_espeak
def test_clips_rate_length_level_labels_and_held_out_voices(tiny):
    arrays, meta = tiny
    ds = load_spoken_digits("train", TINY)  # through the cache of own_cache: built once more, then read
    assert ds.rate == RATE == 8000 and ds.x.shape == (12, 1, LENGTH) and LENGTH == RATE  # one second
    assert ds.x.dtype == torch.float32 and ds.labels.tolist() == [i % 10 for i in range(12)]
    assert ds.class_names == list(WORDS)
    peak = ds.x.abs().amax((1, 2))
    assert torch.allclose(peak, ds.params["peak"], rtol=1e-5)  # the drawn level, exactly
    assert float(peak.min()) >= TINY.peak[0] - 1e-6 and float(peak.max()) <= TINY.peak[1] + 1e-6
    edge = ds.x[..., :200].abs().amax(-1).flatten()  # the first 25 ms: room noise only, no word
    assert torch.all(edge < 0.5 * peak)
    train, test = set(meta["train_voices"]), set(meta["test_voices"])
    assert not train & test and len(test) == TINY.test_voices and len(train) > 50
    assert set(np.unique(arrays["test_voice"])) <= set(range(len(test)))
    assert torch.equal(load_spoken_digits("train", TINY).x, ds.x)  # read back from the cache


@needs_espeak
def test_builtin_name_options_and_missing_program(tiny, monkeypatch):
    ds = load_data("spoken-digits", options={"n_train": 12, "n_test": 6})
    assert ds.x.shape == (12, 1, 8000) and ds.name == "spoken-digits"
    with pytest.raises(DataError, match="unknown data option"):
        load_data("spoken-digits", options={"n_clips": 3})
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="needs the espeak-ng program.*apt-get install espeak-ng"):
        load_data("spoken-digits", options={"n_train": 20, "n_test": 10, "seed": 5})


def test_mel_filters_put_a_tone_in_the_band_centred_nearest_it():
    w = mel_filters(8000, 256, 40, 20.0, 4000.0)  # (40, 129)
    assert w.shape == (40, 129) and float(w.min()) >= 0 and float(w.max()) <= 1
    centres = w.argmax(1)
    assert torch.all(centres[1:] >= centres[:-1])  # ordered by frequency
    f = 1000.0  # Hz, on the FFT grid (bin 32)
    band = int(w[:, 32].argmax())
    mel = lambda hz: 2595 * np.log10(1 + hz / 700)  # noqa: E731
    edges = np.linspace(mel(20), mel(4000), 42)
    assert band == int(np.abs(edges[1:-1] - mel(f)).argmin())


def test_inception_score_bounds():
    k = 10
    confident = torch.eye(k).repeat(5, 1) * 50  # every class equally often, certain: IS = K
    assert inception_score(confident) == pytest.approx(k, rel=1e-6)
    assert inception_score(torch.zeros(50, k)) == pytest.approx(1.0)  # no confidence: 1
    assert inception_score(torch.eye(k)[[3] * 50] * 50) == pytest.approx(1.0, abs=1e-6)  # one class only: 1


@needs_espeak
def test_judge_recognises_held_out_voices():
    """The shipped judge on the first 60 clips of the held-out voices (the default recipe's test clips: a test
    clip's settings depend only on the seed and its index, so this tiny recipe makes exactly those clips)."""
    clf = load_classifier("spoken-digits")
    assert clf.record["test_accuracy"] >= 0.95 and clf.cfg.rate == RATE
    test = load_spoken_digits("test", SpeechRecipe(n_train=10, n_test=60))
    _, logits = classifier_outputs(clf, test.x)
    acc = float((logits.argmax(1) == test.labels).double().mean())
    assert acc >= 0.9, acc


@needs_espeak
def test_judge_speech_scores_real_clips_well_and_noise_badly():
    real = load_spoken_digits("train", SpeechRecipe(n_train=60, n_test=10))
    kw = dict(real=(real.x, real.labels), n=20)
    good = judge_speech(real.x[40:], asked=real.labels[40:], **kw)
    noise = judge_speech(torch.randn(20, 1, LENGTH) * 0.1, asked=real.labels[40:], **kw)
    assert good["accuracy"]["value"] >= 0.9 and noise["accuracy"]["value"] <= 0.5
    assert good["fd"]["floor"] > 0 and noise["fd"]["value"] > 5 * noise["fd"]["floor"]
    assert good["is"]["value"] > 2 * noise["is"]["value"]
    with pytest.raises(ValueError, match=r"\(N, 1, 8000\)"):
        judge_speech(torch.zeros(20, 1, 4000), **kw)


def test_wav_clips_for_the_judge_convert_and_say_so(tmp_path):
    t = np.arange(16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    write_wav(tmp_path / "three" / "a.wav", tone, 16000)  # 16 kHz: resampled
    write_wav(tmp_path / "three" / "b.wav", np.stack([tone[:8000], tone[:8000]]), 8000)  # stereo: mixed to mono
    write_wav(tmp_path / "7" / "c.wav", tone[:4000], 8000)  # short: padded
    write_wav(tmp_path / "7" / "d.wav", np.zeros(8000), 8000)  # silence: kept, counted
    x, labels, notes = load_wav_clips(tmp_path)
    assert x.shape == (4, 1, 8000) and labels.tolist() == [7, 7, 3, 3]  # sorted paths: 7/c, 7/d, three/a, three/b
    text = " | ".join(notes)
    for said in ("1 file(s) at 16000 Hz resampled to 8000 Hz", "1 multi-channel file(s) mixed to mono",
                 "1 file(s) shorter than 8000 samples: zero-padded", "1 clip(s) are silence"):
        assert said in text, text
    spec = np.abs(np.fft.rfft(x[2, 0].double().numpy()))
    assert abs(spec.argmax() - 440) <= 1  # 1-Hz bins: the resampled tone is still at 440 Hz
    assert float(x[0, 0, :2000].abs().max()) == 0 and float(x[0, 0, 2000:6000].abs().max()) > 0.4
    data = (tmp_path / "7" / "c.wav").read_bytes()
    (tmp_path / "7" / "c.wav").write_bytes(data[:-100])  # truncated: the data chunk is shorter than declared
    with pytest.raises(WavError, match=r"c\.wav: truncated file"):
        load_wav_clips(tmp_path)


def test_silent_wavs_in_a_training_folder_are_counted_or_refused(tmp_path):
    write_wav(tmp_path / "a.wav", np.zeros(100), 8000)
    with pytest.raises(DataError, match="every WAV is silence"):
        load_data(tmp_path)
    write_wav(tmp_path / "b.wav", 0.5 * np.ones(100), 8000)
    ds = load_data(tmp_path)
    assert any("1 clips are silence" in n and "a.wav" in n for n in ds.notes)


@pytest.mark.slow
@needs_espeak
def test_judge_accuracy_on_every_held_out_clip_is_the_recorded_one():
    """The full default data set (built on first use, ~1.5 min): the shipped record's accuracy, recomputed."""
    clf = load_classifier("spoken-digits")
    test = load_spoken_digits("test")
    _, logits = classifier_outputs(clf, test.x, batch_size=250)
    assert float((logits.argmax(1) == test.labels).double().mean()) == pytest.approx(clf.record["test_accuracy"],
                                                                                     abs=1e-9)
