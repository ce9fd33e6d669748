"""`diffusekit serve` as a user meets it: a real uvicorn process, the page in a real headless Chromium (Debian's
`chromium`, installed by scripts/install.sh, driven by Playwright). Generate and watch the preview change, compare
the result with `diffusekit sample`, cancel a long job, draw an inpainting mask and run it, drop a result PNG back
onto the page. The screenshot is kept in test-artifacts/web-page.png."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from diffusekit.train import TrainConfig, train

CHROMIUM = "/usr/bin/chromium"
# As root in a container, with no network: no sandbox, no GPU, nothing that phones home.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
ARTIFACTS = Path(os.environ.get("DIFFUSEKIT_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, phantoms_run):
    root = tmp_path_factory.mktemp("browser")
    digits = train(TrainConfig(out=str(root / "digits"), data="digits", model="tiny", steps=3, batch_size=16,
                               warmup_steps=2, num_grid=4, sample_steps=2), progress=False)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "diffusekit", "serve", str(digits), str(phantoms_run), "--port",
                             str(port), "--outputs", str(root / "outputs")], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() - t0 < 120, "the server did not start"
            time.sleep(0.2)
    yield {"url": url, "digits": digits, "outputs": root / "outputs", "root": root}
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page(served):
    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed: run scripts/install.sh"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(served["url"])
        page.wait_for_function("document.querySelectorAll('#model option').length === 2")
        yield page
        assert not errors, errors
        browser.close()


def jobs(page):
    return page.evaluate("fetch('/api/jobs').then(r => r.json())")


def wait_status(page, text, timeout=120_000):
    page.wait_for_function(f"document.getElementById('status').textContent.startsWith({json.dumps(text)})",
                           timeout=timeout)


def test_generate_live_and_equal_to_the_cli(page, served, dk, tmp_path):
    page.select_option("#model", "digits")
    page.fill("#steps", "12")
    page.fill("#seed", "7")
    page.fill("#num", "4")
    page.evaluate("""() => { window.previews = 0;
        new MutationObserver((records) => window.previews += records.length).observe(document.getElementById('preview-x0'),
                                                              {attributes: true, attributeFilter: ['src']}); }""")
    page.click("#run")
    wait_status(page, "done")
    assert page.evaluate("window.previews") >= 3
    page.wait_for_function("document.getElementById('result-img') && document.getElementById('result-img').naturalWidth > 0")
    job = jobs(page)[0]
    assert job["params"] == {"task": "generate", "sampler": "dpmpp-2m", "steps": 12, "seed": 7, "num": 4,
                             "options": {}, "guidance": 1.0}
    dk("sample", served["digits"], "--num", 4, "--steps", 12, "--seed", 7, "--out", tmp_path / "cli.npz")
    served_images = np.load(served["outputs"] / job["id"] / "samples.npz")["images"]
    assert np.array_equal(served_images, np.load(tmp_path / "cli.npz")["images"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)


def test_cancel_a_long_job(page):
    page.select_option("#sampler", "ddpm")
    page.fill("#steps", "1000")
    page.fill("#num", "64")
    page.click("#run")
    page.wait_for_function("/^step \\d+/.test(document.getElementById('status').textContent)")
    page.click("#cancel")
    wait_status(page, "cancelled", timeout=30_000)
    job = jobs(page)[0]
    assert job["state"] == "cancelled" and 0 < job["step"] < 1000


def test_draw_a_mask_and_inpaint(page, served):
    page.select_option("#model", "run")  # the phantoms run
    page.click("#task-inpaint")
    page.wait_for_function("document.getElementById('recon-input').naturalWidth > 0")
    box = page.locator("#mask-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(box["x"] + box["width"] * (0.3 + 0.04 * k), box["y"] + box["height"] * 0.5, steps=2)
    page.mouse.up()
    page.fill("#recon-steps", "5")
    page.click("#run")
    wait_status(page, "done")
    page.wait_for_function("document.getElementById('result-img').naturalWidth > 0")
    job = jobs(page)[0]
    assert job["params"]["task"] == "inpaint" and "side_by_side.png" in job["files"]
    from PIL import Image

    mask = np.asarray(Image.open(served["outputs"] / job["id"] / "mask.png").convert("L"))
    missing = mask < 128
    assert 0 < missing.mean() < 0.5 and missing[6:10].any()  # the stroke, across the middle


def test_drop_a_result_png_to_restore_its_settings(page, served):
    done = [j for j in jobs(page) if j["state"] == "done" and j["params"]["task"] == "generate"][0]
    data = list((served["outputs"] / done["id"] / "samples.png").read_bytes())
    page.select_option("#model", "run")
    page.click("#task-generate")
    page.fill("#steps", "3")
    page.evaluate("""(bytes) => {
        const file = new File([new Uint8Array(bytes)], 'samples.png', {type: 'image/png'});
        const dt = new DataTransfer(); dt.items.add(file);
        document.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", data)
    wait_status(page, "settings restored", timeout=10_000)
    assert page.input_value("#model") == "digits"
    assert page.input_value("#steps") == "12" and page.input_value("#seed") == "7"


def test_forward_slider(page):
    page.select_option("#model", "digits")
    page.click("#task-forward")
    page.wait_for_function("document.getElementById('fwd-xt').naturalWidth > 0")
    before = page.get_attribute("#fwd-xt", "src")
    page.fill("#t-slider", "900")
    page.dispatch_event("#t-slider", "input")
    page.wait_for_function("document.getElementById('fwd-facts').textContent.startsWith('t = 900')")
    assert page.get_attribute("#fwd-xt", "src") != before
