"""DVC with an S3 remote, for real: `dvc push` / `dvc pull` of a pipeline output through dvc-s3
against moto_server on 127.0.0.1 (an S3-compatible server; nothing leaves the machine).

moto lives in its own venv (.venv-moto, made by scripts/setup.sh) because its botocore pins
clash with the aiobotocore that dvc-s3 needs.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MOTO_SERVER = REPO / ".venv-moto" / "bin" / "moto_server"
BUCKET = "brochure-rag-test"
PREFIX = "dvcstore"

pytestmark = [
    pytest.mark.skipif(
        not MOTO_SERVER.is_file(),
        reason=".venv-moto/bin/moto_server missing: scripts/setup.sh creates it (needs PyPI for moto[server])",
    ),
    pytest.mark.skipif(shutil.which("git") is None, reason="git not installed"),
]

# Writes a directory output with Korean text and binary bytes, like a real stage.
STAGE_SCRIPT = """
import pathlib, sys
src = pathlib.Path("data/brochure.txt").read_text(encoding="utf-8")
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
(out / "chunks.jsonl").write_text("".join('{"text": "%s"}\\n' % line for line in src.splitlines()), encoding="utf-8")
(out / "weights.bin").write_bytes(bytes(range(256)) * 64)
"""


@pytest.fixture()
def moto(tmp_path):
    """Start moto_server on a free port; yield its endpoint URL; stop it."""
    proc = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    endpoint, seen = None, []
    try:
        while endpoint is None:
            line = lines.get(timeout=20)
            seen.append(line)
            m = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
            endpoint = m.group(1) if m else None
    except queue.Empty:
        proc.kill()
        pytest.fail("moto_server did not start within 20 s:\n" + "".join(seen))
    try:
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def s3_keys(endpoint: str) -> list[str]:
    with urllib.request.urlopen(f"{endpoint}/{BUCKET}?list-type=2&max-keys=1000", timeout=10) as resp:
        root = ET.fromstring(resp.read())
    ns = {"s3": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
    return sorted(el.text for el in root.findall(".//s3:Key" if ns else ".//Key", ns))


def test_dvc_push_and_pull_round_trip_through_s3(moto, tmp_path):
    # moto accepts unsigned requests: make the bucket the remote points into.
    req = urllib.request.Request(f"{moto}/{BUCKET}", method="PUT")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": "testing",  # moto accepts any credentials; dvc-s3 reads them from the env
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "DVC_NO_ANALYTICS": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "brochure.txt").write_text("의림지 043-651-7101\n청풍호반 케이블카\n", encoding="utf-8")
    (repo / "make_out.py").write_text(STAGE_SCRIPT, encoding="utf-8")

    def run(*cmd: str) -> str:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    dvc = (sys.executable, "-m", "dvc")
    run("git", "init", "-q")
    run(*dvc, "init", "-q")
    run(*dvc, "stage", "add", "-q", "-n", "make", "-d", "data/brochure.txt", "-d", "make_out.py", "-o", "out",
        f"{sys.executable} make_out.py")  # fmt: skip
    run(*dvc, "repro", "-q")
    original = {p.name: p.read_bytes() for p in (repo / "out").iterdir()}
    assert set(original) == {"chunks.jsonl", "weights.bin"}

    # The README's commands: a default remote on S3, the endpoint for S3-compatible storage.
    run(*dvc, "remote", "add", "-d", "storage", f"s3://{BUCKET}/{PREFIX}")
    run(*dvc, "remote", "modify", "storage", "endpointurl", moto)
    config = (repo / ".dvc" / "config").read_text()
    assert "testing" not in config  # credentials stay in the environment

    pushed = run(*dvc, "push")
    assert "3 files pushed" in pushed  # the two files + the directory listing
    cache = sorted(
        p.relative_to(repo / ".dvc" / "cache" / "files" / "md5").as_posix()
        for p in (repo / ".dvc" / "cache" / "files" / "md5").rglob("*")
        if p.is_file()
    )
    assert s3_keys(moto) == [f"{PREFIX}/files/md5/{key}" for key in cache]

    # A fresh machine: no cache, no outputs; pull restores them byte for byte.
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "out")
    run(*dvc, "pull")
    assert {p.name: p.read_bytes() for p in (repo / "out").iterdir()} == original
    status = run(*dvc, "status", "--cloud")
    assert "Cache and remote 'storage' are in sync" in status
