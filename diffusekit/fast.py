"""The CPU fast path, in one place: bf16 autocast where the CPU runs bf16 natively, channels_last, a fused
optimizer step, a quiet allocator, and the device. The plain fp32 path is simply not calling these; tests check the two agree.

How a training loop uses it:

    dtype, fmt = fast_settings(device, dims=2)        # e.g. (torch.bfloat16, torch.channels_last)
    model = prepare_model(model, device, dims=2)      # .to(device, memory_format=fmt)
    opt = adamw(model.parameters(), lr=2e-4)           # fused AdamW where available
    with autocast(device):                             # bf16 autocast, or nothing
        loss = F.mse_loss(model(x, c_noise).float(), target)
    loss.backward(); opt.step()

and, before the process starts, the environment from `allocator_env()` (the CLI re-executes itself with it through
`reexec_with_allocator_env()`).

Why each switch (measured on a 2-core AVX512-BF16 CPU, training a 1.7M-parameter UNet at 32x32: 1.75x faster than
plain fp32 in all; BENCHMARKS.md section 2):
- bf16: convolutions run 2-3x faster than fp32 through oneDNN. Only where the CPU has native bf16 (AVX512-BF16 or
  AMX); elsewhere oneDNN emulates bf16 (not measured here), so the fast path stays fp32 there.
- channels_last: oneDNN's convolutions are fastest in NHWC. It only pays end to end because diffusekit's
  GroupNorm (nets.layers.GroupNormAct) stays fast in that layout; PyTorch's own does not (diffusers' UNet gets
  2x slower in channels_last).
- fused AdamW: one kernel over all parameters instead of a Python loop of small ops.
- the allocator settings: no effect measured at 1.5M parameters / batch 64; kept because they cost nothing and
  larger nets page-fault more (not measured in this repository).
- autocast keeps fp32 master weights and casts each weight once per forward (its cast cache), which is cheap for
  nets of a few million parameters; nothing else is needed.
"""

import contextlib
import os
import sys

import torch


def pick_device(device: str = "auto") -> torch.device:
    """'auto': CUDA when there is a GPU, else the CPU; 'cuda' without one is an error that says what to pass."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available; use --device cpu or auto")
    return d


def native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16), not by emulation."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers moved: read the CPU flags instead
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
        except OSError:
            return False
        return " avx512_bf16" in flags or " amx_bf16" in flags


def fast_settings(device, dims: int = 2) -> tuple[torch.dtype | None, torch.memory_format]:
    """(autocast dtype or None for plain fp32, memory format) for training a `dims`-D conv net on `device`.

    CPU: bf16 only with native bf16; channels_last (channels_last_3d for 3-D) in both dtypes -- measured faster
    end to end here for bf16 (1.2x) and for fp32 (1.12x); 1-D tensors have no channels_last. CUDA: bf16 where supported,
    contiguous format (not measured here)."""
    device = torch.device(device)
    if device.type == "cpu":
        dtype = torch.bfloat16 if native_bf16() else None
        return dtype, {2: torch.channels_last, 3: torch.channels_last_3d}.get(dims, torch.contiguous_format)
    if device.type == "cuda":
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else None), torch.contiguous_format
    return None, torch.contiguous_format


def prepare_model(model: torch.nn.Module, device, dims: int = 2) -> torch.nn.Module:
    """Move `model` to `device` and to the fast memory format. Weights stay fp32 (autocast casts them).
    Inputs need no conversion: a channels_last conv weight makes the first conv's output channels_last."""
    _, fmt = fast_settings(device, dims)
    return model.to(device=device, memory_format=fmt)


def autocast(device, dims: int = 2):
    """torch.autocast with the fast dtype, or a no-op context where the fast path is fp32."""
    device = torch.device(device)
    dtype, _ = fast_settings(device, dims)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def adamw(params, lr: float = 1e-4, **kwargs) -> torch.optim.AdamW:
    """AdamW with the fused kernel (CPU and CUDA, torch >= 2.4): one pass over all parameters per step.
    The default for-loop step issues hundreds of small ops per step on CPU (255 `div` calls a step in a
    torch.profiler run of a 1.5M-parameter UNet)."""
    kwargs.setdefault("fused", True)
    return torch.optim.AdamW(params, lr=lr, **kwargs)


# glibc's malloc gives large activation buffers back to the OS after every step and faults them in again (page
# faults and kernel time every step). These settings keep freed memory in the process: no buffer is mmap'ed, the heap
# is never trimmed. glibc reads them only at process start. (Through mallopt() at run time glibc caps the mmap
# threshold at 32 MiB; through the environment it takes this value.)
ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(4 * 1024**3),
    "MALLOC_TRIM_THRESHOLD_": str(64 * 1024**3),
}


def allocator_env() -> dict[str, str]:
    """Environment variables for a quiet allocator; set them before starting Python (or use reexec_with_...)."""
    return dict(ALLOCATOR_ENV)


def allocator_configured() -> bool:
    return all(os.environ.get(k) == v for k, v in ALLOCATOR_ENV.items())


def reexec_with_allocator_env(argv: list[str] | None = None) -> None:
    """Re-execute this Python process with `allocator_env()` set, unless it already is (then return).
    Call first thing in a CLI entry point: nothing before it survives. Linux/glibc only; elsewhere a no-op."""
    if allocator_configured() or not sys.platform.startswith("linux"):
        return
    os.environ.update(ALLOCATOR_ENV)
    argv = sys.argv if argv is None else argv
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)  # set when started as `python -m pkg.module`
    if spec is not None and spec.name != "__main__":
        argv = ["-m", spec.name] + argv[1:]
    os.execv(sys.executable, [sys.executable] + argv)
