#!/usr/bin/env bash
# Take a fresh RunPod pod (official PyTorch template, volume at /workspace) to a full run of
# the pipeline on the runpod profile, with the DVC remote on S3 before and after:
#
#   cd /workspace && git clone <this repo> brochure-rag && cd brochure-rag
#   bash scripts/runpod_setup.sh                          # set up, dvc pull, dvc exp run -S profile=runpod, dvc push
#   bash scripts/runpod_setup.sh --dry-run                # print every command instead of running it
#   bash scripts/runpod_setup.sh --setup-only             # stop after the environment is ready
#   bash scripts/runpod_setup.sh -- -S train.lora_r=32    # extra arguments for `dvc exp run`
#
# Settings, from the pod's environment (RunPod: Pod -> Edit -> Environment Variables, or Secrets).
# Secret values are only read by the tools that need them; this script never prints or stores them.
#   HF_TOKEN              Hugging Face token (gated models; `python -m publish`); huggingface_hub reads it
#   DVC_REMOTE_URL        s3://bucket/path -> the default DVC remote (written to .dvc/config.local)
#   DVC_REMOTE_ENDPOINT   endpoint URL of S3-compatible storage (RunPod S3, R2, MinIO ...); unset for AWS S3
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION    read by dvc-s3 from the environment
#   WORKSPACE             the persistent volume (default /workspace): Hugging Face, pip and Paddle caches
#   TORCH_SPEC            torch wheel (default torch==2.13.0: the PyPI Linux wheel is the CUDA 12 build)
#   PADDLE_SPEC, PADDLE_INDEX   PaddlePaddle for the runpod OCR engine (default: the CUDA 12.6 build from
#                         Paddle's own index; PADDLE_SPEC=paddlepaddle==3.3.1 PADDLE_INDEX= for the CPU build)
#   WITH_DEEPSPEED=1      also install DeepSpeed (multi-GPU ZeRO-2, see README "RunPod")
#   PYTHON                the interpreter for the venv (default python3; needs 3.11+)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORKSPACE="${WORKSPACE:-/workspace}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PADDLEOCR_SPEC="paddleocr==3.7.0"
PADDLE_SPEC="${PADDLE_SPEC:-paddlepaddle-gpu==3.3.1}"
PADDLE_INDEX="${PADDLE_INDEX-https://www.paddlepaddle.org.cn/packages/stable/cu126/}"
DEEPSPEED_SPEC="deepspeed==0.19.8"
APT_PACKAGES=(poppler-utils tesseract-ocr tesseract-ocr-kor tesseract-ocr-script-hang fonts-nanum git)

DRY_RUN=""
SETUP_ONLY=""
EXP_ARGS=()
while (($#)); do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --setup-only) SETUP_ONLY=1 ;;
    --) shift; EXP_ARGS=("$@"); break ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "runpod_setup: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf 'runpod_setup: %s\n' "$*" >&2; }
# Shell-quote for display: plain words stay as they are, anything else in single quotes.
quote() {
  local word=$1
  if [[ -n $word && $word =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then
    printf '%s' "$word"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}
# Every action goes through run: printed (copy-pasteable) in a dry run, executed otherwise.
run() {
  if [ -n "$DRY_RUN" ]; then
    local out="+" arg
    for arg in "$@"; do out+=" $(quote "$arg")"; done
    printf '%s\n' "$out"
  else
    "$@"
  fi
}
# Exported in both modes (later steps read them); printed in a dry run as $3 (default: the value).
setenv() {
  export "$1=$2"
  [ -z "$DRY_RUN" ] || printf '+ export %s=%s\n' "$1" "${3:-$(quote "$2")}"
}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# requirements.lock is resolved for CPython 3.11+ (RunPod's PyTorch images have had 3.10 and 3.11).
PY="${PYTHON:-python3}"
if [ -z "$DRY_RUN" ] && ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  say "$PY is older than 3.11: pick a PyTorch template with py3.11, or set PYTHON=python3.11"
  exit 1
fi

# --- 1. the GPU ------------------------------------------------------------------
say "GPU:"
run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# --- 2. caches on the volume (the container disk is wiped when the pod stops) ------
setenv HF_HOME "$WORKSPACE/.cache/huggingface"
setenv PIP_CACHE_DIR "$WORKSPACE/.cache/pip"
setenv PADDLE_PDX_CACHE_HOME "$WORKSPACE/.cache/paddlex"
setenv PATH "$ROOT/.venv/bin:$PATH" "$(quote "$ROOT/.venv/bin"):\$PATH"
if [ -n "${HF_TOKEN:-}" ]; then
  say "HF_TOKEN is set (used by huggingface_hub from the environment; not printed, not saved)"
else
  say "HF_TOKEN is not set: public models only, no Hub publishing"
fi

# --- 3. system packages: PDF rendering, Tesseract (fallback OCR), Korean fonts ----
run $SUDO apt-get update -qq
run $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"

# --- 4. the venv: the same script as the cpu setup, with the CUDA torch wheel -----
# scripts/setup.sh installs TORCH_SPEC with its dependencies (on Linux the PyPI wheel brings
# CUDA 12 libraries), then requirements.lock without deps; bitsandbytes there has CUDA kernels.
run env TORCH_SPEC="$TORCH_SPEC" bash scripts/setup.sh

# --- 5. what only the runpod profile needs ---------------------------------------
# PaddleOCR is not in requirements.lock (the cpu profile uses Tesseract); it downgrades PyYAML
# 6.0.3 -> 6.0.2 (paddlex pins it) and adds nothing else that the lock pins.
if [ -n "$PADDLE_INDEX" ]; then
  run "$ROOT/.venv/bin/python" -m pip install -q "$PADDLE_SPEC" -i "$PADDLE_INDEX"
else
  run "$ROOT/.venv/bin/python" -m pip install -q "$PADDLE_SPEC"
fi
run "$ROOT/.venv/bin/python" -m pip install -q "$PADDLEOCR_SPEC"
if [ -n "${WITH_DEEPSPEED:-}" ]; then
  run "$ROOT/.venv/bin/python" -m pip install -q "$DEEPSPEED_SPEC"
fi
# Fails here, not an hour into the run, when torch lost CUDA (e.g. Paddle replaced its libraries).
run "$ROOT/.venv/bin/python" -c 'import torch; assert torch.cuda.is_available(), "torch sees no CUDA GPU"; print("torch", torch.__version__, torch.cuda.get_device_name(0))'

if [ -n "$SETUP_ONLY" ]; then
  say "environment ready; run: . .venv/bin/activate && dvc exp run -S profile=runpod"
  exit 0
fi

# --- 6. the DVC remote ------------------------------------------------------------
if [ -n "${DVC_REMOTE_URL:-}" ]; then
  # .dvc/config.local is not committed: a pod's remote never ends up in git.
  run dvc remote add --local --force --default storage "$DVC_REMOTE_URL"
  if [ -n "${DVC_REMOTE_ENDPOINT:-}" ]; then
    run dvc remote modify --local storage endpointurl "$DVC_REMOTE_ENDPOINT"
  fi
fi
has_remote=""
if [ -n "${DVC_REMOTE_URL:-}" ] || grep -qsE '^\s*remote\s*=' .dvc/config .dvc/config.local; then
  has_remote=1
fi

# --- 7. pull, run, push -------------------------------------------------------------
# --run-cache: stages already run elsewhere with the same deps and params (e.g. parse and index
# from an earlier pod) are restored instead of recomputed; --allow-missing: a new remote is fine.
if [ -n "$has_remote" ]; then
  run dvc pull --run-cache --allow-missing
else
  say "no DVC remote configured (set DVC_REMOTE_URL): every stage is computed, nothing is pushed"
fi
run dvc exp run -S profile=runpod "${EXP_ARGS[@]}"
if [ -n "$has_remote" ]; then
  run dvc push --run-cache
fi
run dvc metrics show
say "done. Publish to the Hub (opt-in): python -m publish --dry-run hub-preview, then python -m publish"
