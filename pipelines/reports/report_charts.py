"""Inline SVG charts for the HTML report: no JavaScript, no fonts or files from elsewhere.

Every chart is an `<svg class="chart" data-chart=...>` whose marks carry classes the browser test
looks for: `rect.bar` for bars, `path.trend` for trend lines, `circle.point` for weekly points.
"""

from __future__ import annotations

from html import escape

PALETTE = ["#1b6ca8", "#d9822b", "#2e9e5b", "#c0392b", "#8e44ad", "#7f8c8d", "#b7950b", "#16a085", "#e84393",
           "#34495e"]


def _fmt(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def bar_chart(rows: list[tuple[str, float | None, float | None]], name: str, title: str, width: int = 560,
              bar_h: int = 22) -> str:
    """Horizontal bars of shares 0-1: (label, value, marker) per row; the marker (e.g. the team
    median) is drawn as a tick; a None value is shown as 'n/a'."""
    label_w, pad, right = 190, 8, 50
    plot_w = width - label_w - right
    height = pad * 2 + 24 + len(rows) * (bar_h + 8)
    out = [f'<svg class="chart" data-chart="{escape(name)}" role="img" aria-label="{escape(title)}" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
           f'<title>{escape(title)}</title>']
    for frac in (0, 0.5, 1.0):
        x = label_w + frac * plot_w
        out.append(f'<line x1="{x:.1f}" y1="{pad}" x2="{x:.1f}" y2="{height - pad - 16}" stroke="#ddd"/>'
                   f'<text x="{x:.1f}" y="{height - pad}" font-size="11" text-anchor="middle" fill="#666">'
                   f'{int(frac * 100)}%</text>')
    for i, (label, value, marker) in enumerate(rows):
        y = pad + i * (bar_h + 8)
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h * 0.7:.1f}" font-size="12" text-anchor="end">'
                   f'{escape(label)}</text>')
        if value is None:
            out.append(f'<text x="{label_w + 4}" y="{y + bar_h * 0.7:.1f}" font-size="11" fill="#999">n/a</text>')
            continue
        w = max(1.0, value * plot_w)
        color = "#2e9e5b" if value >= 0.8 else "#d9822b" if value >= 0.5 else "#c0392b"
        out.append(f'<rect class="bar" data-label="{escape(label)}" data-value="{value:.3f}" x="{label_w}" y="{y}" '
                   f'width="{w:.1f}" height="{bar_h}" fill="{color}"><title>{escape(label)}: '
                   f'{value:.0%}</title></rect>'
                   f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h * 0.7:.1f}" font-size="11">{value:.0%}</text>')
        if marker is not None:
            mx = label_w + marker * plot_w
            out.append(f'<line class="marker" x1="{mx:.1f}" y1="{y - 2}" x2="{mx:.1f}" y2="{y + bar_h + 2}" '
                       f'stroke="#222" stroke-width="2"><title>team median {marker:.0%}</title></line>')
    out.append("</svg>")
    return "".join(out)


def line_chart(weeks: list[str], series: dict[str, list[float | None]], name: str, title: str,
               reference: list[float | None] | None = None, width: int = 640, height: int = 280) -> str:
    """Scores 0-100 per week, one line per series (gaps where a week has no calls); `reference`
    (e.g. the team median) is drawn dashed."""
    left, right, top, bottom = 40, 110, 12, 36
    pw, ph = width - left - right, height - top - bottom
    n = len(weeks)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (pw * i / (n - 1) if n > 1 else pw / 2)
        return x, top + ph * (1 - v / 100.0)

    out = [f'<svg class="chart" data-chart="{escape(name)}" role="img" aria-label="{escape(title)}" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
           f'<title>{escape(title)}</title>']
    for v in (0, 25, 50, 75, 100):
        _, y = xy(0, v)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#666">{v}</text>')
    for i, wk in enumerate(weeks):
        x, _ = xy(i, 0)
        out.append(f'<text x="{x:.1f}" y="{height - 12}" font-size="11" text-anchor="middle" fill="#666">'
                   f'{escape(wk)}</text>')

    def path(values: list[float | None]) -> str:
        d, pen = [], False
        for i, v in enumerate(values):
            if v is None:
                pen = False
                continue
            x, y = xy(i, v)
            d.append(f"{'L' if pen else 'M'}{x:.1f},{y:.1f}")
            pen = True
        return " ".join(d)

    if reference and any(v is not None for v in reference):
        out.append(f'<path class="reference" d="{path(reference)}" fill="none" stroke="#444" stroke-width="1.5" '
                   f'stroke-dasharray="5,4"><title>team median</title></path>')
    for k, (label, values) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        d = path(values)
        if d:
            out.append(f'<path class="trend" data-series="{escape(label)}" d="{d}" fill="none" stroke="{color}" '
                       f'stroke-width="2.5"/>')
        for i, v in enumerate(values):
            if v is not None:
                x, y = xy(i, v)
                out.append(f'<circle class="point" data-series="{escape(label)}" data-week="{escape(weeks[i])}" '
                           f'data-value="{v:.1f}" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}">'
                           f'<title>{escape(label)} {escape(weeks[i])}: {_fmt(v)}</title></circle>')
        ly = top + 14 + 16 * k
        out.append(f'<rect x="{left + pw + 14}" y="{ly - 9}" width="12" height="4" fill="{color}"/>'
                   f'<text x="{left + pw + 30}" y="{ly - 4}" font-size="12">{escape(label)}</text>')
    if reference:
        ly = top + 14 + 16 * len(series)
        out.append(f'<line x1="{left + pw + 14}" y1="{ly - 7}" x2="{left + pw + 26}" y2="{ly - 7}" stroke="#444" '
                   f'stroke-dasharray="3,2"/><text x="{left + pw + 30}" y="{ly - 4}" font-size="12">median</text>')
    out.append("</svg>")
    return "".join(out)
