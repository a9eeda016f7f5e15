"""The monitor report's figures: matplotlib, rendered to inline SVG strings.

Only figures are made here; ``report.py`` composes the page. Each function returns
an ``<svg>`` element, or None when there is nothing to plot (the page then says so
instead of showing an empty axis). Text stays text (``svg.fonttype`` none), so the
page's font renders it and a test can read the labels. Figures are made with
``matplotlib.figure.Figure``, not pyplot: nothing keeps a reference to them, so
they are freed once rendered (pyplot's global figure list is never touched).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.typing import RcKeyType

    from shared.monitor.report import Distribution, Timeline, VersionAccuracy

FIGSIZE = (6.0, 2.6)  # inches; the page scales the SVG to its column
STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.labelsize": 9,
    "axes.titlesize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.edgecolor": "#888888",
    "axes.axisbelow": True,
}
SERVED, OBSERVED, TRAINING = "#1f77b4", "#e6550d", "#2ca02c"
PREDICTED, ACTUAL = "#1f77b4", "#333333"
VERSION_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")


def axis_label(name: str, unit: str) -> str:
    """``Temperature [degC]``; the name alone without a unit."""
    return f"{name} [{unit}]" if unit else name


def _finite(values: np.ndarray | None) -> np.ndarray:
    if values is None:
        return np.zeros(0)
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _render(draw: Callable[[Axes], None], salt: str) -> str:
    """Draw on a fresh figure with the shared style and return its ``<svg>`` element.

    ``salt`` seeds the SVG's internal ids (clip paths), so several figures on one
    page never share an id and the same data renders to the same text.
    """
    with matplotlib.rc_context(STYLE), matplotlib.rc_context({"svg.hashsalt": salt}):
        fig = Figure(figsize=FIGSIZE, layout="constrained")
        draw(fig.add_subplot())
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        fig.clear()
    text = buffer.getvalue()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)  # RDF boilerplate
    return text[text.index("<svg"):].strip()


def _bins(values: np.ndarray, training_range: tuple[float, float] | None) -> list[float]:
    """Shared bin edges over the data: about sqrt(n) of them (10 to 30), none narrower than
    a 60th of the visible axis (data and training range), so a stuck input is a bar, not a hairline."""
    lo, hi = float(values.min()), float(values.max())
    view = [lo, hi, *(training_range or ())]
    floor = (max(view) - min(view)) / 60 or max(abs(lo), 1.0) * 0.02
    width = max((hi - lo) / int(np.clip(np.sqrt(len(values)), 10, 30)), floor)
    count = max(1, int(np.ceil((hi - lo) / width - 1e-9)))
    start = lo - (count * width - (hi - lo)) / 2  # the data centred in the bins
    return (start + width * np.arange(count + 1)).tolist()


def distribution(d: Distribution) -> str | None:
    """Served values against observed ones on shared bins (density), the training range shaded."""
    served, observed = _finite(d.served), _finite(d.observed)
    if not len(served) and not len(observed):
        return None
    bins = _bins(np.concatenate([served, observed]), d.training_range)

    def draw(ax: Axes) -> None:
        if d.training_range is not None:
            lo, hi = d.training_range
            ax.axvspan(lo, hi, color=TRAINING, alpha=0.12, lw=0,
                       label=f"training range {lo:.4g} to {hi:.4g}")
            for edge in (lo, hi):
                ax.axvline(edge, color=TRAINING, lw=1, ls="--")
        if len(served):
            ax.hist(served, bins, density=True, histtype="stepfilled", color=SERVED, alpha=0.45,
                    label=f"served (n={len(served)})")
        if len(observed):
            ax.hist(observed, bins, density=True, histtype="step", color=OBSERVED, lw=1.6,
                    label=f"observed (n={len(observed)})")
        constant = np.unique(served)
        if len(served) > 1 and len(constant) == 1:  # a stuck input: one bar, say its value
            ax.annotate(f"all {len(served)} served values are {constant[0]:.4g}", (0.5, 0.96),
                        xycoords="axes fraction", ha="center", va="top", fontsize=8, color=SERVED,
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5})
        ax.set_xlabel(axis_label(d.feature, d.unit))
        ax.set_ylabel("density")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))

    return _render(draw, f"distribution-{d.feature}")


def timeline(t: Timeline) -> str | None:
    """Predicted and actual values over time."""
    if not len(t.timestamps):
        return None

    def draw(ax: Axes) -> None:
        x = np.asarray(t.timestamps, dtype="datetime64[m]")
        ax.plot(x, np.asarray(t.actual, float), color=ACTUAL, lw=1.2, label="actual")
        ax.plot(x, np.asarray(t.predicted, float), color=PREDICTED, lw=1.2, alpha=0.85, label="predicted")
        locator = mdates.AutoDateLocator(minticks=4, maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_ylabel(axis_label(t.target, t.unit))
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))

    return _render(draw, f"timeline-{t.target}")


def _when(iso: str) -> datetime:
    """A naive UTC datetime of an ISO-8601 time (naive means UTC; matplotlib's dates are UTC)."""
    moment = datetime.fromisoformat(iso)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def accuracy(target: str, versions: Sequence[VersionAccuracy]) -> str | None:
    """Live MAPE per version over run time; each version's holdout MAPE dashed; serving version bold."""
    shown = [v for v in versions if v.live]
    if not shown:
        return None

    def draw(ax: Axes) -> None:
        handles = []
        for i, v in enumerate(shown):
            colour = VERSION_COLOURS[i % len(VERSION_COLOURS)]
            name = v.version.removeprefix(f"{target}-")
            width, size, alpha = (2.4, 5.0, 1.0) if v.production else (1.0, 3.0, 0.7)
            x = np.array([_when(at) for at, _ in v.live], dtype="datetime64[s]")
            y = [mape for _, mape in v.live]
            (line,) = ax.plot(x, y, color=colour, lw=width, marker="o", ms=size, alpha=alpha,
                              zorder=3 if v.production else 2,
                              label=f"{name} (serving)" if v.production else name)
            handles.append(line)
            if v.holdout_mape is not None:
                ax.axhline(v.holdout_mape, color=colour, lw=width * 0.6, ls="--", alpha=alpha, zorder=1)
        handles.append(Line2D([], [], color="#555555", lw=1, ls="--", label="holdout MAPE"))
        locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_ylabel("MAPE [%]")
        ax.set_xlabel("monitor run (UTC)")
        ax.set_ylim(bottom=0)
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    return _render(draw, f"accuracy-{target}")
