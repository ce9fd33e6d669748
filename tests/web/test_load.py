"""A small load on a real `diffusekit serve` process (the full one, 50 clients and 200 jobs over a minute, is
benchmarks/serve_load.py, BENCHMARKS.md section 11): more clients than the queue holds, so some are refused with
429 and retry; none gets another error, and no accepted job is lost."""

import importlib.util
from pathlib import Path

import httpx

from diffusekit.train import TrainConfig, train

SPEC = importlib.util.spec_from_file_location("serve_load", Path(__file__).parents[2] / "benchmarks" / "serve_load.py")
serve_load = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(serve_load)


def test_many_clients_no_job_lost(tmp_path, monkeypatch):
    monkeypatch.setitem(serve_load.JOB, "steps", 100)  # jobs long enough that the queue of 2 fills
    run = train(TrainConfig(out=str(tmp_path / "digits"), data="digits", model="tiny", steps=2, batch_size=16,
                            warmup_steps=2, num_grid=4, sample_steps=2), progress=False)
    proc, url = serve_load.start_server(run, tmp_path / "outputs", queue=2)
    try:
        model = httpx.get(f"{url}/api/models").json()[0]["name"]
        res = serve_load.run_load(url, proc.pid, model, clients=12, jobs=30, seconds=3)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert res["errors_other_than_429"] == 0 and res["lost"] == 0
    assert res["accepted"] == res["done"] == 30
    assert res["refused_429_then_retried"] > 0  # the queue (2) was full at times: 429s happened and were retried
