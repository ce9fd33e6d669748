"""Tuning probe: FD at n=1000 of sampler settings on a run, rows appended to a JSON file as they finish.
    python benchmarks/fd_probe.py RUN SEEDS '[["restart", 6, {"restart_min": 0.3, ...}], ["heun", 10, {}]]' OUT.json
Rows in this format: tune-19calls.json, tune-39calls.json and check-heun10-seed2.json in
benchmarks/results/5-sampling/fd10-restart/ (BENCHMARKS.md section 5). The data set is fixed to mnist5k. Each row
records the machine and the commit (benchmarks/machine.py); the three files above predate that."""
import json, sys, time
import machine  # benchmarks/machine.py (python puts this script's folder first on sys.path)
from diffusekit.eval import evaluate
from diffusekit.model import TrainedModel

run_dir, seeds, specs, out_path = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], json.loads(sys.argv[3]), sys.argv[4]
model = TrainedModel.load(run_dir)
rows, record = [], machine.record()
for sampler, steps, opts in specs:
    for seed in seeds:
        calls = []
        t0 = time.perf_counter()
        x = model.sample(1000, sampler=sampler, steps=steps, seed=seed, batch=250, callback=lambda d: calls.append(d["i"]), **opts)
        fd = evaluate(x, "mnist5k", metrics=("fd",), n=1000, progress=False)["fd"]["value"]
        rows.append({"sampler": sampler, "steps": steps, "options": opts, "seed": seed, "fd": round(fd, 3),
                     "steps_per_batch": len(calls) // 4, "seconds": round(time.perf_counter() - t0, 1), "machine": record})
        print(json.dumps(rows[-1]), flush=True)
        json.dump(rows, open(out_path, "w"), indent=1)
