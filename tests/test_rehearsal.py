"""Dress rehearsal of the runpod profile on CPU: the real `dvc repro`, tiny local stand-in models.

A scratch copy of the repository (git ls-files) gets a 3-page cut of the sample brochure and
`profile: runpod` with the overrides in RUNPOD_OVERRIDES — hub model ids swapped for tiny models
(scripts/make_tiny_models.py) laid out in a Hugging Face hub cache, the device swapped to CPU, and
the few budget/CPU-only changes listed there with their reason. Then:

1. `dvc repro chunk`; the tiny models are built (the chat LM's canned reply asks about these chunks);
2. `dvc repro` of everything else with HF_HUB_OFFLINE=1 (the documented "pre-downloaded" route):
   synthesize with generator `llm` through the transformers backend, train_retriever (off), index with
   the sentence-transformers embedder and the cross-encoder reranker, sft through the reranked
   retriever, prepare_model from the hub cache (snapshot_download at revision main), train with
   axolotl/qlora.yaml (4-bit nf4 through bitsandbytes' CPU path) launched by `accelerate launch` as
   2 CPU processes (gloo), evaluate@baseline/finetuned, report;
3. `python -m publish --dry-run`.
Pieces that cannot run on CPU (PaddleOCR without its models, vLLM, DeepSpeed, the CUDA check) are
checked for their wiring in the small tests at the end. README "RunPod: what CI rehearses" lists
which is which. Deselect with `-m "not rehearsal"`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "jecheon_2025_sample.pdf"
PAGES = [12, 14, 22]  # 1-based: two-column text layer, raster card, raster-only lodging tables
sys.path.insert(0, str(REPO / "scripts"))

import make_tiny_models as tiny  # noqa: E402

# Dotted keys, as `dvc exp run -S key=value` would set them. Each is a model id, the device, or a listed
# budget/CPU exception; everything else is the runpod profile as committed.
RUNPOD_OVERRIDES: dict[str, object] = {
    "profile": "runpod",
    # models: hub ids -> tiny stand-ins in the hub cache
    "synthesize.llm.model": tiny.LM_ID,
    "profiles.runpod.model.name": tiny.LM_ID,
    "profiles.runpod.index.embedder": tiny.EMBEDDER_ID,
    "profiles.runpod.index.reranker": tiny.RERANKER_ID,
    "profiles.runpod.train_retriever.base_model": tiny.EMBEDDER_ID,
    # device: cpu
    "profiles.runpod.machine.requires_cuda": False,
    "profiles.runpod.train_retriever.device": "cpu",
    "profiles.runpod.evaluate.device": "cpu",
    # dtype auto picks bf16 on a CPU with native bf16, and transformers refuses bf16 training without a GPU
    # unless told use_cpu (the cpu profile's lora-cpu.yaml does that; qlora.yaml is GPU-only)
    "profiles.runpod.train.dtype": "float32",
    "profiles.runpod.parse.paddle_device": "cpu",
    # PaddleOCR cannot fetch its models offline: Tesseract reads the raster pages (paddle: wiring test below)
    "profiles.runpod.parse.ocr_engine": "tesseract",
    "profiles.runpod.parse.ocr_lang": "kor+Hangul",
    # budget: 2 optimizer steps on 2 CPU processes; DeepSpeed is not installable here (wiring test below)
    "profiles.runpod.train.max_steps": 2,
    "profiles.runpod.train.num_gpus": 2,
    "profiles.runpod.train.deepspeed_config": "",
    # the cross-encoder also picks the context of sft and evaluate (runpod default: hybrid; index measures both)
    "retrieval.method": "reranked",
    # the natural set is about the whole brochure: skipped on the 3-page cut (its wiring: tests/test_natural.py,
    # tests/test_evaluate.py); few-shot examples come from the cut's few train questions
    "evaluate.natural_questions": "",
    "evaluate.fewshot_k": 2,
    # the brochure cut
    "data.pdf": "data/sample/rehearsal.pdf",
    "data.truth": "data/sample/rehearsal_truth.jsonl",
}
# axolotl/qlora.yaml keys that differ on CPU (the GUIDE: Axolotl's Triton LoRA kernels need CUDA).
QLORA_CPU_EDITS: dict[str, object] = {
    "lora_mlp_kernel": False,
    "lora_qkv_kernel": False,
    "lora_o_kernel": False,
    "tf32": False,  # transformers: "--tf32 requires Ampere or a newer GPU arch"
}
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "WANDB_MODE": "disabled",
    "DVC_NO_ANALYTICS": "1",
    "CUDA_VISIBLE_DEVICES": "",
}

pytestmark = pytest.mark.rehearsal


def set_dotted(raw: dict, key: str, value: object) -> None:
    *path, last = key.split(".")
    node = raw
    for part in path:
        if part not in node:
            raise KeyError(f"override {key}: {part} not in params.yaml (a runpod key was renamed?)")
        node = node[part]
    if last not in node:
        raise KeyError(f"override {key}: not in params.yaml (a runpod key was renamed?)")
    node[last] = value


def scratch_repo(dest: Path) -> Path:
    """The tracked files of this checkout (as a clean clone has them) + the brochure cut, as a DVC repo without git."""
    import pymupdf

    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in sorted(f for f in files.decode().split("\0") if f):
        if rel == "dvc.lock" or rel.endswith(".pdf") or not (REPO / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)
    with pymupdf.open(SAMPLE) as src, pymupdf.open() as dst:
        for page in PAGES:
            dst.insert_pdf(src, from_page=page - 1, to_page=page - 1)
        dst.save(dest / "data/sample/rehearsal.pdf")
    truth = {json.loads(line)["page"]: json.loads(line) for line in SAMPLE.with_name("ground_truth.jsonl").open()}
    with open(dest / "data/sample/rehearsal_truth.jsonl", "w", encoding="utf-8") as fh:
        for i, page in enumerate(PAGES, 1):
            fh.write(json.dumps({**truth[page], "page": i}, ensure_ascii=False) + "\n")
    (dest / ".dvc/config.local").write_text("[core]\n    no_scm = true\n")

    raw = yaml.safe_load((dest / "params.yaml").read_text(encoding="utf-8"))
    for key, value in RUNPOD_OVERRIDES.items():
        set_dotted(raw, key, value)
    (dest / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    qlora = dest / "axolotl/qlora.yaml"
    qlora.write_text(
        qlora.read_text(encoding="utf-8")
        + "".join(f"{k}: {json.dumps(v)}  # rehearsal: CPU\n" for k, v in QLORA_CPU_EDITS.items()),
        encoding="utf-8",
    )
    return dest


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}"
    return proc


def rehearsal_env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHONPATH"))}
    venv_bin = str(Path(sys.executable).parent)
    return {**env, **ENV, "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}", "HF_HUB_CACHE": str(repo / ".hf")}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.slow
def test_runpod_profile_rehearsal_through_dvc_repro(tmp_path):
    if shutil.which("tesseract") is None or shutil.which("pdftoppm") is None:
        pytest.skip("tesseract / poppler not installed")
    repo = scratch_repo(tmp_path / "repo")
    env = rehearsal_env(repo)
    dvc = [sys.executable, "-m", "dvc"]

    run([*dvc, "repro", "chunk"], repo, env)
    chunks = read_jsonl(repo / "data/chunks/chunks.jsonl")
    prompts = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))["prompt"]
    info = tiny.build_all(chunks, repo / ".hf", [prompts["system"], prompts["abstain"]])
    canned = {it["question"]: it["answer"] for it in info["items"]}

    proc = run([*dvc, "repro"], repo, env)
    log = proc.stdout + proc.stderr
    assert "llm questions" in log  # the llm generator's loop over chunks ran (transformers backend)

    # synthesize: llm generator, transformers backend. Every chunk got the same reply (all canned items);
    # the grounding filter kept each chunk's own item only; the hallucinated and the leaking items are gone.
    qa = {s: read_jsonl(repo / f"data/qa/{s}.jsonl") for s in ("train", "validation", "test")}
    rows = [r for s in qa.values() for r in s]
    llm_rows = [r for r in rows if r["generator"] == "llm"]
    assert llm_rows and {r["question"] for r in llm_rows} <= set(canned)
    assert all(canned[r["question"]] == r["answer"] for r in llm_rows)
    assert all(
        r["chunk_id"] == next(c["chunk_id"] for c in chunks if tiny._squash(r["answer"]) in tiny._squash(c["text"]))
        for r in llm_rows
    )
    assert not any(tiny.HALLUCINATED["answer"] in r["answer"] for r in rows)
    assert qa["test"] and qa["validation"] and qa["train"]
    assert not {r["chunk_id"] for r in qa["test"]} & {r["chunk_id"] for r in qa["train"]}

    # index: sentence-transformers embedder + cross-encoder reranker from the hub cache
    retrieval = json.loads((repo / "metrics/retrieval.json").read_text())
    assert retrieval["embedder"] == tiny.EMBEDDER_ID and retrieval["reranker"] == tiny.RERANKER_ID
    for variant in ("bm25", "dense", "hybrid", "reranked"):
        assert 0.0 <= retrieval[variant]["mrr"] <= 1.0, variant

    # prepare_model: a hub snapshot at revision main (from the cache), ChatML template kept
    base_tok = json.loads((repo / "models/base/tokenizer_config.json").read_text())
    assert "<|im_start|>" in (base_tok.get("chat_template") or (repo / "models/base/chat_template.jinja").read_text())
    assert not (repo / "models/base/.cache").exists()

    # train: qlora.yaml rendered (4-bit nf4, the runpod knobs), 2 processes, 2 steps
    rendered = yaml.safe_load((repo / "models/adapter/axolotl.yaml").read_text())
    assert rendered["adapter"] == "qlora" and rendered["load_in_4bit"] is True
    assert rendered["bnb_config_kwargs"]["bnb_4bit_quant_type"] == "nf4"
    assert rendered["max_steps"] == 2 and "deepspeed" not in rendered
    base_qlora = yaml.safe_load((REPO / "axolotl/qlora.yaml").read_text())
    changed = {k for k in set(base_qlora) | set(QLORA_CPU_EDITS) if base_qlora.get(k) != rendered.get(k)}
    assert changed <= set(QLORA_CPU_EDITS), changed  # the committed qlora.yaml, except the CPU kernel flags
    train = json.loads((repo / "metrics/train.json").read_text())
    assert train["steps"] == 2 and train["train_loss_first"] > 0
    assert "accelerate.commands.launch --multi_gpu --num_processes 2" in log
    assert '"world_size": 2' in log and "[RANK:1] Training completed" in log  # two processes trained
    assert (repo / "models/adapter/adapter_model.safetensors").stat().st_size > 0

    # evaluate (three models x two test sets) + report
    for name in ("baseline", "baseline_fewshot", "finetuned"):
        preds = read_jsonl(repo / f"data/eval/{name}/template/predictions.jsonl")
        assert len(preds) == len(qa["test"]) and all(p["model"] == name for p in preds)
        assert all(p["retrieved_ids"] for p in preds)
        assert json.loads((repo / f"metrics/eval/{name}/natural.json").read_text())["skipped"] is True
    fewshot = json.loads((repo / "data/eval/baseline_fewshot/template/fewshot.json").read_text())
    train_ids = {q["id"] for q in qa["train"]}
    assert len(fewshot) == 2 and {e["id"] for e in fewshot} <= train_ids  # examples from TRAIN only
    comparison = json.loads((repo / "metrics/comparison.json").read_text())
    template = comparison["testsets"]["template"]
    assert template["n"] == len(qa["test"])
    assert {"finetuned-baseline", "finetuned-baseline_fewshot"} <= set(template["pairs"])
    report = (repo / "report/REPORT.md").read_text(encoding="utf-8")
    assert "베이스라인(few-shot)" in report and "템플릿 테스트셋" in report  # all three models, the template set

    # publish --dry-run: the dataset and the adapter as they would go to the Hub
    run([sys.executable, "-m", "publish", "--dry-run", "hub-preview"], repo, env)
    manifest = json.loads((repo / "hub-preview/manifest.json").read_text())
    assert manifest["uploads"]
    assert (repo / "hub-preview/model/adapter_model.safetensors").is_file()
    assert (repo / "hub-preview/dataset/README.md").is_file()


# ---------------------------------------------------------------- wiring only: what cannot run on this CPU


def committed_runpod(**machine) -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["profile"] = "runpod"
    raw["profiles"]["runpod"]["machine"].update(machine)
    return raw


def run_stage_expect_error(tmp_path: Path, raw: dict, stage: str, *args: str, env: dict | None = None) -> str:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", *args, "--params", str(params)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return last


def parse_args(tmp_path: Path) -> list[str]:
    """The parse stage's command line on the sample brochure (the wiring tests only need its first error)."""
    return ["parse", "--pdf", str(SAMPLE), "--out", str(tmp_path / "p"), "--metrics", str(tmp_path / "m.json")]


def test_runpod_without_cuda_fails_in_one_line(tmp_path):
    """The committed runpod profile on a machine without CUDA: one line before any work."""
    last = run_stage_expect_error(
        tmp_path,
        committed_runpod(),
        *parse_args(tmp_path),
        env={"HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert "needs a CUDA GPU but torch sees none" in last


def test_paddleocr_wiring_one_line_error_when_absent(tmp_path):
    """PaddleOCR (runpod parse): the engine is built from params; without paddleocr or its models, one line."""
    last = run_stage_expect_error(
        tmp_path,
        committed_runpod(requires_cuda=False),
        *parse_args(tmp_path),
        env={"HF_HUB_OFFLINE": "1"},
    )
    import importlib.util

    if importlib.util.find_spec("paddleocr") is None:
        assert "paddleocr is not installed" in last
    else:  # installed but offline: its models cannot be fetched
        assert "paddle" in last.lower()


def test_vllm_backend_wiring_one_line_errors():
    import importlib.util

    from stages.common import generation
    from stages.common.errors import UserError

    with pytest.raises(UserError, match="vllm needs a CUDA GPU"):
        generation.load_vllm(Path("models/base"), None, "cpu", "bfloat16")
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(UserError, match="vllm package is not installed"):
            generation.import_vllm()


def test_multi_gpu_deepspeed_wiring(monkeypatch):
    """num_gpus > 1 on runpod: ZeRO-2 config rendered into the Axolotl YAML, a torchrun-style launch
    (--multi_gpu: one process per GPU), and a one-line error when deepspeed is not installed."""
    import importlib.util

    from stages import train as stage
    from stages.common import params
    from stages.common.errors import UserError

    train = params.section(committed_runpod(), "train").replace(num_gpus=4)
    monkeypatch.chdir(REPO)  # the rendered paths are repo-relative
    rendered = stage.render_config(
        stage.load_base_config(train["axolotl_config"]),
        train,
        base_model=Path("models/base"),
        data=Path("data/sft"),
        output_dir=Path("models/adapter"),
    )
    ds = json.loads((REPO / rendered["deepspeed"]).read_text())
    assert ds["zero_optimization"]["stage"] == 2 and rendered["adapter"] == "qlora"
    assert stage.axolotl_command(Path("c.yaml"), 4)[2:6] == [
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "4",
    ]
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(UserError, match="needs the deepspeed package"):
            stage.require_deepspeed(train)
    stage.require_deepspeed(train.replace(deepspeed_config=""))  # plain DDP needs no deepspeed


def test_too_small_gpu_fails_in_one_line(monkeypatch):
    """profiles.runpod.machine.min_vram_gb: a GPU below it stops the stage before any work."""
    import types

    import torch

    from stages.common import env, params
    from stages.common.errors import UserError

    machine = params.section(committed_runpod(), "machine")
    assert machine["min_vram_gb"] >= 16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=8 * 2**30))
    with pytest.raises(UserError, match=r"needs a GPU with at least 20 GB but GPU 0 has 8.0 GB"):
        env.check_machine({**machine, "name": "runpod", "offline": True})
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=80 * 2**30))
    env.check_machine({**machine, "name": "runpod", "offline": True})


def test_unreachable_hub_fails_in_one_line(monkeypatch):
    """offline: false (runpod) without HF_HUB_OFFLINE=1 and no route to the Hub: one line naming the fix."""
    import socket

    from stages.common import env, params
    from stages.common.errors import UserError

    def refuse(*args, **kwargs):
        raise OSError("unreachable")

    machine = params.section(committed_runpod(requires_cuda=False), "machine")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(UserError, match="downloads models from huggingface.co, which is unreachable.*HF_HUB_OFFLINE=1"):
        env.check_machine({**machine, "name": "runpod"})


def test_llm_generator_transformers_backend_replies_with_the_canned_list(tmp_path):
    """The fast check of the llm generator's transformers backend (chat template + generate; transformers 5 broke
    it): the tiny chat LM's reply parses into the canned items, 3 grounded + a hallucinated + a leaking one (which
    the synthesize filters drop: asserted by the dvc rehearsal above)."""
    from stages.synthesize.llm import ChatClient, llm_candidates

    chunks = [
        {
            "chunk_id": "c001",
            "title": "의림지",
            "section_path": "자연",
            "text": "의림지 문의 043-651-7101 제천시 의림대로 47",
            "pages": [1],
        },
        {
            "chunk_id": "c002",
            "title": "박달재",
            "section_path": "자연",
            "text": "박달재 문의 043-641-5114 백운면 박달재로 231",
            "pages": [1],
        },
        {
            "chunk_id": "c003",
            "title": "청풍랜드",
            "section_path": "체험",
            "text": "청풍랜드 입장료 3,000원 문의 043-648-4151",
            "pages": [2],
        },
    ]
    info = tiny.build_chat_lm(tmp_path / "lm", chunks, [])
    assert [it["answer"] for it in info["items"]] == ["043-651-7101", "043-641-5114", "043-648-4151"]
    client = ChatClient(
        {
            "backend": "transformers",
            "model": str(tmp_path / "lm"),
            "temperature": 0.0,
            "max_new_tokens": 8,
            "timeout_s": 5,
        }
    )
    assert client.chat("아무 질문") == info["reply"]
    rows = llm_candidates(chunks[1], client, 5)
    assert [r["answer"] for r in rows][:3] == ["043-651-7101", "043-641-5114", "043-648-4151"]
    assert len(rows) == 5 and all(r["generator"] == "llm" and r["chunk_id"] == "c002" for r in rows)
