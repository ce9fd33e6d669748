"""Fault trials of `diffusekit serve` (benchmarks/web_faults.py, RELIABILITY.md "The web service"): the bounded mode
end to end against a real server process (60 connections at once, 600 hostile requests), then each bug those
trials found, in process. Counts are asserted, never times: a hang is an answer that did not come within the
script's bound, counted."""

import asyncio
import base64
import importlib.util
import io
import json
import math
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.testclient import TestClient

from diffusekit.train import TrainConfig, train
from diffusekit.web.app import Server, create_app, finite
from diffusekit.web.models import load_models
from diffusekit.web.params import BadRequest, check_forward, check_job

BENCH = Path(__file__).parents[2] / "benchmarks"


def load_script():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("web_faults", BENCH / "web_faults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train(TrainConfig(out=str(tmp_path_factory.mktemp("faults") / "digits"), data="digits", model="tiny",
                             steps=2, batch_size=16, warmup_steps=2, num_grid=4, sample_steps=2), progress=False)


def test_bounded_fault_trials_against_a_real_server(run):
    web_faults = load_script()
    size = web_faults.BOUNDED
    res = web_faults.run_trials(Path(run), size["connections"], size["requests"], size["slow_s"])
    v = web_faults.verdict(res)
    assert v == {"5xx": 0, "hangs": 0, "jobs_lost": 0, "jobs_not_ended": 0, "internal_errors": 0, "leaks": 0,
                 "tracebacks": 0, "alive": True, "files_outside_outputs": 0}, json.dumps(res, indent=1)[-6000:]
    c, r = res["connections"], res["requests"]
    assert c["connections"] == 60 and c["connect_failed"] == 0 and c["refusals_without_message"] == 0
    assert c["jobs"]["refused_429"] > 0 and c["jobs"]["accepted"] == c["jobs"]["finished_and_downloaded"] > 0
    assert c["downloads_complete_and_equal"] == c["answers_by_kind"]["download"].get("200")
    assert res["memory"]["connections"]["open_fds_peak"] >= 60  # all 60 were open at once
    assert r["requests"] == 600 and r["closed_without_answer_unexpected"] == 0
    assert r["oversize"]["answered_413"] == r["oversize"]["cases"]
    assert r["oversize"]["declared_answered_before_body"] == sum(
        1 for k, n in r["by_kind"].items() if k == "oversize-declared" for _ in range(n))


# ---- the bugs the trials found, each on its own ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(run, tmp_path_factory):
    s = Server(load_models([run]), tmp_path_factory.mktemp("outputs"), max_waiting=4)
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        yield c
    s.queue.close()


@pytest.mark.parametrize("body", [b'{"model": []}', b'{"model": {"a": 1}}', b'{"model": "digits", "sampler": {}}',
                                  b'{"model": "digits", "sampler": []}', b'{"model": "digits", "task": "inpaint", '
                                  b'"method": ["ddnm"], "example": 0}', b"[" * 100_000 + b"]" * 100_000,
                                  b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"])
def test_unhashable_names_and_deep_nesting_answer_400(client, body):
    # were 500: a list or object as the model / sampler name (TypeError: unhashable), RecursionError in json.loads
    r = client.post("/api/jobs", content=body)
    assert r.status_code in (400, 404) and r.json()["error"]


def test_an_infinite_option_is_answered_and_listed(client):
    # was: the job queued, then its answer failed to render (inf is not JSON) as a 400, and every later
    # GET /api/jobs answered 400 while the job stayed in the history. The models' listing offers s_tmax "inf".
    r = client.post("/api/jobs", json={"model": "digits", "sampler": "euler", "steps": 2, "num": 1,
                                       "options": {"s_tmax": "inf"}})
    assert r.status_code == 202 and r.json()["params"]["options"]["s_tmax"] == "inf"
    assert client.get("/api/jobs").status_code == 200
    assert client.get(f"/api/jobs/{r.json()['id']}").json()["params"]["options"] == {"s_tmax": "inf"}
    assert finite({"a": [math.inf, -math.inf, math.nan, 1.5]}) == {"a": ["inf", "-inf", "nan", 1.5]}


@pytest.mark.parametrize("body", [{"sampler": "restart", "options": {"restarts": 10**9}},
                                  {"sampler": "restart", "options": {"restart_steps": 1e9}},
                                  {"sampler": "restart", "steps": 2, "options": {"restarts": 100, "restart_steps": 101}},
                                  {"task": "inpaint", "method": "repaint", "example": 0, "steps": 1000,
                                   "options": {"resample": 11}},
                                  {"task": "inpaint", "method": "ddnm", "example": 0, "options": {"jump_length": 1e9}}])
def test_options_that_multiply_the_work_are_bounded(client, body):
    # was: accepted, and the model's worker held for days (restarts=1e9: a billion restarts)
    r = client.post("/api/jobs", json={"model": "digits", "num": 1, **body})
    assert r.status_code == 400 and ("option" in r.json()["error"] or "at most" in r.json()["error"])


@pytest.mark.parametrize("body", [{"sampler": "euler", "options": {"s_tmin": "abc"}},
                                  {"options": {"sigma_min": "x"}},
                                  {"task": "inpaint", "example": 0, "options": {"eta": "fast"}}])
def test_a_word_for_a_numeric_option_is_refused(client, body):
    # was: accepted, then the job failed with "internal error: TypeError: '<' not supported between 'str' and 'int'"
    r = client.post("/api/jobs", json={"model": "digits", "num": 1, "steps": 2, **body})
    assert r.status_code == 400 and "must be a number" in r.json()["error"]


def test_a_client_that_leaves_mid_body_leaves_no_traceback(client):
    # was: starlette's ClientDisconnect escaped the handler (a traceback in the server's log per such client)
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/jobs", "headers": [(b"content-length", b"100")],
             "query_string": b"", "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1),
             "root_path": "", "app": client.app}
    asyncio.run(client.app(scope, receive, send))
    assert sent[0]["status"] == 400


def test_an_unreadable_upload_does_not_name_the_servers_folders(client):
    # was: the job failed with "cannot read /home/.../outputs/JOB/input.png as an image ...": the server's folders
    buf = io.BytesIO()
    Image.effect_noise((16, 16), 60).convert("L").save(buf, format="PNG")
    cut = buf.getvalue()[:-40]  # the IDAT cut short: its header reads, it decodes only in the job
    r = client.post("/api/jobs", json={"model": "digits", "task": "inpaint", "steps": 2,
                                       "image": base64.b64encode(cut).decode()})
    assert r.status_code == 202
    for _ in range(1200):
        job = client.get(f"/api/jobs/{r.json()['id']}").json()
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert job["state"] == "failed" and "input.png" in job["error"], job
    assert str(client.app.state.server.outputs) not in job["error"] and "internal error" not in job["error"]


# ---- the checks themselves, under hypothesis ------------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
KEYS = ["task", "sampler", "steps", "num", "seed", "guidance", "label", "prompt", "options", "method", "sigma_y",
        "scale", "acceleration", "mask_kind", "example", "image", "t"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(KEYS), JSON, max_size=6))
def test_any_json_body_is_checked_or_refused(client, body):
    """check_job / check_forward either return complete params or raise BadRequest: never another exception."""
    served = client.app.state.server.models["digits"]
    for check in (lambda: check_job(served, body), lambda: check_forward(body)):
        try:
            check()
        except BadRequest:
            pass
