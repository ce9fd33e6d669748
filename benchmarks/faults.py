"""Training under faults (RELIABILITY.md): real processes killed, starved of disk, doubled up, fed bad data, and
(--full) torchrun workers killed or hung; every trial ends by comparing the run's final weights, EMA and optimizer
state with an uninterrupted run's, bit for bit.

    python benchmarks/faults.py            # bounded (CI): one trial of each single-process fault, ~1-2 minutes
    python benchmarks/faults.py --full     # 20 SIGKILLs, 4 disk limits, 3 lock cases, 2 bad-data cases, torchrun
                                           # [--out FILE.json] [--seed 0] [--work DIR] [--keep]

Every run is `python -m diffusekit train --data digits --model tiny --batch-size 16 --checkpoint-every 1` for
STEPS steps (a checkpoint every step, so kills often land inside a write), one thread per process. A trial
survives when the fault is met as promised (the newest complete checkpoint loads, a clean one-line error, a
refusal naming the other process, ...) and the run, continued with --resume, ends bit-identical to the
uninterrupted reference. Data lost counts trials where a checkpoint that was complete before the fault is gone or
unreadable, or the final state differs from the reference: it must be 0. Nothing here reaches into the library:
faults come from outside (signals, RLIMIT_FSIZE, a second process), except bad data, which a child process puts
into the data set it loads (the built-in readers refuse NaN themselves).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from diffusekit.fast import ALLOCATOR_ENV  # noqa: E402
from diffusekit.rundir import list_checkpoints  # noqa: E402
from diffusekit.train.setup import BatchStream  # noqa: E402

import machine  # noqa: E402  benchmarks/machine.py (this script's folder is first on sys.path)

STEPS = 24
COMMON = ["--data", "digits", "--model", "tiny", "--batch-size", "16", "--checkpoint-every", "1", "--no-progress"]
# one thread each (runs compare bit for bit only at equal thread counts); the allocator settings up front, so the
# CLI does not re-execute itself
ENV = {**os.environ, **ALLOCATOR_ENV, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def dk(*args) -> list[str]:
    return [sys.executable, "-m", "diffusekit", "train", *COMMON, *map(str, args)]


def show(cmd: list[str]) -> str:
    return " ".join(c if c != sys.executable else "python" for c in cmd)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600, **kw)


def final_state(out: Path) -> dict:
    """Every tensor of the newest checkpoint (model, ema, state) and state.json without its clock."""
    last = list_checkpoints(out / "checkpoints")[-1]
    tensors = {f"{n}/{k}": v for n in ("model", "ema", "state") for k, v in load_file(str(last / f"{n}.safetensors")).items()}
    meta = json.loads((last / "state.json").read_text())
    meta.pop("elapsed_s")
    return {"tensors": tensors, "meta": meta}


def differences(ref: dict, out: Path) -> list[str]:
    """What differs from the reference's final state (empty: bit-identical)."""
    try:
        got = final_state(out)
    except Exception as e:  # noqa: BLE001 - any failure to read is a difference to report
        return [f"unreadable: {e}"]
    a, b = ref["tensors"], got["tensors"]
    diff = [k for k in a if k not in b or not torch.equal(a[k], b[k])] + [k for k in b if k not in a]
    return diff + ([f"state.json {ref['meta']} != {got['meta']}"] if ref["meta"] != got["meta"] else [])


def newest_loads(out: Path) -> tuple[int | None, str | None]:
    """(step of the newest complete checkpoint, error loading it or None)."""
    found = list_checkpoints(out / "checkpoints")
    if not found:
        return None, None
    try:
        for n in ("model", "ema", "state"):
            load_file(str(found[-1] / f"{n}.safetensors"))
        return json.loads((found[-1] / "state.json").read_text())["step"], None
    except Exception as e:  # noqa: BLE001
        return None, f"{found[-1].name}: {e}"


def newest_step(out: Path) -> int:
    found = list_checkpoints(out / "checkpoints")
    return int(found[-1].name.split("-")[1]) if found else 0


def leftovers(out: Path) -> list[str]:
    ckpts = out / "checkpoints"
    hidden = [p.name for p in ckpts.iterdir() if p.name.startswith(".")] if ckpts.is_dir() else []
    return hidden + ([".lock"] if (out / ".lock").exists() else [])


def wait_for(cond, timeout=120.0, every=0.002) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(every)
    return False


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("diffusekit train: error:")]


# ---- 1. SIGKILL at random moments -------------------------------------------------------------------------------

def landed(out: Path) -> str:
    """Where a kill landed, from what it left behind."""
    ckpts = out / "checkpoints"
    if not (out / "run.json").exists():
        return "start-up"
    names = [p.name for p in ckpts.iterdir()] if ckpts.is_dir() else []
    if any(n.startswith(".tmp-") for n in names):
        return "checkpoint write"
    if any(n.startswith(".old-") for n in names):
        return "checkpoint delete"
    if newest_step(out) == STEPS:
        return "after the last checkpoint"  # the end: the sample grid, the summary, leaving
    return "between writes"


def kill_trial(work: Path, ref: dict, rng: random.Random, i: int, t_ref: float, in_write: bool) -> dict:
    """Kill a run at a random moment (or, for in_write, a random few ms into a random checkpoint write), check the
    newest complete checkpoint loads, then --resume auto to the end."""
    out = work / f"kill-{i}"
    cmd = dk("--steps", STEPS, "--out", out)
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if in_write:
        after = rng.randint(0, STEPS - 2)
        wait_for(lambda: newest_step(out) >= after and (out / "checkpoints").is_dir()
                 and any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir()) or proc.poll() is not None)
        time.sleep(rng.uniform(0, 0.004))
    else:
        time.sleep(rng.uniform(0, t_ref))
    complete_before = newest_step(out)
    ended = proc.poll() is not None
    proc.kill()
    proc.wait()
    where = "ended first" if ended else landed(out)
    lock_left = (out / ".lock").exists()  # killed while it held the lock: the file stays, the flock is gone
    step, err = newest_loads(out)
    resumed = run(dk("--steps", STEPS, "--out", out, "--resume", "auto"))
    diff = differences(ref, out) if resumed.returncode == 0 else [f"resume failed: {resumed.stderr[-300:]}"]
    lost = (step or 0) < complete_before or err is not None or bool(diff)
    left = leftovers(out)
    took_over = "taking the run over" in resumed.stderr
    return {"landed": where, "complete_before": complete_before, "newest_after": step, "load_error": err,
            "differences": diff[:5], "leftovers_after_resume": left, "lock_left": lock_left,
            "stale_lock_taken_over": took_over,
            "survived": err is None and not diff and not left, "lost": lost}


# ---- 2. disk full while a checkpoint is written -----------------------------------------------------------------

def limit_file_size(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so write() fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def disk_trial(work: Path, ref_dir: Path, ref: dict, limit: int, i: int) -> dict:
    """A run at step STEPS-2 continues under a file-size limit: its next checkpoint cannot be written."""
    out = work / f"disk-{i}"
    shutil.copytree(ref_dir, out)
    for c in list_checkpoints(out / "checkpoints")[-2:]:  # the state of a run stopped at STEPS - 2
        shutil.rmtree(c)
    prev = list_checkpoints(out / "checkpoints")[-1]
    before = {f.name: f.read_bytes() for f in prev.iterdir()}
    cmd = dk("--steps", STEPS, "--out", out, "--resume")
    full = run(cmd, preexec_fn=limit_file_size(limit))
    errs = error_lines(full.stderr)
    clean = (full.returncode == 1 and len(errs) == 1 and "Traceback" not in full.stderr
             and str(out / "checkpoints") in errs[0] and "--resume" in errs[0])
    intact = list_checkpoints(out / "checkpoints")[-1] == prev and before == {f.name: f.read_bytes() for f in prev.iterdir()}
    left = leftovers(out)
    again = run(cmd)
    diff = differences(ref, out) if again.returncode == 0 else [f"resume failed: {again.stderr[-300:]}"]
    return {"limit_bytes": limit, "error": errs[0] if errs else full.stderr[-300:], "clean_error": clean,
            "previous_intact": intact, "leftovers": left, "differences": diff[:5],
            "survived": clean and intact and not left and not diff, "lost": not intact or bool(diff)}


# ---- 3. two processes on one run directory ----------------------------------------------------------------------

def lock_trial_fresh_pair(work: Path, ref: dict) -> dict:
    """Two fresh trains into the same --out at the same moment: one trains, the other refuses naming it."""
    out = work / "lock-pair"
    cmd = dk("--steps", STEPS, "--out", out)
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    codes = [p.returncode for p in procs]
    if sorted(codes) != [0, 1]:
        return {"codes": codes, "stderr": [e[-300:] for e in errs], "survived": False, "lost": True}
    loser, winner = (0, 1) if codes[0] == 1 else (1, 0)
    line = (error_lines(errs[loser]) or [errs[loser][-300:]])[0]
    diff = differences(ref, out)
    ok = f"process {procs[winner].pid}" in line and "in use" in line and len(error_lines(errs[loser])) == 1
    return {"codes": codes, "refusal": line, "names_other_pid": ok, "differences": diff[:5],
            "survived": ok and not diff, "lost": bool(diff)}


def lock_trial_resume_while_training(work: Path, ref: dict) -> dict:
    """`--resume` while the run trains: the second refuses naming the first, which ends as if alone. The first is
    paused (SIGSTOP) while the second tries, so the overlap does not depend on timing."""
    out = work / "lock-resume"
    first = subprocess.Popen(dk("--steps", STEPS, "--out", out), env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    wait_for(lambda: (out / "metrics.jsonl").exists() or first.poll() is not None, every=0.01)
    first.send_signal(signal.SIGSTOP)
    cmd = dk("--steps", STEPS, "--out", out, "--resume")
    second = run(cmd)
    first.send_signal(signal.SIGCONT)
    first.wait(timeout=600)
    line = (error_lines(second.stderr) or [second.stderr[-300:]])[0]
    ok = second.returncode == 1 and f"process {first.pid}" in line and len(error_lines(second.stderr)) == 1
    diff = differences(ref, out) if first.returncode == 0 else ["the first run failed"]
    return {"refusal": line, "names_other_pid": ok, "differences": diff[:5], "survived": ok and not diff,
            "lost": bool(diff), "command": show(cmd)}


# ---- 4. bad data ------------------------------------------------------------------------------------------------

BAD_DATA_CHILD = """
import copy, sys
import diffusekit.data as data
import diffusekit.train.setup as setup
bad, when, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
load = data.load_data
def load_bad(*a, **k):  # the data set as loaded, with one item NaN
    ds = copy.copy(load(*a, **k))
    ds.x = ds.x.clone()
    ds.x[bad] = float("nan")
    return ds
data.load_data = load_bad
if when == "mid-run":  # as if the item went bad after the start check (a reader that streams, memory gone bad)
    setup.check_data = lambda x, name: None
from diffusekit.cli import main
sys.exit(main(argv))
"""


def first_step_of(index: int) -> int:
    """The step whose batch first holds data item `index` (the data order is seeded, BatchStream)."""
    stream = BatchStream(1797, 16, 0)
    for step in range(1, 200):
        if index in stream.next().tolist():
            return step
    raise ValueError(index)


def bad_data_trial(work: Path, ref: dict, when: str) -> dict:
    """One NaN item: refused before anything is written (start), or the run stops at the step whose batch holds it,
    naming the step and item, and keeps its last checkpoint (mid-run); then the data fixed, the run ends as the
    reference does."""
    out = work / f"bad-{when}"
    stream = BatchStream(1797, 16, 0)
    for _ in range(STEPS // 2 - 1):
        stream.next()
    bad = int(stream.next()[3])  # first drawn at step STEPS // 2
    step = first_step_of(bad)
    argv = ["train", *dk("--steps", STEPS, "--out", out)[4:]]
    got = run([sys.executable, "-c", BAD_DATA_CHILD, str(bad), when, *argv])
    errs = error_lines(got.stderr)
    line = errs[0] if errs else got.stderr[-300:]
    named = got.returncode == 1 and len(errs) == 1 and f"indices {bad}" in line
    if when == "mid-run":
        named = named and f"step {step}:" in line
        kept = newest_loads(out) == (step - 1, None)
        fix = dk("--steps", STEPS, "--out", out, "--resume")
    else:
        kept = not (out / "run.json").exists()  # nothing written: the same command runs once the data is fixed
        fix = dk("--steps", STEPS, "--out", out)
    fixed = run(fix)
    diff = differences(ref, out) if fixed.returncode == 0 else [f"after the fix: {fixed.stderr[-300:]}"]
    return {"bad_index": bad, "bad_step": step, "error": line, "names_batch": named, "checkpoint_kept": kept,
            "differences": diff[:5], "survived": named and kept and not diff, "lost": not kept or bool(diff)}


def check_cost() -> dict:
    """Microseconds of the per-batch finiteness check (what the step adds: the batch's sum, checked with the loss in
    one sync) and milliseconds of the whole-data check at the start, at a few data shapes; one thread, as the runs."""
    torch.set_num_threads(1)
    def usec(fn, reps):
        fn()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t) / reps * 1e6

    loss, rows = torch.tensor(0.5), {}
    for shape in ((16, 1, 8, 8), (128, 1, 28, 28), (128, 3, 32, 32)):
        x0 = torch.randn(shape)
        rows[str(shape)] = {  # what train_step checks now, and before the batch check was added
            "loss_only_us": usec(lambda: bool(torch.isfinite(loss)), 2000),
            "loss_and_batch_us": usec(lambda: bool(torch.isfinite(loss + x0.sum())), 2000),
            "isfinite_all_us": usec(lambda: bool(torch.isfinite(x0).all()), 200)}  # the obvious way, for scale
    from diffusekit.train.faults import check_data
    start = {}
    for shape in ((1797, 1, 8, 8), (5000, 1, 28, 28), (5000, 3, 32, 32)):
        x = torch.randn(shape)
        start[str(shape)] = {"ms": usec(lambda: check_data(x, "x"), 5) / 1000}
    return {"per_batch": rows, "whole_data_at_start": start}


# ---- 5. torchrun: a worker killed, a worker hung ----------------------------------------------------------------

DDP_STEPS, TIMEOUT_S = 12, 20
RESULTS = ROOT / "benchmarks" / "results" / "14-reliability" / "faults.json"


def torchrun(out: Path, restarts: int = 1) -> list[str]:
    with socket.socket() as s:  # a free port for this job's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--max-restarts", str(restarts),
            "--master_port", str(port), "-m", "diffusekit", "train", *COMMON, "--steps", str(DDP_STEPS),
            "--out", str(out), "--resume", "auto", "--collective-timeout", str(TIMEOUT_S)]


def worker(agent: int, rank: int) -> int | None:
    """PID of the torchrun agent's worker of this rank (of the first attempt), from /proc."""
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == agent:
                env = (d / "environ").read_bytes().split(b"\0")
                if f"RANK={rank}".encode() in env and b"TORCHELASTIC_RESTART_COUNT=0" in env:
                    return int(d.name)
        except OSError:
            continue
    return None


def ddp_trial(work: Path, ref: dict, rng: random.Random, fault: str) -> dict:
    """Under torchrun --max-restarts 1, kill (SIGKILL) or hang (SIGSTOP) rank 1 after a random checkpoint; the job
    must restart from the last checkpoint by itself and end as the uninterrupted job does."""
    out = work / f"ddp-{fault}"
    cmd = torchrun(out)
    agent = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: [lines.append((time.time(), ln)) for ln in agent.stderr], daemon=True)
    reader.start()
    after = rng.randint(2, DDP_STEPS - 4)
    wait_for(lambda: newest_step(out) >= after or agent.poll() is not None, timeout=300, every=0.01)
    pid = worker(agent.pid, 1)
    t_fault = time.time()
    os.kill(pid, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
    agent.wait(timeout=600)
    reader.join(timeout=10)
    text = "".join(ln for _, ln in lines)
    reported = [t for t, ln in lines if "got no answer within the collective timeout" in ln]
    resumed = "--resume auto: continuing the run" in text
    diff = differences(ref, out) if agent.returncode == 0 else [f"job failed: {text[-500:]}"]
    row = {"fault_after_step": after, "returncode": agent.returncode, "restarted_from_checkpoint": resumed,
           "stale_lock_taken_over": "taking the run over" in text, "differences": diff[:5],
           "job_seconds_after_fault": round(time.time() - t_fault, 1),
           "survived": resumed and not diff, "lost": bool(diff), "command": show(cmd)}
    if fault == "hang":
        row["reported_after_s"] = round(reported[0] - t_fault, 1) if reported else None
        row["survived"] = row["survived"] and bool(reported)
    return row


# ---- the table --------------------------------------------------------------------------------------------------

def summarise(name: str, how: str, trials: list[dict], command: str) -> dict:
    return {"fault": name, "how": how, "trials": len(trials), "survived": sum(t["survived"] for t in trials),
            "data_lost": sum(bool(t["lost"]) for t in trials), "command": command, "details": trials}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="the RELIABILITY.md table (about 15 minutes on 2 cores)")
    p.add_argument("--out", type=Path, help="JSON file (default: with --full benchmarks/results/14-reliability/"
                                            "faults.json, else diffusekit-faults.json in the temporary folder)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--work", type=Path, help="where the runs go (default: a temporary directory, removed)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    a = p.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="dk-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    rng, t0, rows = random.Random(a.seed), time.time(), []
    try:
        ref_dir = work / "reference"
        t = time.time()
        r = run(dk("--steps", STEPS, "--out", ref_dir))
        assert r.returncode == 0, r.stderr[-2000:]
        t_ref, ref = time.time() - t, final_state(ref_dir)
        ips = sorted(json.loads(ln)["images_per_s"] for ln in open(ref_dir / "metrics.jsonl"))
        step_ms = 16 / ips[len(ips) // 2] * 1000  # the median logged window, checkpoint writes included
        print(f"reference: {STEPS} steps in {t_ref:.1f} s", file=sys.stderr)

        # full: even trials at a uniform moment, odd ones inside a write; bounded: one, inside a write
        kills = [kill_trial(work, ref, rng, i, t_ref, in_write=i % 2 == 1 or not a.full)
                 for i in range(20 if a.full else 1)]
        rows.append(summarise("SIGKILL at a random moment", "SIGKILL after a seeded uniform delay (even trials) or "
                              "0-4 ms into a seeded checkpoint write (odd trials); then --resume auto", kills,
                              show(dk("--steps", STEPS, "--out", "RUN")) + " ; kill -9 ; same + --resume auto"))
        stale = [{**k, "survived": k["survived"] and k["stale_lock_taken_over"]} for k in kills if k["lock_left"]]
        rows.append(summarise("stale lock of a killed run", "the kill trials that left a .lock (killed while "
                              "holding it): the resume takes the run over with a note", stale, "(the kill trials)"))
        limits = [64_000, 500_000, 1_000_000, 1_500_000] if a.full else [1_000_000]
        disks = [disk_trial(work, ref_dir, ref, lim, i) for i, lim in enumerate(limits)]
        rows.append(summarise("disk full in a checkpoint write", "RLIMIT_FSIZE (SIGXFSZ ignored: write() gets EFBIG) "
                              f"of {', '.join(f'{x / 1e6:g} MB' for x in limits)} on a run at step {STEPS - 2}; "
                              "then --resume without the limit", disks,
                              "(ulimit -f N; " + show(dk("--steps", STEPS, "--out", "RUN", "--resume")) + ")"))
        locks = [lock_trial_resume_while_training(work, ref)] + ([lock_trial_fresh_pair(work, ref)] if a.full else [])
        rows.append(summarise("two processes on one run", "--resume while a run trains (the first paused during "
                              "the attempt)" + ("; two fresh trains started together" if a.full else ""), locks,
                              locks[0]["command"]))
        bads = [bad_data_trial(work, ref, "mid-run")] + ([bad_data_trial(work, ref, "start")] if a.full else [])
        rows.append(summarise("NaN in the data", "one item NaN: in a batch mid-run (the start check bypassed)"
                              + ("; at the start" if a.full else "") + "; then the data fixed and the run continued",
                              bads, "python -c '<load_data with a NaN item>' train ..."))
        if a.full:
            ddp_ref = work / "ddp-reference"
            r = run(torchrun(ddp_ref, restarts=0))
            assert r.returncode == 0, r.stderr[-2000:]
            dref = final_state(ddp_ref)
            ddp = [ddp_trial(work, dref, rng, "kill")]
            rows.append(summarise("torchrun worker killed", "SIGKILL rank 1 after a seeded checkpoint; torchrun "
                                  "--max-restarts 1 re-runs the command, --resume auto continues", ddp, ddp[0]["command"]))
            hang = [ddp_trial(work, dref, rng, "hang")]
            rows.append(summarise("torchrun worker hung", f"SIGSTOP rank 1; collective timeout {TIMEOUT_S} s reports "
                                  "it, torchrun restarts the job", hang, hang[0]["command"]))
        result = {"machine": machine.record(), "mode": "full" if a.full else "bounded", "seed": a.seed, "steps": STEPS,
                  "reference_seconds": round(t_ref, 1), "reference_step_ms": round(step_ms, 1), "rows": rows, "check_cost": check_cost(),
                  "wall_s": round(time.time() - t0, 1)}
        out = a.out or (RESULTS if a.full else Path(tempfile.gettempdir()) / "diffusekit-faults.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=str))
        print_table(rows)
        print(f"{result['wall_s']} s; JSON: {out}")
        return 0 if all(r["data_lost"] == 0 and r["survived"] == r["trials"] for r in rows) else 1
    finally:
        if not a.keep and a.work is None:
            shutil.rmtree(work, ignore_errors=True)


def print_table(rows: list[dict]) -> None:
    print(f"{'fault':34s} {'trials':>6s} {'survived':>8s} {'data lost':>9s}  command")
    for r in rows:
        print(f"{r['fault']:34s} {r['trials']:6d} {r['survived']:8d} {r['data_lost']:9d}  {r['command']}")


if __name__ == "__main__":
    sys.exit(main())
