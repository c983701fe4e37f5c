"""python -m app: chat with the indexed brochure (baseline or fine-tuned), answers with cited page regions.

python -m app                                   # http://127.0.0.1:7860 (params demo.host/port)
python -m app --host 0.0.0.0 --port 8080        # e.g. behind a RunPod HTTP port
python -m app --question "박달재는 어디에 있나요?"   # asked once as the page opens
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from stages.common import params as P
from stages.common.env import setup_env
from stages.common.errors import UserError, run_cli

log = logging.getLogger("app")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default=None, help="bind address (default: params demo.host)")
    ap.add_argument("--port", type=int, default=None, help="port (default: params demo.port; 0 = first free from 7860)")
    ap.add_argument("--index", type=Path, default=Path("data/index"), help="index folder (index stage)")
    ap.add_argument("--parsed", type=Path, default=Path("data/parsed"), help="parse stage folder (page images)")
    ap.add_argument("--base", type=Path, default=Path("models/base"), help="base model folder (prepare_model)")
    ap.add_argument("--adapter", type=Path, default=Path("models/adapter"), help="LoRA adapter folder (train)")
    ap.add_argument("--no-adapter", action="store_true", help="offer the baseline only")
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PARAMS)
    ap.add_argument("--question", default=None, help="answer this question at start-up; the page opens showing it")
    ap.add_argument("--preload", action="store_true", help="load the models at start-up instead of on first use")
    return ap.parse_args(argv)


def create(args: argparse.Namespace):
    """Check inputs, load the retriever, build the Gradio app; returns (demo, settings)."""
    from app.rag import Engine, Pages, Settings, check_paths

    settings = Settings.from_params(args.params)
    setup_env(offline=settings.offline)
    adapter = None if args.no_adapter else args.adapter
    adapter, warnings = check_paths(args.index, args.parsed, args.base, adapter)
    for warning in warnings:
        log.warning("warning: %s", warning)

    from app.ui import DemoApp, build_demo  # gradio import: after the checks, so errors come fast
    from stages.common.retrieval import Retriever, needs_dense

    t0 = time.perf_counter()
    retriever = Retriever.load(args.index, with_dense=needs_dense(settings.method))
    engine = Engine(retriever, settings, args.base, adapter)
    if args.preload:
        for choice in engine.choices:
            engine.model(choice)
    log.info(
        "loaded %d chunks (%s retrieval) in %.1f s; models: %s",
        len(retriever.chunks),
        settings.method,
        time.perf_counter() - t0,
        ", ".join(engine.choices),
    )
    return build_demo(DemoApp(engine, Pages.load(args.parsed)), prefill=args.question), settings


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    demo, settings = create(args)
    from app.ui import launch

    host, port = args.host or settings.host, settings.port if args.port is None else args.port
    try:
        launch(demo, host, port)
    except OSError as exc:  # gradio: port taken / address not bindable
        raise UserError(f"cannot serve on {host}:{port} ({str(exc).splitlines()[0]}); pick another --port") from exc


if __name__ == "__main__":
    run_cli(main)
