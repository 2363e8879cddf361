"""HTML pages of the weekly report: the index (scorecard, charts, coaching, follow-ups, metrics,
review agreement), one page per agent (calls, focus) and one per call (transcript with the
evidence highlighted in place). Rendered from jinja2 templates (`pipelines/templates/report/`, autoescaped,
shipped as package data); plain HTML with inline CSS and SVG: it opens offline from disk.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callqa.pipelines.reports.report_charts import bar_chart, line_chart
from callqa.pipelines.reports.report_data import Call, item_title
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

if TYPE_CHECKING:
    from callqa.pipelines.reports.report import WeekReport

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:24px;
color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;font-size:13px;
text-align:left;vertical-align:top}th{background:#f4f6f8}td.num{text-align:right}
.good{background:#e3f4ea}.mid{background:#fdf1e2}.bad{background:#f9e0de}.na{color:#999}
.up{color:#1e8449}.down{color:#c0392b}.muted{color:#777;font-size:12px}
.seg{margin:4px 0;padding:4px 8px;border-left:4px solid #ccc}.seg.agent{border-color:#1b6ca8}
.seg.customer{border-color:#d9822b;background:#fcfaf6}.who{font-weight:600;margin-right:6px}
mark.ev-pass{background:#c8efd4}mark.ev-fail{background:#f7c6c1}.tag{display:inline-block;font-size:11px;
padding:0 5px;border-radius:3px;margin-left:4px;background:#eee}.tag.pass{background:#c8efd4}
.tag.fail{background:#f7c6c1}.tag.na{background:#eee}.ex{margin:6px 0;padding:6px 8px;background:#f8f9fa}
.tag.lowaudio{background:#fbe7a1}.lowaudio-why{color:#8a6300}
audio{height:28px;vertical-align:middle}.charts{display:flex;flex-wrap:wrap;gap:24px}
"""


def fmt_t(s: float) -> str:
    return f"{int(s // 60)}:{s % 60:04.1f}"


def _highlight(text: str, marks: list[tuple[str, str, str]]) -> Markup:
    """The segment text with each evidence quote marked in place (the whole text when the quote is it);
    items citing the same quote share one mark (`data-item` lists them)."""
    by_quote: dict[str, list[tuple[str, str]]] = {}
    for item_id, verdict, quote in marks:
        by_quote.setdefault(quote if quote and quote in text else text, []).append((item_id, verdict))
    out = str(escape(text))
    for quote, items in by_quote.items():
        q = str(escape(quote))
        cls = "ev-fail" if any(v == "fail" for _, v in items) else "ev-pass"
        names = " ".join(i for i, _ in items)
        title = ", ".join(f"{i}: {v}" for i, v in items)
        tag = f'<mark class="{cls}" data-item="{escape(names)}" title="{escape(title)}">'
        out = out.replace(q, f"{tag}{q}</mark>", 1)
    return Markup(out)  # noqa: S704 - every piece above is escaped


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates" / "report"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=False, keep_trailing_newline=True)
    env.filters.update(mmss=fmt_t, title_of=item_title, highlight=_highlight)
    return env


def _render(name: str, title: str, depth: int = 0, **ctx: Any) -> str:
    return _env().get_template(name).render(title=title, css=Markup(CSS), depth=depth,  # noqa: S704 - constant
                                            up="../" * depth, **ctx)


def render_index(r: WeekReport) -> str:
    s = r.summary
    items = r.dataset.scored_items
    bars = bar_chart([(item_title(it, r.lang), s.team_pass_rate.get(it["id"]), s.team_median_pass_rate.get(it["id"]))
                      for it in items], "item-pass-rates",
                     f"Team pass rate per item, {s.week} (tick: median of agents)")
    trend = line_chart(s.trend_weeks, s.trends, "weekly-trends", "Mean call score per agent and week",
                       reference=r.team_median_trend)
    # items tracked but not scored (weight 0, e.g. "the customer objected"): how many calls had them
    tracked = [it for it in r.dataset.items if it.get("weight", 0) == 0 and it.get("polarity", "present") == "present"]
    reviewed = sum(1 for c in r.dataset.week_calls(s.week) for v in c.verdicts.values() if v.human_verdict)
    return _render("index.html", f"QA report {s.week}", r=r, items=items, tracked=tracked,
                   charts=Markup(bars + trend), reviewed=reviewed)  # noqa: S704 - SVG built with escaped labels


def render_agent(r: WeekReport, agent: str) -> str:
    a = next(x for x in r.summary.agents if x.agent_id == agent)
    items = r.dataset.scored_items
    bars = bar_chart([(item_title(it, r.lang), a.pass_rate(it["id"]), r.summary.team_median_pass_rate.get(it["id"]))
                      for it in items], f"agent-pass-rates-{agent}", f"{agent}: pass rate per item (tick: team median)")
    trend = line_chart(r.summary.trend_weeks, {agent: r.summary.trends[agent]}, f"agent-trend-{agent}",
                       f"{agent}: mean call score per week", reference=r.team_median_trend)
    return _render("agent.html", f"{agent} {r.summary.week}", depth=1, r=r, a=a,
                   calls=r.dataset.week_calls(r.summary.week, agent),
                   charts=Markup(bars + trend))  # noqa: S704 - SVG built with escaped labels


def render_call(r: WeekReport, c: Call) -> str:
    marks: dict[int, list[tuple[str, str, str]]] = {}
    for v in c.verdicts.values():
        for e in v.evidence:
            marks.setdefault(e.segment, []).append((v.item_id, v.verdict, e.quote))
    return _render("call.html", f"Call {c.call_id}", depth=1, r=r, c=c, marks=marks,
                   segments=r.segments.get(c.recording_id, []))
