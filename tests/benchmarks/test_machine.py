"""benchmarks/machine.py: every result file a benchmark script writes names its machine and commit; and
benchmarks/flops.py's matmul peak per CPU-second is measured over a block of calls, the same way as a training step."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import flops  # noqa: E402
import machine  # noqa: E402


def test_record_names_cpu_threads_gpu_torch_and_commit():
    import torch

    r = machine.record()
    for key in ("cpu", "logical_cpus", "threads", "gpu", "torch", "commit", "dirty", "python", "avx512_bf16"):
        assert key in r, key
    assert isinstance(r["cpu"], str) and r["cpu"]
    assert r["threads"] == torch.get_num_threads() and r["torch"] == torch.__version__
    assert r["gpu"] is None or isinstance(r["gpu"], str)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=BENCH).stdout.strip()
    assert r["commit"] == (head or None)


def test_flops_machine_info_is_the_shared_record():
    assert set(flops.machine_info()) == set(machine.record())


def test_matmul_cpu_rate_is_over_a_block_of_calls():
    r = flops.matmul_gflops(64, __import__("torch").float32, repeats=2, warmup=1)
    assert r["cpu_block_calls"] >= 2 and r["cpu_rate"] > 0 and r["cpu_per_wall"] > 0
    assert "cpu_median" not in r  # the per-call CPU rate (unreliable at 2 threads) is gone
