"""Hub publishing (python -m publish): dry-run contents, the missing-token error, and a real push
to a local mock of the Hub's HTTP API (no network beyond 127.0.0.1)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from publish import hub

REPO = Path(__file__).resolve().parents[1]
FAKE_TOKEN = "hf_FAKEtoken0123456789secret"
ABSTAIN = "브로셔에 해당 정보가 없습니다."

PARAMS = {
    "profile": "runpod",
    "prompt": {"system": "브로셔 문서만 보고 답하세요.", "abstain": ABSTAIN},
    "publish": {"dataset_repo": "tiny-qa", "adapter_repo": "tiny-adapter", "private": True, "license": "apache-2.0"},
    "profiles": {
        "runpod": {"model": {"source": "hub", "name": "Qwen/Qwen2.5-7B-Instruct", "revision": "abc123"}},
    },
}

# Distinctive numbers that must reach the card unchanged.
COMPARISON = {
    "ci": 0.95,
    "testsets": {
        "template": {
            "n": 12,
            "values": {
                "correct": {"baseline": 0.125, "baseline_fewshot": 0.25, "finetuned": 0.6667},
                "f1_char": {"baseline": 0.2041, "baseline_fewshot": 0.3, "finetuned": 0.8123},
                "abstain_p": {"baseline": None, "baseline_fewshot": 0.5, "finetuned": 0.9},
            },
            "pairs": {
                "finetuned-baseline": {
                    "correct": {
                        "reference": 0.125,
                        "finetuned": 0.6667,
                        "delta": 0.5417,
                        "ci_low": 0.3333,
                        "ci_high": 0.75,
                    },
                    "f1_char": {
                        "reference": 0.2041,
                        "finetuned": 0.8123,
                        "delta": 0.6082,
                        "ci_low": 0.4411,
                        "ci_high": 0.7702,
                    },
                    "abstain_p": {"reference": None, "finetuned": 0.9, "delta": None, "ci_low": None, "ci_high": None},
                },
                "finetuned-baseline_fewshot": {
                    "correct": {
                        "reference": 0.25,
                        "finetuned": 0.6667,
                        "delta": 0.4167,
                        "ci_low": 0.1667,
                        "ci_high": 0.6667,
                    },
                    "f1_char": {"reference": 0.3, "finetuned": 0.8123, "delta": 0.5123, "ci_low": 0.3, "ci_high": 0.7},
                    "abstain_p": {"reference": 0.5, "finetuned": 0.9, "delta": 0.4, "ci_low": 0.0, "ci_high": 0.8},
                },
            },
        },
        "natural": {"skipped": True, "reason": "no hand-written questions"},
    },
}
TRAIN = {
    "train_loss_first": 2.5,
    "train_loss_last": 0.3141,
    "val_loss_first": 2.25,
    "val_loss_last": 0.4321,
    "steps": 7,
}


def make_inputs(root: Path) -> dict[str, Path]:
    """Tiny stand-ins for data/qa, models/adapter, metrics/ and params.yaml."""
    from datasets import Dataset, DatasetDict

    rows = {
        split: [
            {
                "id": f"{split}{i}",
                "question": f"의림지 전화번호는? {i}",
                "answer": f"043-651-{i:04d}",
                "answerable": True,
            }
            for i in range(n)
        ]
        for split, n in (("train", 5), ("validation", 2), ("test", 3))
    }
    qa = root / "qa"
    DatasetDict({s: Dataset.from_list(r) for s, r in rows.items()}).save_to_disk(str(qa / "hf"))
    (qa / "README.md").write_text("---\nlanguage: [ko]\nlicense: other\n---\n# 작은 QA\n\n본문.\n", encoding="utf-8")

    adapter = root / "adapter"
    (adapter / "merged").mkdir(parents=True)
    (adapter / "merged" / "model.safetensors").write_bytes(b"x" * 1000)  # must not be uploaded
    (adapter / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 8)
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "models/base", "r": 8, "peft_type": "LORA"}), encoding="utf-8"
    )
    (adapter / "README.md").write_text("axolotl's card with /abs/local/paths", encoding="utf-8")
    (adapter / "axolotl.yaml").write_text(
        yaml.safe_dump(
            {
                "adapter": "qlora",
                "load_in_4bit": True,
                "lora_r": 8,
                "lora_alpha": 16,
                "learning_rate": 0.00013,
                "lora_target_modules": ["q_proj", "v_proj"],
                "sequence_len": 2048,
                "base_model": "models/base",
            }
        ),
        encoding="utf-8",
    )
    metrics = root / "metrics"
    (metrics / "eval" / "finetuned").mkdir(parents=True)
    (metrics / "comparison.json").write_text(json.dumps(COMPARISON), encoding="utf-8")
    (metrics / "train.json").write_text(json.dumps(TRAIN), encoding="utf-8")
    (metrics / "eval" / "finetuned" / "template.json").write_text(
        json.dumps({"n": 12, "correct": 0.6667}), encoding="utf-8"
    )
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS, allow_unicode=True), encoding="utf-8")
    return {"qa": qa, "adapter": adapter, "metrics": metrics, "params": params, "rows": rows}


def cli_args(inp: dict[str, Path]) -> list[str]:
    return [
        "--qa",
        str(inp["qa"]),
        "--adapter",
        str(inp["adapter"]),
        "--metrics-dir",
        str(inp["metrics"]),
        "--params",
        str(inp["params"]),
    ]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def inputs(tmp_path) -> dict[str, Path]:
    return make_inputs(tmp_path / "in")


def test_dry_run_writes_exactly_the_upload_and_touches_no_network(inputs, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)  # a dry run needs no token

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access during --dry-run: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    out = tmp_path / "preview"
    hub.main([*cli_args(inputs), "--dry-run", str(out)])

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    ups = {u["repo_type"]: u for u in manifest["uploads"]}
    assert [u["repo_id"] for u in manifest["uploads"]] == ["tiny-qa", "tiny-adapter"]
    assert ups["dataset"]["private"] is True and ups["model"]["private"] is True
    # The manifest lists exactly the files on disk, with their real sizes and hashes.
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    listed = sorted(f"{u['folder']}/{f['path']}" for u in manifest["uploads"] for f in u["files"])
    assert on_disk == sorted([*listed, "manifest.json"])
    for up in manifest["uploads"]:
        for f in up["files"]:
            path = out / up["folder"] / f["path"]
            assert f["size"] == path.stat().st_size and f["sha256"] == sha256(path)
        assert up["total_bytes"] == sum(f["size"] for f in up["files"])

    assert {f["path"] for f in ups["model"]["files"]} == {
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "axolotl.yaml",
    }  # merged/ left out
    assert sha256(out / "model" / "adapter_model.safetensors") == sha256(
        inputs["adapter"] / "adapter_model.safetensors"
    )
    cfg = json.loads((out / "model" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "Qwen/Qwen2.5-7B-Instruct" and cfg["r"] == 8

    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["base_model"] == "Qwen/Qwen2.5-7B-Instruct" and meta["license"] == "apache-2.0"
    assert meta["library_name"] == "peft" and "qlora" in meta["tags"]
    assert "axolotl's card" not in card
    # Metrics table rows come from comparison.json, with the delta and its CI.
    # columns: zero-shot, few-shot, fine-tuned, Δ vs zero-shot [CI], Δ vs few-shot [CI]; a skipped test set: no table
    assert "| 정답률 (`correct`) | 0.125 | 0.250 | 0.667 | +0.542 [+0.333, +0.750] | +0.417 [+0.167, +0.667] |" in card
    assert "| 문자 F1 (`f1_char`) | 0.204 | 0.300 | 0.812 | +0.608 [+0.441, +0.770] | +0.512 [+0.300, +0.700] |" in card
    assert "| 기권 정밀도 (`abstain_p`) | – | 0.500 | 0.900 | – | +0.400 [+0.000, +0.800] |" in card
    assert "Δ vs base, few-shot [95% bootstrap CI]" in card and "### template:" in card and "n=12" in card
    assert "### natural" not in card
    assert "validation loss 2.250 → 0.432" in card and "optimizer steps 7" in card
    assert "| `lora_r` | 8 |" in card and "| `learning_rate` | 0.00013 |" in card
    assert "| `lora_target_modules` | q_proj, v_proj |" in card
    assert "revision `abc123`" in card and ABSTAIN in card and PARAMS["prompt"]["system"] in card

    dcard = (out / "dataset" / "README.md").read_text(encoding="utf-8")
    dmeta = yaml.safe_load(dcard.split("---\n")[1])
    assert dmeta["language"] == ["ko"] and "# 작은 QA" in dcard
    assert dmeta["configs"][0]["data_files"] == [
        {"split": s, "path": f"data/{s}-*"} for s in ("train", "validation", "test")
    ]
    import pyarrow.parquet as pq

    for split, rows in inputs["rows"].items():
        table = pq.read_table(out / "dataset" / "data" / f"{split}-00000-of-00001.parquet")
        assert table.to_pylist() == rows


def test_dry_run_without_comparison_falls_back_to_eval_files(inputs, tmp_path):
    (inputs["metrics"] / "comparison.json").unlink()
    (inputs["metrics"] / "eval" / "baseline").mkdir()
    (inputs["metrics"] / "eval" / "baseline" / "template.json").write_text(
        json.dumps({"correct": 0.0833, "answer": {"f1_char": 0.3456}}), encoding="utf-8"
    )
    (inputs["metrics"] / "eval" / "finetuned" / "template.json").write_text(
        json.dumps({"n": 12, "correct": 0.9167, "answer": {"f1_char": 0.8771}}), encoding="utf-8"
    )
    (inputs["metrics"] / "eval" / "finetuned" / "natural.json").write_text(
        json.dumps({"skipped": True, "reason": "none", "n": 0}), encoding="utf-8"
    )
    out = tmp_path / "preview"
    hub.main([*cli_args(inputs), "--dry-run", str(out), "--only", "adapter", "--adapter-repo", "org/x"])
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [(u["repo_id"], u["repo_type"]) for u in manifest["uploads"]] == [("org/x", "model")]
    assert not (out / "dataset").exists()
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    assert "| 정답률 (`correct`) | 0.083 | 0.917 |" in card
    assert "| 문자 F1 (`f1_char`) | 0.346 | 0.877 |" in card


def _clean_env(**extra: str) -> dict[str, str]:
    # TRANSFORMERS_OFFLINE also switches huggingface_hub offline.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE", "TRANSFORMERS_OFFLINE"))}
    env.update(PYTHONPATH=str(REPO), **extra)
    return env


def test_missing_token_is_one_clear_line(inputs, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "publish", *cli_args(inputs)],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [
        "error: HF_TOKEN is not set: export a Hugging Face write token as HF_TOKEN "
        "(or preview with --dry-run DIR, which needs none)"
    ]


def test_missing_output_fails_before_any_repo_is_created(inputs, monkeypatch):
    from stages.common.errors import UserError

    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setattr(hub, "hub_api", lambda token: pytest.fail("contacted the Hub despite a missing input"))
    (inputs["adapter"] / "axolotl.yaml").unlink()
    with pytest.raises(UserError, match=r"adapter/axolotl.yaml: not found \(run the train stage first"):
        hub.main(cli_args(inputs))


class MockHub(BaseHTTPRequestHandler):
    """Just enough of the Hub API for create_repo + upload_folder of small (regular, non-LFS) files."""

    requests: list[dict] = []
    namespace = "mock-user"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.requests.append({"method": "GET", "path": self.path})
        self._reply(404, {"error": "not mocked"})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Transfer-Encoding") == "chunked" and not raw:
            raw = self._read_chunked()
        endpoint = f"http://{self.headers['Host']}"
        rec = {"method": "POST", "path": self.path, "auth": self.headers.get("Authorization")}
        self.requests.append(rec)
        if rec["auth"] != f"Bearer {FAKE_TOKEN}":
            return self._reply(401, {"error": "Invalid credentials in Authorization header"})
        if self.path == "/api/repos/create":
            rec["json"] = payload = json.loads(raw)
            ns = payload.get("organization") or self.namespace
            prefix = "datasets/" if payload.get("type") == "dataset" else ""
            return self._reply(200, {"url": f"{endpoint}/{prefix}{ns}/{payload['name']}"})
        if self.path == "/api/validate-yaml":  # upload_folder has the Hub check each README's metadata
            rec["json"] = json.loads(raw)
            return self._reply(200, {})
        if "/preupload/" in self.path:
            files = json.loads(raw)["files"]
            return self._reply(
                200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
            )
        if "/commit/" in self.path:
            lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
            rec["files"] = {
                ln["value"]["path"]: base64.b64decode(ln["value"]["content"]) for ln in lines if ln["key"] == "file"
            }
            rec["summary"] = next(ln["value"]["summary"] for ln in lines if ln["key"] == "header")
            repo = self.path.split("/api/", 1)[1].split("/commit/")[0]  # e.g. datasets/mock-user/tiny-qa
            web = repo.removeprefix("models/")
            return self._reply(200, {"commitUrl": f"{endpoint}/{web}/commit/{'a' * 40}", "commitOid": "a" * 40})
        self._reply(404, {"error": "not mocked"})

    def _read_chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().strip(), 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()


@pytest.fixture()
def mock_hub():
    MockHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), MockHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", MockHub.requests
    server.shutdown()
    server.server_close()


def test_push_creates_repos_and_uploads_the_staged_files(inputs, tmp_path, mock_hub):
    endpoint, requests = mock_hub
    preview = tmp_path / "preview"
    hub.main([*cli_args(inputs), "--dry-run", str(preview)])
    expected = json.loads((preview / "manifest.json").read_text(encoding="utf-8"))

    proc = subprocess.run(
        [sys.executable, "-m", "publish", *cli_args(inputs), "--public"],
        cwd=REPO,
        env=_clean_env(HF_TOKEN=FAKE_TOKEN, HF_ENDPOINT=endpoint, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert FAKE_TOKEN not in proc.stdout + proc.stderr

    # Metadata checks (POST /api/validate-yaml, made by huggingface_hub before each commit) aside,
    # exactly these calls, in this order: both repos first (the card needs the dataset's full id).
    calls = [(r["method"], r["path"]) for r in requests if r["path"] != "/api/validate-yaml"]
    assert calls == [
        ("POST", "/api/repos/create"),
        ("POST", "/api/repos/create"),
        ("POST", "/api/datasets/mock-user/tiny-qa/preupload/main"),
        ("POST", "/api/datasets/mock-user/tiny-qa/commit/main"),
        ("POST", "/api/models/mock-user/tiny-adapter/preupload/main"),
        ("POST", "/api/models/mock-user/tiny-adapter/commit/main"),
    ]
    validated = [r["json"]["repoType"] for r in requests if r["path"] == "/api/validate-yaml"]
    assert set(validated[: len(validated) // 2]) == {"dataset"} and set(validated[len(validated) // 2 :]) == {"model"}
    assert all(r["auth"] == f"Bearer {FAKE_TOKEN}" for r in requests)
    creates = [r["json"] for r in requests[:2]]
    assert creates[0]["name"] == "tiny-qa" and creates[0]["type"] == "dataset" and creates[0]["organization"] is None
    assert creates[1]["name"] == "tiny-adapter" and creates[1].get("type", "model") == "model"
    assert all(c["visibility"] == "public" for c in creates)  # --public overrides params' private: true

    commits = [r for r in requests if "/commit/" in r["path"]]
    assert commits[0]["summary"].startswith("brochure-rag: RAG QA dataset")
    for commit, up in zip(commits, expected["uploads"], strict=True):
        got = {path: hashlib.sha256(data).hexdigest() for path, data in commit["files"].items()}
        want = {f["path"]: f["sha256"] for f in up["files"]}
        if up["repo_type"] == "dataset":
            assert got == want  # byte-identical to what the dry run showed
        else:
            # Same files; only the card differs: it now names the dataset by the id the Hub returned.
            assert set(got) == set(want)
            assert {k: v for k, v in got.items() if k != "README.md"} == {
                k: v for k, v in want.items() if k != "README.md"
            }
    card = commits[1]["files"]["README.md"].decode()
    assert "datasets:\n- mock-user/tiny-qa" in card
    assert "+0.542 [+0.333, +0.750]" in card


def test_rejected_token_is_one_line_without_the_token(inputs, mock_hub):
    endpoint, requests = mock_hub
    bad = "hf_WRONGtoken999"
    proc = subprocess.run(
        [sys.executable, "-m", "publish", *cli_args(inputs)],
        cwd=REPO,
        env=_clean_env(HF_TOKEN=bad, HF_ENDPOINT=endpoint, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: Hub upload failed at {endpoint}: HTTP 401")
    assert "Invalid credentials" in lines[0] and bad not in proc.stdout + proc.stderr
    assert [r["path"] for r in requests] == ["/api/repos/create"]  # stopped at the first refusal
