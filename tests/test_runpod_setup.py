"""scripts/runpod_setup.sh --dry-run: the ordered commands a fresh RunPod pod runs, and no secret printed.

The script runs from a copy in a temporary repo layout, so the remote detection reads that
copy's .dvc/config and not this checkout's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "runpod_setup.sh"
SECRETS = {
    "HF_TOKEN": "hf_TOPSECRETtoken42",
    "AWS_ACCESS_KEY_ID": "AKIASECRETKEYID42",
    "AWS_SECRET_ACCESS_KEY": "aws/SECRET+access+KEY42",
}
APT = "poppler-utils tesseract-ocr tesseract-ocr-kor tesseract-ocr-script-hang fonts-nanum git"


@pytest.fixture()
def pod(tmp_path) -> Path:
    root = tmp_path / "brochure-rag"
    (root / "scripts").mkdir(parents=True)
    (root / ".dvc").mkdir()
    shutil.copy(SCRIPT, root / "scripts" / "runpod_setup.sh")
    (root / ".dvc" / "config").write_text("[core]\n    autostage = true\n", encoding="utf-8")
    return root


def dry_run(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AWS_", "DVC_REMOTE", "TORCH_SPEC", "PADDLE"))
    }
    return subprocess.run(
        ["bash", str(root / "scripts" / "runpod_setup.sh"), "--dry-run", *args],
        env={**base, "WORKSPACE": str(root.parent / "volume"), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def commands(proc: subprocess.CompletedProcess) -> list[str]:
    return [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")]


def setup_commands(root: Path, sudo: str) -> list[str]:
    vol, py = root.parent / "volume", root / ".venv" / "bin" / "python"
    return [
        "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader",
        f"export HF_HOME={vol}/.cache/huggingface",
        f"export PIP_CACHE_DIR={vol}/.cache/pip",
        f"export PADDLE_PDX_CACHE_HOME={vol}/.cache/paddlex",
        f"export PATH={root}/.venv/bin:$PATH",
        f"{sudo}apt-get update -qq",
        f"{sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {APT}",
        "env TORCH_SPEC=torch==2.13.0 bash scripts/setup.sh",
        f"{py} -m pip install -q paddlepaddle-gpu==3.3.1 -i https://www.paddlepaddle.org.cn/packages/stable/cu126/",
        f"{py} -m pip install -q paddleocr==3.7.0",
        f'{py} -c \'import torch; assert torch.cuda.is_available(), "torch sees no CUDA GPU"; '
        'print("torch", torch.__version__, torch.cuda.get_device_name(0))\'',
    ]


SUDO = "" if os.geteuid() == 0 else "sudo "


def test_full_run_with_an_s3_remote_from_the_pod_env(pod):
    proc = dry_run(
        pod,
        "--",
        "-S",
        "train.lora_r=32",
        DVC_REMOTE_URL="s3://my-bucket/brochure-rag",
        DVC_REMOTE_ENDPOINT="https://s3api-eu-ro-1.runpod.io",
        **SECRETS,
    )
    assert proc.returncode == 0, proc.stderr
    assert commands(proc) == [
        *setup_commands(pod, SUDO),
        "dvc remote add --local --force --default storage s3://my-bucket/brochure-rag",
        "dvc remote modify --local storage endpointurl https://s3api-eu-ro-1.runpod.io",
        "dvc pull --run-cache --allow-missing",
        "dvc exp run -S profile=runpod -S train.lora_r=32",
        "dvc push --run-cache",
        "dvc metrics show",
    ]
    everything = proc.stdout + proc.stderr
    for name, secret in SECRETS.items():
        assert secret not in everything, f"{name} leaked"
    assert "HF_TOKEN is set" in proc.stderr
    # A dry run changes nothing: no volume folders, no local DVC config.
    assert not (pod.parent / "volume").exists() and not (pod / ".dvc" / "config.local").exists()


def test_without_a_remote_nothing_is_pulled_or_pushed(pod):
    proc = dry_run(pod, TORCH_SPEC="torch==2.13.0", PADDLE_SPEC="paddlepaddle==3.3.1", PADDLE_INDEX="")
    assert proc.returncode == 0, proc.stderr
    cmds = commands(proc)
    py = pod / ".venv" / "bin" / "python"
    assert f"{py} -m pip install -q paddlepaddle==3.3.1" in cmds  # CPU Paddle from PyPI: no -i
    assert not any(c.startswith(("dvc pull", "dvc push", "dvc remote")) for c in cmds)
    assert cmds[-2:] == ["dvc exp run -S profile=runpod", "dvc metrics show"]
    assert "no DVC remote configured" in proc.stderr and "HF_TOKEN is not set" in proc.stderr


def test_a_remote_committed_in_dvc_config_is_used_as_is(pod):
    (pod / ".dvc" / "config").write_text(
        "[core]\n    remote = storage\n['remote \"storage\"']\n    url = s3://team-bucket/x\n", encoding="utf-8"
    )
    proc = dry_run(pod, WITH_DEEPSPEED="1")
    assert proc.returncode == 0, proc.stderr
    cmds = commands(proc)
    assert not any(c.startswith("dvc remote") for c in cmds)
    assert cmds[-4:] == [
        "dvc pull --run-cache --allow-missing",
        "dvc exp run -S profile=runpod",
        "dvc push --run-cache",
        "dvc metrics show",
    ]
    assert f"{pod}/.venv/bin/python -m pip install -q deepspeed==0.19.8" in cmds


def test_setup_only_and_bad_arguments(pod):
    proc = dry_run(pod, "--setup-only", DVC_REMOTE_URL="s3://b/p")
    assert proc.returncode == 0, proc.stderr
    assert commands(proc) == setup_commands(pod, SUDO)
    bad = dry_run(pod, "--gpu")
    assert bad.returncode == 2 and "unknown argument --gpu" in bad.stderr and not bad.stdout
