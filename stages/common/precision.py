"""Compute precision chosen by what the machine can do (`dtype: auto`), shared by train and evaluate.

bf16 only pays off where the hardware multiplies bf16 natively: CUDA GPUs from
Ampere on, and CPUs with AVX512-BF16 or AMX-BF16. Elsewhere torch emulates bf16
matmuls by converting to fp32 and back, which is *slower* than plain fp32
(measured on a 2-core AVX512 Xeon without AVX512-BF16: a 1024x1024 matmul 100 ms
in bf16 vs 25 ms in fp32; LoRA training 56-62 vs 28 s/step). So `auto` picks
bf16 on such hardware and fp32 everywhere else; `bfloat16`/`float32`/`float16`
force a precision (e.g. to measure both paths on one machine).

Every choice comes with a one-line reason that the stages log and write into
their metrics, so a slow run can be explained from its metrics alone.
"""

from __future__ import annotations

from pathlib import Path

DTYPES = ("auto", "bfloat16", "float32", "float16")
# /proc/cpuinfo flags of the CPU instructions that multiply bf16 natively.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags (first `flags` line of /proc/cpuinfo); empty where the file is absent."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def torch_cpu_native_bf16() -> bool:
    """torch's own view (for machines without /proc/cpuinfo, e.g. macOS): AMX in its dispatch capability."""
    try:
        import torch

        return "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper()
    except Exception:  # old torch without the API: no evidence of native bf16
        return False


def cuda_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def choose_dtype(
    requested: str,
    device: str = "cpu",
    *,
    flags: set[str] | None = None,
    cuda_has_bf16: bool | None = None,
) -> tuple[str, str]:
    """(torch dtype name, why) for a params value `auto|bfloat16|float32|float16` on `device`.

    `flags` / `cuda_has_bf16` default to this machine's; tests pass them to check both branches.
    """
    if requested not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {requested!r}")
    if requested != "auto":
        return requested, f"forced by params ({requested})"
    if device.startswith("cuda"):
        has = cuda_bf16() if cuda_has_bf16 is None else cuda_has_bf16
        if has:
            return "bfloat16", "auto: CUDA GPU with bf16 support"
        return "float32", "auto: CUDA GPU without bf16 support (fp16 would need loss scaling)"
    found = sorted((cpu_flags() if flags is None else flags) & set(NATIVE_BF16_FLAGS))
    if found:
        return "bfloat16", f"auto: CPU has native bf16 ({', '.join(found)})"
    if flags is None and torch_cpu_native_bf16():
        return "bfloat16", "auto: torch reports AMX on this CPU (native bf16)"
    return (
        "float32",
        "auto: CPU without native bf16 (no amx_bf16/avx512_bf16): bf16 would be emulated, slower than fp32",
    )
