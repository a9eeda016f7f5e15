"""Small inline-SVG charts for the monitor report (no plotting library to deploy)."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

WIDTH, HEIGHT, PAD = 560, 220, 36
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def _scale(values: np.ndarray, lo: float, hi: float, out_lo: float, out_hi: float) -> np.ndarray:
    span = (hi - lo) or 1.0
    return out_lo + (values - lo) / span * (out_hi - out_lo)


def _frame(title: str, body: str, y_lo: float, y_hi: float, legend: Sequence[str]) -> str:
    keys = "".join(f'<text x="{PAD + 150 * i}" y="{HEIGHT - 6}" fill="{COLOURS[i % len(COLOURS)]}" '
                   f'font-size="11">{html.escape(name)}</text>' for i, name in enumerate(legend))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img">'
            f"<title>{html.escape(title)}</title>"
            f'<rect x="{PAD}" y="10" width="{WIDTH - 2 * PAD}" height="{HEIGHT - PAD - 10}" '
            f'fill="none" stroke="#bbb"/>'
            f'<text x="2" y="18" font-size="10">{y_hi:.4g}</text>'
            f'<text x="2" y="{HEIGHT - PAD}" font-size="10">{y_lo:.4g}</text>{body}{keys}</svg>')


def line_chart(title: str, series: Sequence[tuple[str, Sequence[float]]]) -> str:
    """Lines over a shared x index (e.g. predicted and actual over time)."""
    arrays = [np.asarray(values, dtype=float) for _, values in series]
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.zeros(0)
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    body = ""
    for i, values in enumerate(arrays):
        if len(values) < 2:
            continue
        x = _scale(np.arange(len(values), dtype=float), 0, len(values) - 1, PAD, WIDTH - PAD)
        y = _scale(values, lo, hi, HEIGHT - PAD, 10)
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y, strict=False) if np.isfinite(b))
        body += f'<polyline fill="none" stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="1.2" points="{points}"/>'
    return _frame(title, body, lo, hi, [name for name, _ in series])


def histogram_chart(title: str, reference: np.ndarray, recent: np.ndarray, bins: int = 30) -> str:
    """Reference and recent distributions as density outlines on shared bins."""
    both = np.concatenate([reference[np.isfinite(reference)], recent[np.isfinite(recent)]])
    if not len(both):
        return _frame(title, "", 0, 1, [])
    edges = np.histogram_bin_edges(both, bins=bins)
    series = []
    for sample in (reference, recent):
        counts, _ = np.histogram(sample[np.isfinite(sample)], edges)
        series.append(counts / max(1, counts.sum()))
    return line_chart(title, [(f"reference (n={len(reference)})", series[0]),
                              (f"recent (n={len(recent)})", series[1])])


def bar_chart(title: str, labels: Sequence[str],
              series: Sequence[tuple[str, Sequence[float | None]]]) -> str:
    """Grouped bars, one group per label (e.g. MAPE per model version)."""
    values = np.array([[np.nan if v is None else v for v in vals] for _, vals in series], dtype=float)
    finite = values[np.isfinite(values)]
    hi = float(finite.max()) if len(finite) else 1.0
    n_groups, n_series = max(1, len(labels)), max(1, len(series))
    slot = (WIDTH - 2 * PAD) / n_groups
    width = slot / (n_series + 1)
    body = ""
    for g, label in enumerate(labels):
        for s in range(len(series)):
            v = values[s, g]
            if not np.isfinite(v):
                continue
            h = (v / hi if hi else 0) * (HEIGHT - PAD - 10)
            x = PAD + g * slot + s * width + width / 2
            body += (f'<rect x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{width:.1f}" height="{h:.1f}" '
                     f'fill="{COLOURS[s % len(COLOURS)]}"><title>{html.escape(label)}: {v:.4g}</title></rect>')
        body += (f'<text x="{PAD + g * slot + 2:.1f}" y="{HEIGHT - PAD + 12}" font-size="8">'
                 f"{html.escape(label[-14:])}</text>")
    return _frame(title, body, 0.0, hi, [name for name, _ in series])
