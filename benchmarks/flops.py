"""FLOP accounting for CPU benchmarks: the machine's matmul peak, the FLOPs of a training step, and where its time goes.

Shared by the benchmark scripts (`train_speed.py` uses all three); torch only, no diffusekit imports, so it measures
any network the same way.

- `measure_peak`: large square GEMMs (`torch.mm` on bf16 and on fp32 tensors), warm-up then the median of
  repeats, per size; the peak is the best size's median. This is the ceiling the issue's goal (training FLOP/s >= 35%
  of the bf16 matmul peak) is measured against. On this build bf16 GEMMs go to oneDNN (brgemm, avx512_core_bf16)
  and fp32 ones to MKL's sgemm. The peak per CPU-second (`<dtype>_peak_cpu`) is measured over blocks of calls that
  last at least `MIN_CPU_BLOCK_S`, not per call: see `matmul_gflops`.
- `count_flops`: runs a callable (one whole training step: forward, backward, optimizer) under
  `torch.utils.flop_counter.FlopCounterMode`, which counts only matrix products: convolutions (forward and both
  backward products), mm / addmm / bmm (so nn.Linear, matmul and einsum) and scaled-dot-product attention. Norms,
  activations, elementwise ops, softmax and the optimizer count zero. One FLOP = one multiply or one add (a
  multiply-add is 2). The backward is counted as executed, not as "2x the forward": e.g. the first conv has no
  input gradient.
  torch 2.13's counter has no formula for the CPU attention kernels (`_scaled_dot_product_flash_attention_for_cpu`
  and its backward) and silently counts them as 0; `CPU_SDPA_FORMULAS` adds torch's own SDPA formulas for them.
- `time_breakdown`: torch.profiler over a few steps, joined with the FLOP counts per op, so that each FLOP-bearing
  op gets its time and GFLOP/s and the rest of the step (norms, activations, copies, Python) gets its time.
"""

import json
import statistics
import time
from collections import defaultdict

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

import machine  # benchmarks/machine.py (python puts this script's folder first on sys.path)

aten = torch.ops.aten


# --- the machine ---------------------------------------------------------------------------------------------------

def machine_info() -> dict:
    """The machine and commit record of benchmarks/machine.py (kept under this name for the scripts that use it)."""
    return machine.record()


MIN_CPU_BLOCK_S = 0.25  # the CPU-time rate is taken over at least this much wall time of back-to-back calls


def matmul_gflops(n: int, dtype: torch.dtype, repeats: int = 5, warmup: int = 2) -> dict:
    """GFLOP/s of an (n, n) @ (n, n) product in `dtype`: median, min and max over `repeats` timed calls; and
    `cpu_rate`, GFLOP per second of process CPU time (all threads), with `cpu_per_wall`, the CPU-seconds the
    process used per wall-clock second (about the number of busy threads).

    `torch.mm(a, b, out=c)` with preallocated tensors, so the allocator is not timed. 2 n^3 FLOPs per call.
    The CPU rate is measured over one block of back-to-back calls lasting at least MIN_CPU_BLOCK_S, not per call:
    Linux brings a thread's CPU time on another core up to date only at a scheduler tick or switch, so a 2 ms call
    (n = 1024 on 2 threads) read the process CPU time at anything from 1.0 to 2.6 CPU-seconds per second (the
    `cpu_median` of earlier result files), and a peak per CPU-second taken as the best of such per-call rates was
    up to 2x too high, which made every training fraction of it about 2x too low."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)  # (n, n)
    b = torch.randn(n, n, generator=g).to(dtype)  # (n, n)
    c = torch.empty(n, n, dtype=dtype)
    for _ in range(warmup):
        torch.mm(a, b, out=c)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    calls, t0, c0 = 0, time.perf_counter(), time.process_time()
    while calls < repeats or time.perf_counter() - t0 < MIN_CPU_BLOCK_S:
        torch.mm(a, b, out=c)
        calls += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": repeats,
            "cpu_rate": 2 * n**3 * calls / cpu / 1e9, "cpu_per_wall": cpu / wall, "cpu_block_calls": calls}


def measure_peak(sizes=(1024, 2048, 4096), dtypes=("bf16", "fp32"), repeats: int = 5, warmup: int = 2) -> dict:
    """Matmul GFLOP/s for each dtype and size; `<dtype>_peak` is the best size's median (wall clock) and
    `<dtype>_peak_cpu` the best size's GFLOP per CPU-second (over a block of calls, see `matmul_gflops`).

    The peak is a measured ceiling for this process's thread count, not the data sheet's: FLOP/s of a training step
    divided by it says how much of what the CPU actually delivers on its best-case kernel the step gets. Both rates
    count the CPU time of every thread the same way as a training step's `process_time` does, so training GFLOP per
    CPU-second over `<dtype>_peak_cpu` is a like-for-like fraction at any thread count."""
    out = {"sizes": list(sizes), "repeats": repeats, "threads": torch.get_num_threads(), "started": time.time()}
    for name in dtypes:
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[name]
        per_size = {str(n): matmul_gflops(n, dtype, repeats, warmup) for n in sizes}
        out[name] = per_size
        out[f"{name}_peak"] = max(r["median"] for r in per_size.values())
        out[f"{name}_peak_cpu"] = max(r["cpu_rate"] for r in per_size.values())
    return out


# --- FLOPs of a step --------------------------------------------------------------------------------------------------

def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                            **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# The CPU attention kernels that F.scaled_dot_product_attention dispatches to; FlopCounterMode knows only the CUDA ones.
CPU_SDPA_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flop,
}


def count_flops(fn) -> tuple[int, dict[str, int]]:
    """Run `fn()` once under FlopCounterMode (with the CPU attention formulas); return (total FLOPs, FLOPs per aten op).

    Op names are the profiler's spelling ("aten::convolution_backward") so `time_breakdown` can join on them."""
    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FORMULAS) as fc:
        fn()
    by_op = {str(op).replace(".", "::", 1): int(n) for op, n in fc.get_flop_counts().get("Global", {}).items()}
    return fc.get_total_flops(), by_op


# --- where the time goes ---------------------------------------------------------------------------------------------

def time_breakdown(fn, steps: int, flops_by_op: dict[str, int], top: int = 12):
    """Profile `steps` calls of `fn` (one training step each); return (step_ms, rows, others).

    rows: one per FLOP-bearing op: calls, ms per step (the op's inclusive time, i.e. its kernels plus any layout
    reorders it does inside), GFLOP per step (from `flops_by_op`, counted for one step) and GFLOP/s.
    others: the `top` ops by self time that count no FLOPs (norms, activations, copies...), ms per step.
    The profiler adds a few microseconds per op, so small ops look slower than they are: trust the big rows."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        step_ms = (time.perf_counter() - t0) / steps * 1e3
    avg = {e.key: e for e in prof.key_averages()}
    rows = []
    for op, n in sorted(flops_by_op.items(), key=lambda kv: -kv[1]):
        e = avg.get(op)
        ms = e.cpu_time_total / steps / 1e3 if e else float("nan")
        rows.append({"op": op, "calls": (e.count // steps) if e else 0, "ms": ms, "gflop": n / 1e9,
                     "gflops": n / 1e9 / (ms / 1e3) if e and ms > 0 else float("nan")})
    # Self time of everything else, from the raw events: an op that runs inside a FLOP op (mkldnn_convolution, a
    # reorder copy inside convolution_backward) is already in that op's inclusive time above.
    flop_ms = sum(r["ms"] for r in rows if r["ms"] == r["ms"])
    self_ms = defaultdict(float)
    for ev in prof.events():
        if ev.name in flops_by_op or _under(ev, flops_by_op):
            continue
        self_ms[ev.name] += ev.self_cpu_time_total / steps / 1e3
    others = sorted(self_ms.items(), key=lambda kv: -kv[1])[:top]
    return step_ms, rows, {"flop_ops_ms": flop_ms, "top_other_ops_ms": others}


def _under(ev, names) -> bool:
    """True when a profiler event runs inside one of the ops in `names`."""
    parent = ev.cpu_parent
    while parent is not None:
        if parent.name in names:
            return True
        parent = parent.cpu_parent
    return False


def print_breakdown(step_ms: float, rows, others) -> None:
    print(f"\nprofiled step: {step_ms:.1f} ms (profiler overhead included)")
    print(f"{'FLOP-bearing op':58s} {'calls':>6s} {'ms/step':>8s} {'% step':>7s} {'GFLOP':>7s} {'GFLOP/s':>8s}")
    for r in rows:
        print(f"{r['op']:58s} {r['calls']:6d} {r['ms']:8.1f} {100 * r['ms'] / step_ms:6.1f}% {r['gflop']:7.2f} "
              f"{r['gflops']:8.0f}")
    rest = step_ms - others["flop_ops_ms"]
    print(f"{'all FLOP-bearing ops':58s} {'':6s} {others['flop_ops_ms']:8.1f} "
          f"{100 * others['flop_ops_ms'] / step_ms:6.1f}%")
    print(f"{'everything else (counts 0 FLOPs)':58s} {'':6s} {rest:8.1f} {100 * rest / step_ms:6.1f}%")
    print(f"\n{'largest ops outside them, self time':58s} {'':6s} {'ms/step':>8s}")
    for name, ms in others["top_other_ops_ms"]:
        print(f"{name[:58]:58s} {'':6s} {ms:8.1f}")


if __name__ == "__main__":  # the peak alone: python benchmarks/flops.py
    import argparse

    p = argparse.ArgumentParser(description="Measure this machine's matmul peak (bf16 and fp32).")
    p.add_argument("--sizes", default="1024,2048,4096")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps({"machine": machine_info(),
                      "peak": measure_peak(tuple(int(s) for s in a.sizes.split(",")), repeats=a.repeats)}, indent=1))
