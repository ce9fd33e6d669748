"""The job queue of `diffusekit serve`: one worker thread per model runs its jobs one at a time (a CPU has no room for
two), the rest wait in a bounded queue that tells each job its place; a full queue refuses (the API answers 429).

A job's life: queued -> running -> done | failed | cancelled. While it runs, the worker appends events (progress,
previews) that any number of readers follow by index into `Job.events`; cancelling sets a flag that the per-step
callback checks, so a job stops within one denoising step. Finished jobs stay in a bounded history (their files stay
on disk in the server's output folder); only the newest finished job of each model keeps every step's preview (a
reader that comes late still sees them all), older ones keep their last, so memory does not grow with the jobs
served.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

STATES = ("queued", "running", "done", "failed", "cancelled")
HISTORY = 500  # finished jobs remembered (their files stay on disk)


class QueueFull(Exception):
    """The model's queue holds as many waiting jobs as allowed: try again later (HTTP 429)."""


class Cancelled(Exception):
    """Raised inside a running job (by its per-step callback) once the job was cancelled."""


@dataclass
class Job:
    id: str
    model: str
    params: dict  # the request, checked: what the job does (it goes into the PNGs' metadata)
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    step: int = 0
    total: int = 0
    error: str | None = None
    files: list[str] = field(default_factory=list)  # result file names in the job's output folder
    result: dict = field(default_factory=dict)  # small JSON facts of the result (labels, prompts, metrics)
    events: list[dict] = field(default_factory=list)
    inputs: dict = field(default_factory=dict, repr=False)  # uploads (image, mask bytes), checked; dropped at the end
    cancel_requested: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def emit(self, event: dict) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def progress(self, step: int, total: int, preview: dict | None = None) -> None:
        """Called by the worker after each step: records it and raises Cancelled once a cancel was asked."""
        if self.cancel_requested:
            raise Cancelled()
        self.step, self.total = step, total
        self.emit({"type": "progress", "step": step, "total": total, "eta_s": self.eta(), **(preview or {})})

    def eta(self) -> float | None:
        if not self.started or self.step == 0 or self.total == 0:
            return None
        per_step = (time.time() - self.started) / self.step
        return round(per_step * (self.total - self.step), 2)

    def summary(self, position: int | None = None) -> dict:
        return {"id": self.id, "model": self.model, "params": self.params, "state": self.state,
                "position": position, "step": self.step, "total": self.total, "eta_s": self.eta(),
                "error": self.error, "files": self.files, "result": self.result, "created": self.created,
                "started": self.started, "finished": self.finished}

    def end(self, state: str, error: str | None = None) -> None:
        """Finish the job: the last event says how, with its files."""
        with self.changed:
            self.state, self.error, self.finished = state, error, time.time()
            self.inputs = {}
            self.events.append({"type": state, "error": error, "files": self.files, "result": self.result})
            self.changed.notify_all()

    def drop_previews(self) -> None:
        """Keep only the last preview (bounded memory once a newer job of the model has finished). The events keep
        their places, so a reader's index stays valid."""
        with self.changed:
            last = next((i for i in range(len(self.events) - 1, -1, -1) if "x_t" in self.events[i]), None)
            self.events = [e if i == last else {k: v for k, v in e.items() if k not in ("x_t", "x0_hat")}
                           for i, e in enumerate(self.events)]


class JobQueue:
    """Jobs of every model: submit, look up, cancel, list. `run(job)` does the work (in the model's worker)."""

    def __init__(self, models: list[str], run: Callable[[Job], None], max_waiting: int = 8):
        self.run, self.max_waiting = run, max_waiting
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.finished: collections.deque[str] = collections.deque()
        self.waiting: dict[str, collections.deque[Job]] = {m: collections.deque() for m in models}
        self.wake = {m: threading.Condition(self.lock) for m in models}
        self.last_finished: dict[str, Job] = {}
        self.stopping = False
        self.workers = [threading.Thread(target=self._work, args=(m,), name=f"diffusekit-{m}", daemon=True)
                        for m in models]
        for w in self.workers:
            w.start()

    def submit(self, model: str, params: dict, inputs: dict | None = None) -> tuple[Job, int]:
        """Queue a job; returns it and its place (1 = next). Raises QueueFull when the model's queue is full."""
        with self.lock:
            if len(self.waiting[model]) >= self.max_waiting:
                raise QueueFull(f"the queue of {model!r} is full ({self.max_waiting} jobs waiting); try again later")
            job = Job(secrets.token_hex(8), model, params, inputs=inputs or {})
            self.jobs[job.id] = job
            self.waiting[model].append(job)
            self.wake[model].notify()
            return job, len(self.waiting[model])

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """1-based place among the model's waiting jobs; 0 while running; None once finished."""
        with self.lock:
            if job.state == "running":
                return 0
            if job.state != "queued":
                return None
            return next((i + 1 for i, j in enumerate(self.waiting[job.model]) if j is job), None)

    def cancel(self, job: Job) -> None:
        """A waiting job leaves the queue at once; a running one stops at its next step."""
        with self.lock:
            job.cancel_requested = True
            if job.state == "queued":
                self.waiting[job.model].remove(job)
                self._finish(job, "cancelled")

    def listing(self) -> list[dict]:
        with self.lock:
            jobs = list(self.jobs.values())
        return [j.summary(self.position(j)) for j in sorted(jobs, key=lambda j: j.created, reverse=True)]

    def close(self) -> None:
        with self.lock:
            self.stopping = True
            for c in self.wake.values():
                c.notify_all()

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:  # under self.lock
        job.end(state, error)
        previous = self.last_finished.get(job.model)
        if previous is not None:
            previous.drop_previews()  # only the newest finished job of a model keeps every step's preview
        self.last_finished[job.model] = job
        self.finished.append(job.id)
        while len(self.finished) > HISTORY:
            self.jobs.pop(self.finished.popleft(), None)

    def _work(self, model: str) -> None:
        while True:
            with self.lock:
                while not self.waiting[model] and not self.stopping:
                    self.wake[model].wait()
                if self.stopping:
                    return
                job = self.waiting[model].popleft()
                job.state, job.started = "running", time.time()
            state, error = "done", None
            try:
                self.run(job)
            except Cancelled:
                state = "cancelled"
            except (ValueError, FileNotFoundError) as e:  # what the user can fix: their words, one line
                state, error = "failed", str(e)
            except Exception as e:  # a bug: the server keeps serving, the job says what happened
                traceback.print_exc()
                state, error = "failed", f"internal error: {type(e).__name__}: {e}"
            with self.lock:
                self._finish(job, state, error)
