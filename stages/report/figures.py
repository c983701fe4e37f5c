"""The report's figures (matplotlib, Agg, a Korean font when installed); deterministic bytes."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from stages.common import metrics as M
from stages.report.compare import MODEL_KO, TESTSET_KO, failure_label, label, quality_keys

log = logging.getLogger("report")

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/nanum/NanumBarunGothic.ttf",
)


# ---------------------------------------------------------------- figures
def setup_matplotlib() -> bool:
    """Agg backend + a Korean font when one is installed; False when Hangul will render as boxes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib import pyplot as plt

    plt.rcParams["axes.unicode_minus"] = False
    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            font_manager.fontManager.addfont(path)
            plt.rcParams["font.family"] = font_manager.FontProperties(fname=path).get_name()
            return True
    log.warning("no Korean font found (apt-get install fonts-nanum): figure labels in Hangul will not render")
    warnings.filterwarnings("ignore", message="Glyph .* missing from font")
    return False


def _save(fig, path: Path, dpi: int) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, metadata={"Software": None})  # no version string: same inputs, same bytes
    import matplotlib.pyplot as plt

    plt.close(fig)


def plot_loss(train: list[tuple[float, float]], val: list[tuple[float, float]], path: Path, dpi: int) -> bool:
    if not train and not val:
        return False
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1.2)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("학습 손실 곡선")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path, dpi)
    return True


def plot_bars(
    groups: list[str],
    series: dict[str, list[float | None]],
    title: str,
    path: Path,
    dpi: int,
    label_fmt: str = "%.2f",
) -> None:
    """Grouped bars, one group per x label, one bar per series; None = no bar (metric undefined)."""
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    # Capped width: the page shows figures ~1000 px wide, and a wider figure only shrinks its labels.
    fig, ax = plt.subplots(figsize=(min(10.0, max(6.0, 0.6 * len(groups) + 3)), 4.2))
    for j, (name, vals) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in vals]
        bars = ax.bar(x + (j - (len(series) - 1) / 2) * width, heights, width, label=name)
        ax.bar_label(bars, fmt=label_fmt, fontsize=6, padding=1)
    ax.set_xticks(x, groups, rotation=30, ha="right")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.12)  # room for the value labels
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path, dpi)


def make_figures(comp: dict[str, Any], train_curve, val_curve, fig_dir: Path, dpi: int) -> dict[str, Any]:
    """Figures under fig_dir; returns which were drawn (the template links only those)."""
    setup_matplotlib()
    fig_dir.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, Any] = {"loss": plot_loss(train_curve, val_curve, fig_dir / "loss_curve.png", dpi)}
    for ts, t in comp["testsets"].items():
        if t.get("skipped"):
            continue
        keys = [k for k in quality_keys() if k in t["values"]]
        plot_bars(
            [label(k) for k in keys],
            {MODEL_KO[m]: [t["values"][k][m] for k in keys] for m in t["models"]},
            f"{TESTSET_KO[ts]}: 지표별 세 모델",
            fig_dir / f"metrics_{ts}.png",
            dpi,
        )
        styles = list(t["by_style"])
        plot_bars(
            [f"{s} (n={t['by_style'][s]['n']})" for s in styles],
            {MODEL_KO[m]: [t["by_style"][s]["correct"][m] for s in styles] for m in t["models"]},
            f"{TESTSET_KO[ts]}: 질문 스타일별 정답률",
            fig_dir / f"by_style_{ts}.png",
            dpi,
        )
        cats = [*M.FAILURES, "ok"]
        plot_bars(
            [failure_label(k) for k in cats],
            {MODEL_KO[m]: [float(t["failures"][m].get(k, 0)) for k in cats] for m in t["models"]},
            f"{TESTSET_KO[ts]}: 실패 유형 (건수)",
            fig_dir / f"failures_{ts}.png",
            dpi,
            label_fmt="%d",
        )
        drawn[ts] = True
    return drawn
