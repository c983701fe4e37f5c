"""Push the QA dataset and the LoRA adapter to the Hugging Face Hub (opt-in; token from env HF_TOKEN).

    python -m publish --dry-run hub-preview     # write exactly what would be uploaded + manifest.json; no network
    HF_TOKEN=hf_... python -m publish           # create both repos (private by default) and upload
    HF_TOKEN=hf_... python -m publish --only adapter --adapter-repo my-org/my-adapter --public

What is uploaded (the dry run writes the same folders):

* ``dataset/``: ``data/<split>-00000-of-00001.parquet`` per split of ``data/qa/hf`` (the layout
  ``DatasetDict.push_to_hub`` writes, so ``load_dataset(repo)`` works) and ``README.md``, the
  synthesize stage's card with a ``configs:`` entry mapping the splits to those files;
* ``model/``: the files of ``models/adapter`` (not ``merged/``), the axolotl-generated README
  replaced by a card built from the resolved config and ``metrics/`` (publish.model_card), and
  ``adapter_config.json``'s base model set to the Hub id when the base model comes from the Hub.

Repo ids come from params.yaml ``publish:`` unless given; a bare name goes to the token's own
namespace (the id the Hub returns is used from then on). ``HF_ENDPOINT`` selects another Hub.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stages.common import params as P
from stages.common.errors import UserError
from stages.common.io import atomic_dir

from . import model_card

log = logging.getLogger("publish")

TOKEN_ENV = "HF_TOKEN"
SKIP_ADAPTER_FILES = {"README.md"}  # replaced by our card
SKIP_ADAPTER_DIRS = {"merged"}  # a full merged model: far bigger than the adapter, and not what this repo is


@dataclass
class Upload:
    """One Hub repo and the staged folder whose contents become its files."""

    repo_id: str
    repo_type: str  # "dataset" | "model"
    folder: str  # sub-folder of the staging dir
    private: bool
    commit_message: str
    files: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- staging


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """YAML metadata block and Markdown body of a Hub card ({} when there is no block)."""
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            meta = yaml.safe_load(text[4:end]) or {}
            if isinstance(meta, dict):
                return meta, text[end + 5 :]
    return {}, text


def stage_dataset(qa_dir: Path, out: Path) -> list[str]:
    """Parquet per split + the card with a configs: entry; returns the split names."""
    from datasets import DatasetDict, load_from_disk

    hf_dir, card = qa_dir / "hf", qa_dir / "README.md"
    if not (hf_dir / "dataset_dict.json").is_file():
        raise UserError(f"{hf_dir}: not a saved DatasetDict (run the synthesize stage first: dvc repro synthesize)")
    if not card.is_file():
        raise UserError(f"{card}: dataset card not found (run the synthesize stage first: dvc repro synthesize)")
    dsd = load_from_disk(str(hf_dir))
    if not isinstance(dsd, DatasetDict) or not len(dsd):
        raise UserError(f"{hf_dir}: expected a DatasetDict with at least one split")
    order = {"train": 0, "validation": 1, "test": 2}
    splits = sorted(dsd, key=lambda s: (order.get(s, 3), s))
    (out / "data").mkdir(parents=True)
    for split in splits:
        dsd[split].to_parquet(str(out / "data" / f"{split}-00000-of-00001.parquet"))
    meta, body = split_front_matter(card.read_text(encoding="utf-8"))
    meta["configs"] = [
        {
            "config_name": "default",
            "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits],
        }
    ]
    header = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False)
    (out / "README.md").write_text(f"---\n{header}---\n{body}", encoding="utf-8")
    return splits


def stage_adapter(adapter_dir: Path, out: Path, card: str, base_hub_id: str | None) -> None:
    if not (adapter_dir / "adapter_config.json").is_file():
        raise UserError(f"{adapter_dir}: no adapter_config.json (run the train stage first: dvc repro train)")
    for src in sorted(adapter_dir.rglob("*")):
        rel = src.relative_to(adapter_dir)
        if not src.is_file() or rel.parts[0] in SKIP_ADAPTER_DIRS or str(rel) in SKIP_ADAPTER_FILES:
            continue
        if any(part.startswith(".") for part in rel.parts):
            continue
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    if base_hub_id:
        # Trained from the local models/base folder; on the Hub, PEFT must find the base by its id.
        cfg_path = out / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["base_model_name_or_path"] = base_hub_id
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "README.md").write_text(card, encoding="utf-8")


def file_entries(folder: Path) -> list[dict[str, Any]]:
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        entries.append(
            {"path": path.relative_to(folder).as_posix(), "size": path.stat().st_size, "sha256": digest.hexdigest()}
        )
    return entries


def stage_all(
    staging: Path,
    uploads: list[Upload],
    *,
    qa_dir: Path,
    adapter_dir: Path,
    metrics_dir: Path,
    params_path: Path,
    license_id: str,
    dataset_repo: str | None,
) -> dict[str, Any]:
    """Write every upload's folder under ``staging`` plus manifest.json; returns the manifest."""
    for up in uploads:
        folder = staging / up.folder
        if up.repo_type == "dataset":
            stage_dataset(qa_dir, folder)
        else:
            p = P.load(params_path, "model", "prompt")
            model = p["model"]
            base_hub_id = (
                model["name"] if model.get("source") == "hub" and model_card.is_hub_id(model["name"]) else None
            )
            card = model_card.build_model_card(
                adapter_cfg=model_card.load_adapter_config(adapter_dir),
                metrics=model_card.load_metrics(metrics_dir),
                model=model,
                profile=p["profile"],
                system_prompt=str(p["prompt"].get("system", "")),
                abstain=str(p["prompt"].get("abstain", "")),
                repo_id=up.repo_id,
                dataset_repo=dataset_repo,
                license_id=license_id,
            )
            stage_adapter(adapter_dir, folder, card, base_hub_id)
        up.files = file_entries(folder)
    manifest = {
        "uploads": [
            {
                "repo_id": up.repo_id,
                "repo_type": up.repo_type,
                "private": up.private,
                "folder": up.folder,
                "commit_message": up.commit_message,
                "n_files": len(up.files),
                "total_bytes": sum(f["size"] for f in up.files),
                "files": up.files,
            }
            for up in uploads
        ]
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest


# --------------------------------------------------------------------------- hub


def hub_token() -> str:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UserError(
            f"{TOKEN_ENV} is not set: export a Hugging Face write token as {TOKEN_ENV} "
            "(or preview with --dry-run DIR, which needs none)"
        )
    return token


def hub_api(token: str):
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise UserError("HF_HUB_OFFLINE is set: unset it to publish (or preview with --dry-run DIR)")
    from huggingface_hub import HfApi

    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token, library_name="brochure-rag")


def create_repos(api, uploads: list[Upload]) -> None:
    """Create (or find) each repo; a bare name becomes the full id the Hub answers with."""
    for up in uploads:
        url = api.create_repo(up.repo_id, repo_type=up.repo_type, private=up.private, exist_ok=True)
        up.repo_id = url.repo_id


def push(api, uploads: list[Upload], staging: Path) -> list[str]:
    urls = []
    for up in uploads:
        log.info(
            "uploading %d files (%d bytes) to %s %s",
            len(up.files),
            sum(f["size"] for f in up.files),
            up.repo_type,
            up.repo_id,
        )
        info = api.upload_folder(
            repo_id=up.repo_id,
            repo_type=up.repo_type,
            folder_path=staging / up.folder,
            commit_message=up.commit_message,
        )
        urls.append(str(info.commit_url))
    return urls


# --------------------------------------------------------------------------- cli


def check_inputs(uploads: list[Upload], qa_dir: Path, adapter_dir: Path) -> None:
    """Fail before any repo is created when a pipeline output is missing."""
    need = {
        "dataset": [(qa_dir / "hf" / "dataset_dict.json", "synthesize"), (qa_dir / "README.md", "synthesize")],
        "model": [(adapter_dir / "adapter_config.json", "train"), (adapter_dir / "axolotl.yaml", "train")],
    }
    for up in uploads:
        for path, stage in need[up.repo_type]:
            if not path.is_file():
                raise UserError(f"{path}: not found (run the {stage} stage first: dvc repro {stage})")


def plan(args: argparse.Namespace, publish: dict[str, Any]) -> list[Upload]:
    private = publish.get("private", True) if args.private is None else args.private
    uploads = []
    if args.only in (None, "dataset"):
        repo = args.dataset_repo or publish["dataset_repo"]
        uploads.append(Upload(repo, "dataset", "dataset", private, "brochure-rag: RAG QA dataset (synthesize stage)"))
    if args.only in (None, "adapter"):
        repo = args.adapter_repo or publish["adapter_repo"]
        uploads.append(Upload(repo, "model", "model", private, "brochure-rag: LoRA adapter (train stage)"))
    return uploads


def run(args: argparse.Namespace) -> dict[str, Any]:
    p = P.load(args.params, "publish")
    publish = p["publish"]
    license_id = publish["license"]
    uploads = plan(args, publish)
    check_inputs(uploads, args.qa, args.adapter)
    staged = dict(
        qa_dir=args.qa,
        adapter_dir=args.adapter,
        metrics_dir=args.metrics_dir,
        params_path=args.params,
        license_id=license_id,
    )

    def dataset_repo() -> str | None:
        if args.only == "adapter":  # not pushed now: the configured one is still where its data lives
            return args.dataset_repo or publish.get("dataset_repo")
        return next(up.repo_id for up in uploads if up.repo_type == "dataset")

    if args.dry_run is not None:
        with atomic_dir(args.dry_run) as tmp:
            manifest = stage_all(tmp, uploads, dataset_repo=dataset_repo(), **staged)
        for up in uploads:
            log.info(
                "dry run: %s %s <- %d files in %s/%s", up.repo_type, up.repo_id, len(up.files), args.dry_run, up.folder
            )
        log.info("dry run: nothing uploaded; manifest at %s", args.dry_run / "manifest.json")
        return manifest

    api = hub_api(hub_token())
    try:
        create_repos(api, uploads)
        with tempfile.TemporaryDirectory(prefix="brochure-rag-publish-") as tmp:
            manifest = stage_all(Path(tmp), uploads, dataset_repo=dataset_repo(), **staged)
            for url in push(api, uploads, Path(tmp)):
                log.info("pushed: %s", url)
    except UserError:
        raise
    except Exception as exc:  # HfHubHTTPError, connection errors: one line, as every CLI here
        raise UserError(f"Hub upload failed at {api.endpoint}: {hub_error(exc)}") from exc
    return manifest


def hub_error(exc: Exception) -> str:
    """The first line of a Hub/HTTP error (status and server message; huggingface_hub never includes the token)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    server = getattr(exc, "server_message", None)
    return " - ".join(str(x) for x in (f"HTTP {status}" if status else exc.__class__.__name__, first, server) if x)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m publish",
        description="Push the QA dataset and the LoRA adapter to the Hugging Face Hub (token from env HF_TOKEN).",
    )
    ap.add_argument("--dry-run", type=Path, metavar="DIR", help="write what would be uploaded to DIR; no network")
    ap.add_argument("--only", choices=("dataset", "adapter"), help="push one of the two (default: both)")
    ap.add_argument("--dataset-repo", help="dataset repo id (default: params publish.dataset_repo)")
    ap.add_argument("--adapter-repo", help="model repo id (default: params publish.adapter_repo)")
    vis = ap.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="private", action="store_true", default=None, help="create repos private")
    vis.add_argument("--public", dest="private", action="store_false", help="create repos public")
    ap.add_argument("--qa", type=Path, default=Path("data/qa"), help="synthesize stage output")
    ap.add_argument("--adapter", type=Path, default=Path("models/adapter"), help="train stage output")
    ap.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    return ap


def main(argv: list[str] | None = None) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per HTTP request otherwise
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    from stages.common.errors import run_cli

    run_cli(main)
