"""The HTTP API of `diffusekit serve`, in process (Starlette's test client over the real app, real models, real
worker threads): every endpoint, every kind of data, the queue (429, positions, cancel), the bad inputs and the token.
The same app in a real uvicorn process and a real browser: tests/e2e/test_web_browser.py."""

import base64
import io
import json
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from diffusekit.model import TrainedModel
from diffusekit.train import TrainConfig, train
from diffusekit.web import check_binding
from diffusekit.web.app import Server, create_app
from diffusekit.web.models import load_models

TINY = dict(model="tiny", batch_size=16, log_every=1, checkpoint_every=100, warmup_steps=2, num_grid=4,
            sample_steps=2, precision="fp32")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, phantoms_run):
    root = tmp_path_factory.mktemp("web-runs")
    made = {"phantoms": phantoms_run}
    for name, extra in {"digits": {}, "digits-label": {"cond": "label"}, "waves": {"data": "waves"},
                        "grf": {"data": "grf"}, "moving-digits": {"data": "moving-digits", "batch_size": 4}}.items():
        cfg = {**TINY, "data": "digits", **extra}
        made[name] = train(TrainConfig(out=str(root / name), steps=2, **cfg), progress=False)
    return made


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    s = Server(load_models(list(runs.values())), tmp_path_factory.mktemp("outputs"), max_waiting=2)
    yield s
    s.queue.close()


@pytest.fixture(scope="module")
def client(server):
    with TestClient(create_app(server)) as c:
        yield c


def wait(client, job_id, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")


def submit(client, **body):
    r = client.post("/api/jobs", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def png_data_url(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_models_lists_every_model_with_its_tasks(client):
    models = {m["name"]: m for m in client.get("/api/models").json()}
    assert set(models) == {"run", "digits", "digits-label", "waves", "grf", "moving-digits"}
    assert models["run"]["tasks"] == ["generate", "inpaint", "superres", "mri"]  # the phantoms run
    assert models["waves"]["kind"] == "signal" and models["waves"]["tasks"] == ["generate"]
    assert models["moving-digits"]["kind"] == "video" and models["grf"]["kind"] == "field"
    assert models["digits-label"]["cond"] == "label" and models["digits-label"]["class_names"][3] == "3"
    euler = models["digits"]["samplers"]["euler"]
    assert set(euler) == {"s_churn", "s_tmin", "s_tmax", "s_noise"} and euler["s_tmax"] == "inf"  # JSON has no inf


def test_generate_streams_previews_and_equals_the_library_call(client, server, runs):
    job = submit(client, model="digits", sampler="dpmpp-2m", steps=6, seed=7, num=5)
    assert job["position"] == 1 and job["params"]["seed"] == 7
    events = []
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as r:
        kind = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
                if kind in ("done", "failed", "cancelled"):
                    break
    progress = [e for k, e in events if k == "progress"]
    assert [e["step"] for e in progress] == [1, 2, 3, 4, 5, 6] and all(e["total"] == 6 for e in progress)
    previews = {e["x0_hat"] for e in progress}
    assert len(previews) >= 3 and all(p.startswith("data:image/png;base64,") for p in previews)
    kind, done = events[-1]
    assert kind == "done" and "samples.npz" in done["files"] and "image-004.png" in done["files"]
    got = np.load(io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/samples.npz").content))["images"]
    want = TrainedModel.load(runs["digits"]).sample(5, sampler="dpmpp-2m", steps=6, seed=7, batch=64)
    from diffusekit.data import to_uint8

    assert np.array_equal(got, to_uint8(want))
    png = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/samples.png").content))
    assert json.loads(png.text["parameters"]) == {"model": "digits", **job["params"]}


def test_every_data_kind_writes_its_files(client):
    cases = {"digits-label": ({"label": 3, "guidance": 2.0}, {"samples.png", "samples.npz", "image-000.png"}),
             "waves": ({}, {"samples.png", "samples.npz", "wav/sample-0000.wav"}),
             "grf": ({}, {"spectrum.png", "samples.png"}),
             "moving-digits": ({}, {"samples.gif", "samples.npz"})}
    for model, (extra, files) in cases.items():
        job = wait(client, submit(client, model=model, steps=2, num=2, **extra)["id"])
        assert job["state"] == "done", job["error"]
        assert files <= set(job["files"]), (model, job["files"])
        for f in files:
            r = client.get(f"/api/jobs/{job['id']}/files/{f}")
            assert r.status_code == 200 and len(r.content) > 40
    assert job["result"]["labels"] is None
    labelled = [j for j in client.get("/api/jobs").json() if j["model"] == "digits-label"][0]
    assert labelled["result"]["labels"] == [3, 3]


def test_reconstruct_with_a_drawn_mask_and_with_an_example(client, server):
    side = 16
    mask = np.full((side, side), 255, np.uint8)
    mask[4:12, 4:12] = 0  # the painted (missing) square
    image = np.asarray(Image.open(io.BytesIO(client.get("/api/models/run/examples/0.png").content)).convert("L"))
    assert image.shape[0] >= side  # the example picture, enlarged for the page
    job = wait(client, submit(client, model="run", task="inpaint", steps=4, image=png_data_url(
        np.asarray(Image.fromarray(image).resize((side, side)))), mask=png_data_url(mask))["id"])
    assert job["state"] == "done", job["error"]
    assert {"side_by_side.png", "reconstruction.png", "metrics.json"} <= set(job["files"])
    kept = np.asarray(Image.open(server.outputs / job["id"] / "mask.png"))
    assert (kept == mask).all()
    for task, extra in (("superres", {"scale": 4}), ("mri", {"acceleration": 4})):
        job = wait(client, submit(client, model="run", task=task, steps=3, example=2, **extra)["id"])
        assert job["state"] == "done", job["error"]
        assert job["result"]["metrics"]["reconstruction"]["psnr"] > 0


def test_forward_process_matches_the_closed_form(client, server):
    r = client.post("/api/forward", json={"model": "digits", "t": 0, "example": 1}).json()
    sched = server.models["digits"].model.schedule
    assert r["alpha_bar"] == pytest.approx(float(sched.alphas_cumprod[0]))
    late = client.post("/api/forward", json={"model": "digits", "t": 999, "example": 1}).json()
    assert late["snr"] < 1e-3 < r["snr"] and late["x_t"] != r["x_t"] and late["x0"] == r["x0"]
    up = client.post("/api/forward", json={"model": "digits", "t": 500, "image": png_data_url(
        np.random.default_rng(0).integers(0, 255, (20, 30), dtype=np.uint8))})
    assert up.status_code == 200 and up.json()["x_t"].startswith("data:image/png")
    bad = client.post("/api/forward", json={"model": "waves", "t": 5, "image": png_data_url(np.zeros((8, 8), np.uint8))})
    assert bad.status_code == 400 and "examples" in bad.json()["error"]


def huge_png_header() -> bytes:
    """A PNG that declares 100,000 x 100,000 pixels in a few bytes (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


BAD = [
    ({"model": "nope"}, 404, "no model 'nope'; this server has"),
    ({"model": "digits", "sampler": "magic"}, 400, "unknown sampler 'magic'"),
    ({"model": "digits", "steps": 0}, 400, "steps must be an integer in [1, 1000]"),
    ({"model": "digits", "steps": 5000}, 400, "steps must be"),
    ({"model": "digits", "steps": "20"}, 400, "steps must be an integer"),
    ({"model": "digits", "num": 65}, 400, "num must be an integer in [1, 64]"),
    ({"model": "digits", "seed": -1}, 400, "seed must be"),
    ({"model": "digits", "guidance": float("nan")}, 400, "guidance must be a number"),
    ({"model": "digits", "label": 3}, 400, "not class-conditional"),
    ({"model": "digits-label", "label": 10}, 400, "label must be an integer in [0, 9]"),
    ({"model": "digits", "prompt": "a cat"}, 400, "not text-conditioned"),
    ({"model": "digits", "options": {"warp": 1}}, 400, "unknown option(s) ['warp']"),
    ({"model": "digits", "options": [1]}, 400, "options must be a JSON object"),
    ({"model": "digits", "sampler": "ddim", "options": {"eta": {"x": 1}}}, 400, "option eta must be a number"),
    ({"model": "waves", "task": "inpaint"}, 400, "does not do task 'inpaint'"),
    ({"model": "run", "task": "inpaint"}, 400, "give an image"),
    ({"model": "run", "task": "inpaint", "image": "%%%"}, 400, "image is not valid base64"),
    ({"model": "run", "task": "inpaint", "image": base64.b64encode(b"not an image").decode()}, 400,
     "image: not an image Pillow can read"),
    ({"model": "run", "task": "inpaint", "image": base64.b64encode(huge_png_header()).decode()}, 413,
     "is larger than 4096x4096 pixels"),
    ({"model": "run", "task": "superres", "example": 0, "mask": png_data_url(np.zeros((16, 16), np.uint8))}, 400,
     "a mask is for the inpaint task"),
    ({"model": "run", "task": "inpaint", "example": 0, "mask_kind": "star"}, 400, "mask_kind must be one of"),
    ({"model": "run", "task": "mri", "example": 0, "acceleration": 0.5}, 400, "acceleration must be a number in"),
]


@pytest.mark.parametrize("body, status, message", BAD, ids=[m[:24] for _, _, m in BAD])
def test_bad_requests_answer_4xx_with_a_message(client, body, status, message):
    r = client.post("/api/jobs", content=json.dumps(body, allow_nan=True), headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_bad_bodies_and_paths(client, server):
    assert client.post("/api/jobs", content=b"{not json").json()["error"] == "the request body must be JSON"
    assert client.post("/api/jobs", json=[1, 2]).status_code == 400
    big = client.post("/api/jobs", content=b" " * (13 * 2**20), headers={"content-type": "application/json"})
    assert big.status_code == 413
    assert client.get("/api/jobs/0123456789abcdef").status_code == 404
    job = wait(client, submit(client, model="digits", steps=1, num=1)["id"])
    (server.outputs / "secret.txt").write_text("not for clients")
    for name in ("../secret.txt", "..%2Fsecret.txt", "%2e%2e/secret.txt", "/etc/passwd", "samples.npz/../../secret.txt"):
        r = client.get(f"/api/jobs/{job['id']}/files/{name}")
        assert r.status_code == 404 and b"not for clients" not in r.content, name
    assert client.get("/api/models/nope/examples/0.png").status_code == 404


def test_the_queue_is_bounded_reports_positions_and_cancels(client):
    # server: max_waiting=2. A long job runs; two wait (places 1 and 2); the fourth is refused with 429.
    running = submit(client, model="waves", sampler="ddpm", steps=1000, num=16)
    t0 = time.time()
    while client.get(f"/api/jobs/{running['id']}").json()["step"] < 2:
        assert time.time() - t0 < 60
        time.sleep(0.02)
    a, b = submit(client, model="waves", steps=2, num=1), submit(client, model="waves", steps=2, num=1)
    assert (a["position"], b["position"]) == (1, 2)
    full = client.post("/api/jobs", json={"model": "waves", "steps": 2})
    assert full.status_code == 429 and "queue" in full.json()["error"]
    other = submit(client, model="digits", steps=1, num=1)  # another model has its own queue
    assert client.post(f"/api/jobs/{a['id']}/cancel").json()["state"] == "cancelled"
    assert client.get(f"/api/jobs/{b['id']}").json()["position"] == 1
    client.post(f"/api/jobs/{running['id']}/cancel")
    stopped = wait(client, running["id"], timeout=30)
    assert stopped["state"] == "cancelled" and stopped["step"] < 1000
    assert wait(client, b["id"])["state"] == "done" and wait(client, other["id"])["state"] == "done"
    listing = {j["id"]: j["state"] for j in client.get("/api/jobs").json()}
    assert listing[a["id"]] == "cancelled" and listing[b["id"]] == "done"


def test_a_random_seed_is_drawn_and_recorded(client):
    job = submit(client, model="digits", steps=1, num=1, seed="random")
    assert isinstance(job["params"]["seed"], int)


def test_token(runs, tmp_path):
    s = Server(load_models([runs["digits"]]), tmp_path, token="s3cret")
    with TestClient(create_app(s)) as c:
        assert c.get("/api/models").status_code == 401
        assert c.get("/api/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/models?token=s3cret").status_code == 200
        assert c.get("/").status_code == 200  # the page itself holds nothing; it asks the API with the token
    s.queue.close()
    with pytest.raises(ValueError, match="give --token SECRET"):
        check_binding("0.0.0.0", None)
    check_binding("0.0.0.0", "s3cret")
    check_binding("127.0.0.1", None)
    check_binding("::1", None)


def test_serving_something_that_is_not_a_run(tmp_path, dk):
    r = dk("serve", tmp_path, "--port", "7999", check=False)
    assert r.returncode == 2 and "is not a diffusekit run directory" in r.stderr
    r = dk("serve", tmp_path, "--host", "0.0.0.0", check=False)
    assert r.returncode == 2 and "--token" in r.stderr and "Traceback" not in r.stderr
