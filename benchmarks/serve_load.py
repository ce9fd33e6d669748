"""A bounded load test of `diffusekit serve` on loopback (BENCHMARKS.md section 11): many clients submit jobs over a
minute against a tiny model; every answer is counted, every accepted job followed to its end, the server's memory
sampled.

    python benchmarks/serve_load.py [--run RUN] [--clients 50] [--jobs 200] [--seconds 60] [--queue 8]
                                    [--out FILE.json]

Each client submits its share of the jobs at seeded random moments over `seconds` (DPM-Solver++(2M), 10 steps, 4
images of the tiny model); on 429 (queue full) it waits 0.5 s and submits again, as a polite client does. A job is
lost if it was accepted (202) and never reached done. Latency: from the first attempt to done. Memory: the server
process's resident set (VmRSS), sampled every 0.5 s. Without --run a tiny digits model is trained first (3 steps).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

JOB = {"model": None, "task": "generate", "sampler": "dpmpp-2m", "steps": 10, "num": 4, "seed": "random"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def client(url: str, moments: list[float], t0: float, model: str, record: list, lock: threading.Lock) -> None:
    with httpx.Client(base_url=url, timeout=60) as http:
        for moment in moments:
            time.sleep(max(0.0, t0 + moment - time.time()))
            start, refused, row = time.time(), 0, {}
            while True:
                r = http.post("/api/jobs", json={**JOB, "model": model})
                if r.status_code != 429:
                    break
                refused += 1
                time.sleep(0.5)
            row = {"status": r.status_code, "refused_429": refused, "submitted": start}
            if r.status_code == 202:
                job_id = r.json()["id"]
                while True:
                    job = http.get(f"/api/jobs/{job_id}").json()
                    if job["state"] not in ("queued", "running"):
                        break
                    time.sleep(0.1)
                row.update(state=job["state"], latency_s=time.time() - start)
            else:
                row.update(state="refused", error=r.text[:200])
            with lock:
                record.append(row)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def run_load(url: str, pid: int, model: str, clients: int, jobs: int, seconds: float, seed: int = 0) -> dict:
    """Drive a running server at `url` (process `pid`, for its memory); returns the counts and latencies."""
    rng = random.Random(seed)
    shares = [jobs // clients + (i < jobs % clients) for i in range(clients)]
    moments = [sorted(rng.uniform(0, seconds) for _ in range(k)) for k in shares]
    record, lock, memory = [], threading.Lock(), [rss_mb(pid)]
    t0 = time.time() + 0.5
    threads = [threading.Thread(target=client, args=(url, m, t0, model, record, lock)) for m in moments]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        memory.append(rss_mb(pid))
        time.sleep(0.5)
    for t in threads:
        t.join()
    memory.append(rss_mb(pid))
    latencies = [r["latency_s"] for r in record if r.get("state") == "done"]
    accepted = [r for r in record if r["status"] == 202]
    return {"clients": clients, "jobs": jobs, "seconds": seconds, "job": {**JOB, "model": model},
            "answers": {str(s): sum(r["status"] == s for r in record) for s in sorted({r["status"] for r in record})},
            "refused_429_then_retried": sum(r["refused_429"] for r in record),
            "accepted": len(accepted), "done": len(latencies),
            "lost": sum(r.get("state") != "done" for r in accepted),
            "errors_other_than_429": sum(r["status"] not in (202, 429) for r in record),
            "latency_s": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                          "max": max(latencies, default=None), "mean": statistics.fmean(latencies) if latencies else None},
            "wall_s": time.time() - t0,
            "server_rss_mb": {"start": memory[0], "max": max(memory), "end": memory[-1]}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, outputs: Path, queue: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "diffusekit", "serve", str(run), "--port", str(port), "--queue",
                             str(queue), "--outputs", str(outputs)], stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.time() - t0 > 120:
                raise RuntimeError(f"the server did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
            time.sleep(0.2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--queue", type=int, default=8)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run = a.run
        if run is None:
            from diffusekit.train import TrainConfig, train

            run = train(TrainConfig(out=f"{tmp}/digits", data="digits", model="tiny", steps=3, batch_size=16,
                                    warmup_steps=2), progress=False)
        proc, url = start_server(run, Path(tmp) / "outputs", a.queue)
        try:
            model = httpx.get(f"{url}/api/models").json()[0]["name"]
            res = run_load(url, proc.pid, model, a.clients, a.jobs, a.seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    sys.path.insert(0, str(Path(__file__).parent))
    import machine  # benchmarks/machine.py: the machine and the commit

    res = {"command": " ".join(sys.argv), "machine": machine.record(), "queue": a.queue, **res}
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    return 0 if res["lost"] == 0 and res["errors_other_than_429"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
