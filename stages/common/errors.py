"""User-facing errors and the CLI wrapper every stage uses."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input or environment, reported as one line."""


def run_cli(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's main(); turn UserError into a one-line message and exit 1."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    # faiss announces every SIMD variant it fails to load; only our own summary lines are news.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
