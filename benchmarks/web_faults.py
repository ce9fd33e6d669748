"""Fault trials of `diffusekit serve` (issue 28; RELIABILITY.md, "The web service"): a real server process on
loopback with a tiny model, met by hundreds of simultaneous connections and by thousands of hostile requests, while
its resident memory and open file descriptors are sampled.

    python benchmarks/web_faults.py            # bounded, what the test runs: 60 connections, 600 requests
    python benchmarks/web_faults.py --full --out benchmarks/results/14-reliability/web-faults.json
                                               # the table: 300 connections, 5,000 requests

1. Connections: all open at once (a barrier), each one of: a job submission (the queue is small, so most are
   refused with 429), a submission whose client hangs up before the answer, status polls, a result download, the
   server-sent events of a job, a slow client (its request sent a byte at a time, slowloris), an idle one, a
   request body cut short, a download or event stream dropped mid-response (a reset). Afterwards every accepted
   job must end done and its samples.npz download; every job the server lists must end; refusals must be 4xx/503
   with an error message; the server must still answer.
2. Requests (`web_cases.py`, seeded: case i is the same bytes on every run): random methods and paths with path
   tricks in model, job and file names; mutated JSON bodies; hostile image uploads; broken HTTP; bodies over the
   limit; odd content types. Every answer must be a 4xx, or a 2xx where the request is in fact valid; none a 5xx;
   none may take over ANSWER_S (counted as a hang, never asserted on); no answer may leak a file planted
   outside the job folders; every accepted job must end by itself, and not in an internal error.
Around both: no file may appear or change outside the server's outputs folder in its sandbox (the run directory,
the working directory and TMPDIR included), the server's log must hold no traceback, and memory is reported at the
start, peak and end (psutil if installed, else /proc/PID/status VmRSS).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import web_cases  # noqa: E402  (benchmarks/ is not a package)

BOUNDED = {"connections": 60, "requests": 600, "slow_s": 3.0}
FULL = {"connections": 300, "requests": 5000, "slow_s": 12.0}
QUEUE = 2  # jobs waiting per model: small, so that simultaneous submissions meet a full queue
ANSWER_S = 10.0  # a request not answered within this is counted as a hang
DRAIN_S = 120.0  # accepted jobs must all have ended within this after a trial
SECRET = b"not-for-clients-7f3a"
JOB = {"steps": 3, "num": 1, "sampler": "dpmpp-2m", "seed": "random"}
LIMIT = 12 * 2**20  # diffusekit.web.params.MAX_BODY_BYTES (read from the module at start)


# ---- the server and its memory ------------------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    try:
        import psutil
        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        pass
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler(threading.Thread):
    """The server's RSS (MB) and open file descriptors, every 0.2 s, with the phase they were taken in."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.phase, self.samples, self.stopped = pid, "start", [], threading.Event()

    def take(self) -> None:
        try:
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
            self.samples.append((self.phase, rss_mb(self.pid), fds))
        except (OSError, ProcessLookupError):
            pass

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            self.take()

    def summary(self, phase: str | None = None) -> dict:
        s = [x for x in self.samples if phase is None or x[0] == phase]
        return {"rss_mb": {"start": round(s[0][1], 1), "peak": round(max(x[1] for x in s), 1),
                           "end": round(s[-1][1], 1)}, "open_fds_peak": max(x[2] for x in s), "samples": len(s),
                "rss_mb_at_each_tenth": [round(s[k * (len(s) - 1) // 10][1]) for k in range(11)]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, sandbox: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """`diffusekit serve RUN` from the sandbox's work/ folder, TMPDIR in the sandbox, its log to `log`."""
    port = free_port()
    env = {**os.environ, "TMPDIR": str(sandbox / "tmp")}
    cmd = [sys.executable, "-m", "diffusekit", "serve", str(run), "--port", str(port), "--queue", str(QUEUE),
           "--outputs", str(sandbox / "outputs")]
    proc = subprocess.Popen(cmd, cwd=sandbox / "work", env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    t0 = time.time()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.time() - t0 > 180:
                raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)


# ---- a raw HTTP client ---------------------------------------------------------------------------------------------

def exchange(port: int | socket.socket, raw: bytes, timeout: float = ANSWER_S, half: int | None = None,
             until: bytes | None = None, drop_after: int | None = None) -> dict:
    """Send `raw` (only `half` bytes of it, then shut the write side) and read one answer. outcome: answered | closed
    (no answer: the server hung up) | timeout (no answer within `timeout`) | dropped (we reset the connection after
    `drop_after` bytes of the answer, on purpose). `until`: stop reading once the body holds it (event streams).
    `port`: the server's, or a connection already open to it."""
    t0 = time.time()
    out, buf = {"status": None, "body": b"", "outcome": "closed", "sent": 0}, b""
    try:
        s = port if isinstance(port, socket.socket) else socket.create_connection(("127.0.0.1", port), timeout=timeout)
        with s:
            data = raw if half is None else raw[:half]
            try:
                s.sendall(data)
                out["sent"] = len(data)
                if half is not None:
                    s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered early (413) and closed: read what it said
            while True:
                s.settimeout(max(0.01, timeout - (time.time() - t0)))
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if drop_after is not None and len(buf) >= drop_after:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
                    out["outcome"] = "dropped"
                    break
                if until is not None and until in buf:
                    break
    except (socket.timeout, TimeoutError):
        out["outcome"] = "timeout"
    except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError) as e:
        out["error"] = type(e).__name__
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if m:
        out["status"], out["body"] = int(m.group(1)), dechunk(body) if b"chunked" in head.lower() else body
        out["outcome"] = "answered" if out["outcome"] != "dropped" else "dropped"
    out["seconds"] = time.time() - t0
    return out


def dechunk(body: bytes) -> bytes:
    out, i = b"", 0
    while True:
        j = body.find(b"\r\n", i)
        if j < 0:
            return out
        try:
            n = int(body[i:j].split(b";")[0], 16)
        except ValueError:
            return out
        if n == 0:
            return out
        out += body[j + 2:j + 2 + n]
        i = j + 4 + n


def api(port: int, method: str, path: str, body=None, timeout: float = 30) -> tuple[int | None, object]:
    raw = web_cases.post_json(path, body) if body is not None else web_cases.request(method, path)
    r = exchange(port, raw, timeout=timeout)
    try:
        return r["status"], json.loads(r["body"]) if r["body"] else None
    except ValueError:
        return r["status"], r["body"]


def drain(port: int, ids: list[str] | None = None, bound: float = DRAIN_S) -> dict[str, dict]:
    """Wait until every job (or those of `ids`) has ended, up to `bound` seconds; their last summaries by id."""
    t0 = time.time()
    while True:
        status, jobs = api(port, "GET", "/api/jobs")
        jobs = {j["id"]: j for j in jobs} if status == 200 else {}
        pending = [j for j in jobs.values() if j["state"] in ("queued", "running") and (ids is None or j["id"] in ids)]
        if not pending or time.time() - t0 > bound:
            return jobs
        time.sleep(0.25)


# ---- trial 1: simultaneous connections ----------------------------------------------------------------------------

def connection(kind: str, sock: socket.socket, ctx: dict, slow_s: float, rng: random.Random) -> dict:
    """What one connection (open, its request not yet sent) of the given kind does; returns what it saw."""
    job = json.dumps({"model": ctx["model"], **JOB}).encode()
    if kind == "submit":
        r = exchange(sock, web_cases.post_json("/api/jobs", job))
    elif kind == "submit-hang-up":  # the request complete, the client gone before the answer
        with sock:
            sock.sendall(web_cases.post_json("/api/jobs", job))
        r = {"status": None, "outcome": "hung-up"}
    elif kind == "poll":
        r = exchange(sock, web_cases.request("GET", rng.choice(["/api/jobs", "/api/models", f"/api/jobs/{ctx['job']}"])))
    elif kind == "download":
        r = exchange(sock, web_cases.request("GET", f"/api/jobs/{ctx['job']}/files/samples.npz"))
        r["same_bytes"] = r["body"] == ctx["npz"]
    elif kind == "events":
        r = exchange(sock, web_cases.request("GET", f"/api/jobs/{ctx['job']}/events"), until=b"event: done")
    elif kind in ("slow", "slow-abandoned"):  # slowloris: a byte at a time over slow_s seconds
        raw = web_cases.request("GET", "/api/models")
        r = slow(sock, raw if kind == "slow" else raw[:len(raw) // 2], slow_s, finish=kind == "slow")
    elif kind == "idle":
        with sock:
            time.sleep(slow_s)
        r = {"status": None, "outcome": "idle"}
    elif kind == "body-cut":
        raw = web_cases.post_json("/api/jobs", job)
        r = exchange(sock, raw, half=len(raw) - len(job) // 2)
    elif kind == "download-dropped":
        r = exchange(sock, web_cases.request("GET", f"/api/jobs/{ctx['job']}/files/samples.npz"), drop_after=200)
    else:  # events-dropped
        r = exchange(sock, web_cases.request("GET", f"/api/jobs/{ctx['job']}/events"), drop_after=300)
    r["kind"] = kind
    if r.get("status") == 202:
        r["id"] = json.loads(r["body"])["id"]
    if r.get("status") and r["status"] >= 400:
        r["error_message"] = bool(re.search(rb'"error"\s*:\s*"[^"]+', r["body"]) or (r["body"] and r["status"] == 400))
    r.pop("body", None)
    return r


def slow(s: socket.socket, raw: bytes, seconds: float, finish: bool) -> dict:
    s.settimeout(ANSWER_S + seconds)
    with s:
        for b in raw:
            s.sendall(bytes([b]))
            time.sleep(seconds / len(raw))
        if not finish:
            return {"status": None, "outcome": "abandoned"}
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
    return {"status": int(m.group(1)) if m else None, "outcome": "answered" if m else "closed", "body": b""}


CONNECTION_KINDS = ["submit", "submit", "submit-hang-up", "poll", "poll", "download", "events", "slow",
                    "slow-abandoned", "idle", "body-cut", "download-dropped", "events-dropped"]


def trial_connections(port: int, ctx: dict, n: int, slow_s: float, seed: int) -> dict:
    rng = random.Random(seed)
    kinds = [CONNECTION_KINDS[i % len(CONNECTION_KINDS)] for i in range(n)]
    rng.shuffle(kinds)
    results, start, connected = [None] * n, threading.Barrier(n), threading.Barrier(n)

    def one(i):  # all connect at once; once all are connected (n open at once), each does what its kind does
        start.wait()
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_S)
        except OSError as e:  # could not even connect: counted
            results[i] = {"kind": kinds[i], "status": None, "outcome": f"connect-failed {type(e).__name__}"}
            connected.wait()
            return
        connected.wait()
        time.sleep(0.5)  # all n held open together a moment (the sampler sees them), then each goes its way
        try:
            results[i] = connection(kinds[i], sock, ctx, slow_s, random.Random(f"{seed}-{i}"))
        except OSError as e:
            results[i] = {"kind": kinds[i], "status": None, "outcome": f"error {type(e).__name__}"}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [r["id"] for r in results if r.get("status") == 202]
    jobs = drain(port)
    done = [i for i in accepted if jobs.get(i, {}).get("state") == "done"
            and exchange(port, web_cases.request("GET", f"/api/jobs/{i}/files/samples.npz"))["body"][:2] == b"PK"]
    by_kind = {}
    for r in results:
        k = by_kind.setdefault(r["kind"], {})
        key = str(r["status"]) if r["status"] else r["outcome"]
        k[key] = k.get(key, 0) + 1
    refused = [r for r in results if r.get("status") and r["status"] >= 400]
    return {"connections": n, "answers_by_kind": by_kind,
            "jobs": {"submitted": kinds.count("submit"), "accepted": len(accepted),
                     "refused_429": sum(r["kind"] == "submit" and r["status"] == 429 for r in results),
                     "finished_and_downloaded": len(done), "lost": len(accepted) - len(done),
                     "server_jobs_not_ended": sum(j["state"] in ("queued", "running") for j in jobs.values())},
            "refusals_without_message": sum(not r["error_message"] for r in refused),
            "5xx": sum((r["status"] or 0) >= 500 and r["status"] != 503 for r in results),
            "503": sum(r["status"] == 503 for r in results),
            "downloads_complete_and_equal": sum(r.get("same_bytes", False) for r in results),
            "connect_failed": sum(r["outcome"].startswith("connect-failed") for r in results),
            "hangs": sum(r["outcome"] == "timeout" for r in results),
            "client_errors": sum(r["outcome"].startswith("error") for r in results)}


# ---- trial 2: the fuzzed request stream ---------------------------------------------------------------------------

def trial_requests(port: int, ctx: dict, n: int, seed: int, workers: int = 4) -> dict:
    record, lock, counter = [], threading.Lock(), iter(range(n))

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            case = web_cases.make_case(seed, i, ctx, LIMIT)
            r = exchange(port, case["raw"], half=case.get("half"))
            row = {"i": i, "kind": case["kind"], "status": r["status"], "outcome": r["outcome"],
                   "seconds": round(r["seconds"], 3), "leak": SECRET in r["body"], "body_sent": r["sent"]}
            if case["kind"].startswith("oversize"):
                row["body_bytes_sent"] = r["sent"] - len(case["raw"].split(b"\r\n\r\n", 1)[0]) - 4
            if r["status"] == 202:
                row["id"] = json.loads(r["body"])["id"]
            if r["status"] is None and r["outcome"] == "closed" and case.get("close_ok"):
                row["outcome"] = "closed-ok"
            if (r["status"] or 0) >= 500 or r["outcome"] in ("timeout", "closed"):
                row["case"] = case["raw"][:600].decode("latin-1")
            with lock:
                record.append(row)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [r["id"] for r in record if "id" in r]
    jobs = drain(port, accepted)
    unended = [i for i in accepted if jobs.get(i, {}).get("state") in ("queued", "running")]
    for i in unended:  # stop them, so that the server is free again; counted
        api(port, "POST", f"/api/jobs/{i}/cancel", {})
    ended = {i: jobs.get(i, {}) for i in accepted}
    statuses = {}
    for r in record:
        key = str(r["status"]) if r["status"] else r["outcome"]
        statuses[key] = statuses.get(key, 0) + 1
    kinds = {k: sum(r["kind"] == k for r in record) for k in sorted({r["kind"] for r in record})}
    oversize = [r for r in record if r["kind"].startswith("oversize")]
    return {"requests": n, "by_kind": kinds, "answers": dict(sorted(statuses.items())),
            "5xx": sum((r["status"] or 0) >= 500 for r in record),
            "hangs": sum(r["outcome"] == "timeout" for r in record),
            "closed_without_answer_unexpected": sum(r["outcome"] == "closed" for r in record),
            "leaks": sum(r["leak"] for r in record),
            "oversize": {"cases": len(oversize), "answered_413": sum(r["status"] == 413 for r in oversize),
                         "declared_answered_before_body": sum(r["kind"] == "oversize-declared" and r["status"] == 413
                                                              and r.get("body_bytes_sent", 0) <= 0 for r in oversize)},
            "slowest_answer_s": max((r["seconds"] for r in record if r["status"]), default=None),
            "jobs": {"accepted": len(accepted),
                     "states": {s: sum(j.get("state") == s for j in ended.values()) for s in ("done", "failed",
                                                                                           "cancelled")},
                     "not_ended_by_themselves": len(unended),
                     "internal_errors": sum("internal error" in (j.get("error") or "") for j in ended.values()),
                     "failed_messages": sorted({(j.get("error") or "")[:120] for j in ended.values()
                                                if j.get("state") == "failed"})[:20]},
            "server_errors": [r for r in record if (r["status"] or 0) >= 500][:20],
            "hangs_and_closes": [r for r in record if r["outcome"] in ("timeout", "closed")][:20]}


# ---- the sandbox --------------------------------------------------------------------------------------------------

def snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            continue
        for f in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            p = Path(dirpath, f)
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def outputs_clean(outputs: Path) -> list[str]:
    """Entries in outputs/ other than job folders (16 hex digits) and the planted secret."""
    return [p.name for p in outputs.iterdir() if not re.fullmatch(r"[0-9a-f]{16}", p.name) and p.name != "secret.txt"
            or p.is_symlink()]


def setup(run: Path, sandbox: Path) -> Path:
    for d in ("work", "tmp", "outputs"):
        (sandbox / d).mkdir(parents=True, exist_ok=True)
    shutil.copytree(run, sandbox / "run", ignore=shutil.ignore_patterns("samples"))
    for where in (sandbox, sandbox / "outputs", sandbox / "work"):
        (where / "secret.txt").write_bytes(SECRET)
    return sandbox / "run"


def prepare(port: int, sandbox: Path) -> dict:
    """The model's name and one finished job (16 images) whose files the connections download."""
    status, models = api(port, "GET", "/api/models")
    model = models[0]["name"]
    status, sub = api(port, "POST", "/api/jobs", {"model": model, **JOB, "num": 16})
    assert status == 202, sub
    drain(port, [sub["id"]])
    npz = exchange(port, web_cases.request("GET", f"/api/jobs/{sub['id']}/files/samples.npz"))["body"]
    return {"model": model, "job": sub["id"], "npz": npz, "secret": str(sandbox / "secret.txt"),
            "outputs": str(sandbox / "outputs"), "images": web_cases.image_seeds()}


def run_trials(run: Path, connections: int, requests: int, slow_s: float, seed: int = 0) -> dict:
    global LIMIT
    from diffusekit.web.params import MAX_BODY_BYTES

    LIMIT = MAX_BODY_BYTES
    with tempfile.TemporaryDirectory() as tmp:
        sandbox, log = Path(tmp) / "sandbox", Path(tmp) / "server.log"
        run = setup(run, sandbox)
        before = snapshot(sandbox, sandbox / "outputs")
        t0 = time.time()
        proc, port = start_server(run, sandbox, log)
        mem = Sampler(proc.pid)
        mem.take()
        mem.start()
        try:
            ctx = prepare(port, sandbox)
            mem.phase = "connections"
            conn = trial_connections(port, ctx, connections, slow_s, seed)
            mem.phase = "requests"
            req = trial_requests(port, ctx, requests, seed)
            mem.phase = "end"
            drain(port, bound=30)
            mem.take()
            alive = proc.poll() is None and api(port, "GET", "/api/models")[0] == 200
        finally:
            mem.stopped.set()
            proc.terminate()
            proc.wait(timeout=60)
        after = snapshot(sandbox, sandbox / "outputs")
        text = log.read_text(errors="replace")
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        return {"seed": seed, "wall_s": round(time.time() - t0, 1), "queue": QUEUE, "answer_bound_s": ANSWER_S,
                "body_limit_bytes": LIMIT, "connections": conn, "requests": req, "server_alive_after": alive,
                "server_exit_code_on_sigterm": proc.returncode,
                "server_log": {"tracebacks": text.count("Traceback"), "lines": len(text.splitlines()),
                               "exceptions": exception_counts(text),
                               "tail": text[-3000:] if "Traceback" in text else ""},
                "files_changed_outside_outputs": changed, "odd_entries_in_outputs": outputs_clean(sandbox / "outputs"),
                "memory": {"whole": mem.summary(), **{p: mem.summary(p) for p in ("connections", "requests")}}}


def exception_counts(log: str) -> dict[str, int]:
    """The last line of each traceback in the server's log: its exception type, counted."""
    counts = {}
    for block in log.split("Traceback (most recent call last):")[1:]:
        m = re.search(r"^([A-Za-z_][\w.]*)(?::|$)", block, re.M)
        name = m.group(1) if m else "?"
        counts[name] = counts.get(name, 0) + 1
    return counts


def verdict(res: dict) -> dict:
    c, r = res["connections"], res["requests"]
    return {"5xx": c["5xx"] + r["5xx"], "hangs": c["hangs"] + r["hangs"], "jobs_lost": c["jobs"]["lost"],
            "jobs_not_ended": c["jobs"]["server_jobs_not_ended"] + r["jobs"]["not_ended_by_themselves"],
            "internal_errors": r["jobs"]["internal_errors"], "leaks": r["leaks"],
            "tracebacks": res["server_log"]["tracebacks"], "alive": res["server_alive_after"],
            "files_outside_outputs": len(res["files_changed_outside_outputs"]) + len(res["odd_entries_in_outputs"])}


def passed(v: dict) -> bool:
    return v["alive"] and not any(v[k] for k in v if k != "alive")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="the table's sizes (300 connections, 5,000 requests)")
    p.add_argument("--run", type=Path, help="a run directory to serve (default: a tiny digits model, trained here)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    size = FULL if a.full else BOUNDED
    with tempfile.TemporaryDirectory() as tmp:
        run = a.run
        if run is None:
            from diffusekit.train import TrainConfig, train

            run = train(TrainConfig(out=f"{tmp}/digits", data="digits", model="tiny", steps=3, batch_size=16,
                                    warmup_steps=2, num_grid=4, sample_steps=2), progress=False)
        res = run_trials(Path(run), size["connections"], size["requests"], size["slow_s"], a.seed)
    import machine  # benchmarks/machine.py: the machine and the commit

    res = {"command": " ".join(["python", "benchmarks/web_faults.py", *sys.argv[1:]]), "mode": "full" if a.full
           else "bounded", "machine": machine.record(), "verdict": verdict(res), **res}
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    return 0 if passed(res["verdict"]) else 1


if __name__ == "__main__":
    sys.exit(main())
