"""Process environment for stages: telemetry off, hub access per profile, device checks."""

from __future__ import annotations

import os
import socket

from .errors import UserError

# Telemetry off everywhere: without DO_NOT_TRACK axolotl retries its telemetry
# endpoint for minutes after training on a machine without internet.
_QUIET = {
    "DO_NOT_TRACK": "1",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
}


def setup_env(offline: bool) -> None:
    """Set environment defaults before heavy imports; never overrides what the user set."""
    for key, value in {**_QUIET, **(_OFFLINE if offline else {})}.items():
        os.environ.setdefault(key, value)


def require_cuda(profile: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise UserError(
            f"profile {profile!r} needs a CUDA GPU but torch sees none "
            "(use the cpu profile: dvc exp run -S profile=cpu)"
        )


def require_hub(profile: str, host: str = "huggingface.co", timeout: float = 5.0) -> None:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return  # the user pre-downloaded models and said so
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as exc:
        raise UserError(
            f"profile {profile!r} downloads models from {host}, which is unreachable ({exc.__class__.__name__}); "
            "pre-download them and set HF_HUB_OFFLINE=1, or use the cpu profile"
        ) from exc


def require_vram(profile: str, min_gb: float) -> None:
    import torch

    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    if total < min_gb:
        raise UserError(
            f"profile {profile!r} needs a GPU with at least {min_gb:g} GB but GPU 0 has {total:.1f} GB "
            "(rent a bigger pod, or lower profiles.<name>.machine.min_vram_gb if you shrank the model/batch)"
        )


def check_machine(profile_params: dict) -> None:
    """Fail early when the active profile asks for hardware or network the machine lacks."""
    profile = profile_params.get("name", "?")
    if profile_params.get("requires_cuda"):
        require_cuda(profile)
        if profile_params.get("min_vram_gb"):
            require_vram(profile, float(profile_params["min_vram_gb"]))
    if not profile_params.get("offline", True):
        require_hub(profile)
