"""HTML pages of the weekly report: the index (scorecard, charts, coaching, follow-ups, metrics,
review agreement), one page per agent (calls, focus) and one per call (transcript with the
evidence highlighted in place). Plain HTML with inline CSS and SVG: it opens offline from disk.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from callqa.pipelines.coaching import Example
from callqa.pipelines.report_charts import bar_chart, line_chart
from callqa.pipelines.report_data import Call, item_title

if TYPE_CHECKING:
    from callqa.pipelines.report import WeekReport

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
audio{height:28px;vertical-align:middle}.charts{display:flex;flex-wrap:wrap;gap:24px}
"""


def page(title: str, body: str, depth: int = 0) -> str:
    home = "../" * depth + "index.html"
    nav = f'<p class="muted"><a href="{home}">weekly report</a></p>' if depth else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f"<body>{nav}{body}</body></html>\n")


def pct(v: float | None) -> str:
    return '<span class="na">–</span>' if v is None else f"{v:.0%}"


def rate_cell(v: float | None) -> str:
    cls = "na" if v is None else "good" if v >= 0.8 else "mid" if v >= 0.5 else "bad"
    return f'<td class="num {cls}">{pct(v)}</td>'


def change_html(v: float | None) -> str:
    if v is None:
        return '<span class="na">new</span>'
    cls = "up" if v > 0 else "down" if v < 0 else ""
    arrow = "▲" if v > 0 else "▼" if v < 0 else "="
    return f'<span class="{cls}">{arrow} {v:+.1f}</span>'


def fmt_t(s: float) -> str:
    return f"{int(s // 60)}:{s % 60:04.1f}"


def example_html(x: Example, r: WeekReport, depth: int = 0) -> str:
    up = "../" * depth
    clip = (f' <audio controls preload="none" src="{up}{escape(x.clip)}"></audio>'
            f' <a class="muted" href="{up}{escape(x.clip)}">clip</a>') if x.clip else ""
    note = "" if x.note == "evidence" else f' <span class="muted">({escape(x.note)})</span>'
    rev = ' <span class="tag">reviewed</span>' if x.reviewed else ""
    return (f'<div class="ex" data-item="{escape(x.item_id)}" data-kind="{x.kind}" data-agent="{escape(x.agent_id)}" '
            f'data-call="{escape(x.call_id)}"><b>{escape(x.agent_id)}</b> · '
            f'<a href="{up}calls/{escape(x.call_slug)}.html#t{x.start:.1f}">{escape(x.call_id)}</a> · '
            f'{fmt_t(x.start)}–{fmt_t(x.end)} · {escape(x.speaker)}{rev}{note}<br>'
            f"<q>{escape(x.quote)}</q>{clip}</div>")


def scorecard_table(r: WeekReport) -> str:
    items = r.dataset.scored_items
    # items tracked but not scored (weight 0, e.g. "the customer objected"): how many calls had them
    tracked = [it for it in r.dataset.items if it.get("weight", 0) == 0 and it.get("polarity", "present") == "present"]
    heads = "".join(f'<th title="{escape(it["id"])}">{escape(item_title(it, r.lang))}</th>' for it in items)
    tracked_heads = "".join(f'<th title="{escape(it["id"])}: calls">{escape(item_title(it, r.lang))} (calls)</th>'
                            for it in tracked)
    rows = []
    for rank, a in enumerate(r.summary.agents, 1):
        med = r.summary.team_median_score
        vs = "" if med is None else f"{a.score - med:+.1f}"
        cells = "".join(rate_cell(a.pass_rate(it["id"])) for it in items)
        crit = f'<td class="num {"bad" if a.critical_fails else ""}">{a.critical_fails}</td>'
        counts = "".join(f'<td class="num">{a.passed.get(it["id"], 0)}</td>' for it in tracked)
        rows.append(f'<tr data-agent="{escape(a.agent_id)}"><td class="num">{rank}</td>'
                    f'<td><a href="agents/{escape(a.agent_id)}.html">{escape(a.agent_id)}</a></td>'
                    f'<td class="num">{a.calls}</td><td class="num score">{a.score:.1f}</td>'
                    f'<td class="num change">{change_html(a.change)}</td><td class="num">{vs}</td>{crit}{cells}'
                    f'{counts}</tr>')
    med = r.summary.team_median_score
    med_cells = "".join(f'<td class="num">{pct(r.summary.team_median_pass_rate.get(it["id"]))}</td>' for it in items)
    rows.append(f'<tr class="median"><td></td><td><i>team median</i></td><td></td>'
                f'<td class="num">{"" if med is None else f"{med:.1f}"}</td><td></td><td></td><td></td>'
                f"{med_cells}{'<td></td>' * len(tracked)}</tr>")
    return (f'<table class="scorecard"><tr><th>#</th><th>agent</th><th>calls</th><th>score</th>'
            f'<th>vs {escape(r.summary.previous_week or "previous week")}</th><th>vs median</th>'
            f'<th>critical fails</th>{heads}{tracked_heads}</tr>{"".join(rows)}</table>')


def charts(r: WeekReport) -> str:
    items = r.dataset.scored_items
    bars = bar_chart([(item_title(it, r.lang), r.summary.team_pass_rate.get(it["id"]),
                       r.summary.team_median_pass_rate.get(it["id"])) for it in items],
                     "item-pass-rates", f"Team pass rate per item, {r.summary.week} (tick: median of agents)")
    trend = line_chart(r.summary.trend_weeks, r.summary.trends, "weekly-trends",
                       "Mean call score per agent and week", reference=r.team_median_trend)
    return f'<div class="charts">{bars}{trend}</div>'


def coaching_html(r: WeekReport) -> str:
    out = []
    for it in r.dataset.scored_items:
        ex = r.examples.get(it["id"], {})
        best = "".join(example_html(x, r) for x in ex.get("best", [])) or '<p class="muted">none this week</p>'
        miss = "".join(example_html(x, r) for x in ex.get("miss", [])) or '<p class="muted">none this week</p>'
        out.append(f'<section class="coaching" data-item="{escape(it["id"])}"><h3>{escape(item_title(it, r.lang))}'
                   f"</h3><h4>best moments</h4>{best}<h4>clearest misses</h4>{miss}</section>")
    return "".join(out)


def focus_html(r: WeekReport, agent: str, depth: int = 0) -> str:
    rows = []
    for f in r.focus.get(agent, []):
        it = r.dataset.item(f.item_id)
        ex = example_html(f.example, r, depth) if f.example else ""
        model = (f'<div class="muted">a teammate doing it well:</div>{example_html(f.model, r, depth)}'
                 if f.model else "")
        rows.append(f'<li data-item="{escape(f.item_id)}"><b>{escape(item_title(it, r.lang))}</b>: failed '
                    f"{f.failed} of {f.applicable} calls (team {pct(f.team_pass_rate)} passed){ex}{model}</li>")
    return f'<ol class="focus">{"".join(rows)}</ol>' if rows else '<p class="muted">nothing failed this week</p>'


def followups_html(r: WeekReport, agent: str | None = None, depth: int = 0) -> str:
    up = "../" * depth
    rows = [f'<tr data-call="{escape(f.call_id)}"><td>{escape(f.agent_id)}</td>'
            f'<td><a href="{up}calls/{escape(f.call_slug)}.html#t{f.start:.1f}">{escape(f.call_id)}</a></td>'
            f'<td>{f.started_local:%Y-%m-%d %H:%M}</td><td>{escape(f.kind)}</td><td>{escape(f.due or "")}</td>'
            f"<td>{escape(f.quote)}</td></tr>" for f in r.followups if agent is None or f.agent_id == agent]
    if not rows:
        return '<p class="muted">no promises found</p>'
    return ('<table class="followups"><tr><th>agent</th><th>call</th><th>when</th><th>promise</th><th>due</th>'
            f'<th>what the agent said</th></tr>{"".join(rows)}</table>')


def metrics_html(r: WeekReport) -> str:
    rows = []
    for m in r.agent_metrics:
        rate = ", ".join(f"{v:.0f}/min ({k})" for k, v in m.words_per_min.items())
        rows.append(f'<tr data-agent="{escape(m.agent_id)}"><td>{escape(m.agent_id)}</td><td class="num">{m.calls}</td>'
                    f'<td class="num">{pct(m.talk_ratio)}</td><td class="num">{m.longest_customer_monologue_s:.1f} s'
                    f'</td><td class="num">{pct(m.silence_share)}</td><td class="num">{m.interruptions_by_agent}</td>'
                    f'<td class="num">{m.interruptions_by_customer}</td><td>{rate}</td></tr>')
    return ('<table class="metrics"><tr><th>agent</th><th>calls</th><th>agent talk ratio</th><th>longest customer '
            'monologue</th><th>silence</th><th>agent interrupts</th><th>customer interrupts</th><th>agent speech '
            f'rate (words or 字 per min)</th></tr>{"".join(rows)}</table>')


def agreement_html(r: WeekReport) -> str:
    rows = "".join(f'<tr data-item="{escape(s.item_id)}"><td>{escape(s.item_id)}</td><td class="num">{s.reviewed}</td>'
                   f'<td class="num">{pct(s.raw_agreement)}</td><td class="num">'
                   f'{"–" if s.kappa is None else f"{s.kappa:.2f}"}</td></tr>' for s in r.agreement)
    n = sum(1 for c in r.dataset.week_calls(r.summary.week) for v in c.verdicts.values() if v.human_verdict)
    return (f'<p>{n} verdicts of this week carry a human review; the report uses them. Agreement over all reviewed '
            'verdicts of this checklist version (automatic vs human):</p><table class="agreement"><tr><th>item</th>'
            f"<th>reviewed</th><th>raw agreement</th><th>Cohen's kappa</th></tr>{rows}</table>")


def render_index(r: WeekReport) -> str:
    s = r.summary
    n_calls = sum(a.calls for a in s.agents)
    head = (f"<h1>Weekly QA report {escape(s.week)}</h1><p>checklist {escape(r.dataset.checklist_id)} "
            f"v{r.dataset.version} · {n_calls} calls · {len(s.agents)} agents · previous week "
            f"{escape(s.previous_week or 'none')} · team median score "
            f"{'–' if s.team_median_score is None else f'{s.team_median_score:.1f}'}</p>")
    focus = "".join(f'<h3 id="focus-{escape(a.agent_id)}">{escape(a.agent_id)}</h3>{focus_html(r, a.agent_id)}'
                    for a in s.agents)
    body = (f"{head}<h2>Scorecard</h2>{scorecard_table(r)}<p class='muted'>score: mean call score 0-100 (a "
            "critical fail scores 0); item columns: share of applicable calls passed; human overrides applied.</p>"
            f"<h2>Charts</h2>{charts(r)}<h2>Coaching examples</h2>{coaching_html(r)}"
            f"<h2>Top three things to work on</h2>{focus}<h2>Follow-ups (promises made)</h2>{followups_html(r)}"
            f"<h2>Call metrics</h2>{metrics_html(r)}<h2>Human review</h2>{agreement_html(r)}")
    return page(f"QA report {s.week}", body)


def render_agent(r: WeekReport, agent: str) -> str:
    a = next(x for x in r.summary.agents if x.agent_id == agent)
    items = r.dataset.scored_items
    bars = bar_chart([(item_title(it, r.lang), a.pass_rate(it["id"]), r.summary.team_median_pass_rate.get(it["id"]))
                      for it in items], f"agent-pass-rates-{agent}", f"{agent}: pass rate per item (tick: team median)")
    trend = line_chart(r.summary.trend_weeks, {agent: r.summary.trends[agent]}, f"agent-trend-{agent}",
                       f"{agent}: mean call score per week", reference=r.team_median_trend)
    rows = []
    for c in r.dataset.week_calls(r.summary.week, agent):
        tags = "".join(f'<span class="tag {v.verdict}" title="{escape(v.reason)}">{escape(i)}'
                       f'{"*" if v.human_verdict else ""}</span>' for i, v in c.verdicts.items())
        m = r.call_metrics.get(c.recording_id)
        talk = pct(m.talk_ratio) if m else "–"
        rows.append(f'<tr data-call="{escape(c.call_id)}"><td><a href="../calls/{escape(c.slug)}.html">'
                    f'{escape(c.call_id)}</a></td><td>{c.started_local:%Y-%m-%d %H:%M}</td>'
                    f'<td>{escape(c.language or "")}</td><td class="num">{c.score:.0f}</td>'
                    f'<td>{"critical fail" if c.critical_fail else ""}</td><td>{tags}</td>'
                    f'<td class="num">{talk}</td></tr>')
    body = (f"<h1>{escape(agent)} · {escape(r.summary.week)}</h1><p>{a.calls} calls · score {a.score:.1f} "
            f"({change_html(a.change)} vs previous week) · critical fails {a.critical_fails}</p>"
            f'<div class="charts">{bars}{trend}</div><h2>Top three things to work on</h2>{focus_html(r, agent, 1)}'
            '<h2>Calls</h2><table class="calls"><tr><th>call</th><th>when</th><th>lang</th><th>score</th><th></th>'
            f'<th>verdicts (* reviewed)</th><th>agent talk</th></tr>{"".join(rows)}</table>'
            f"<h2>Follow-ups</h2>{followups_html(r, agent, 1)}")
    return page(f"{agent} {r.summary.week}", body, depth=1)


def _highlight(text: str, marks: list[tuple[str, str, str]]) -> str:
    """The segment text with each evidence quote marked in place (the whole text when the quote is it);
    items citing the same quote share one mark (`data-item` lists them)."""
    by_quote: dict[str, list[tuple[str, str]]] = {}
    for item_id, verdict, quote in marks:
        by_quote.setdefault(quote if quote and quote in text else text, []).append((item_id, verdict))
    out = escape(text)
    for quote, items in by_quote.items():
        q = escape(quote)
        cls = "ev-fail" if any(v == "fail" for _, v in items) else "ev-pass"
        names = " ".join(i for i, _ in items)
        title = ", ".join(f"{i}: {v}" for i, v in items)
        tag = f'<mark class="{cls}" data-item="{escape(names)}" title="{escape(title)}">'
        out = out.replace(q, f"{tag}{q}</mark>", 1)
    return out


def render_call(r: WeekReport, c: Call) -> str:
    marks: dict[int, list[tuple[str, str, str]]] = {}
    for v in c.verdicts.values():
        for e in v.evidence:
            marks.setdefault(e.segment, []).append((v.item_id, v.verdict, e.quote))
    segs = []
    for i, s in enumerate(r.segments.get(c.recording_id, [])):
        tags = "".join(f'<span class="tag {vd}">{escape(it)}</span>' for it, vd, _ in marks.get(i, []))
        segs.append(f'<div class="seg {escape(s.speaker)}" id="seg-{i}" data-t="{s.start:.1f}">'
                    f'<a id="t{s.start:.1f}"></a><span class="who">{escape(s.speaker)}</span>'
                    f'<span class="muted">{fmt_t(s.start)}–{fmt_t(s.end)}</span>{tags}<br>'
                    f"{_highlight(s.text, marks.get(i, []))}</div>")
    rows = []
    for it in r.dataset.items:
        v = c.verdicts.get(it["id"])
        if v is None:
            continue
        ev = ", ".join(f'<a href="#seg-{e.segment}">{fmt_t(e.start)}</a>' for e in v.evidence)
        human = (f"{escape(v.human_verdict)} by {escape(v.reviewer or '')}: {escape(v.comment or '')}"
                 if v.human_verdict else "")
        rows.append(f'<tr data-item="{escape(it["id"])}"><td>{escape(item_title(it, r.lang))}</td>'
                    f'<td class="verdict"><span class="tag {v.verdict}">{v.verdict}</span></td>'
                    f"<td>{escape(v.auto_verdict)} ({v.confidence:.2f})</td><td>{human}</td>"
                    f"<td>{escape(v.reason)}</td><td>{ev}</td></tr>")
    body = (f"<h1>Call {escape(c.call_id)}</h1><p>agent <a href='../agents/{escape(c.agent_id)}.html'>"
            f"{escape(c.agent_id)}</a> · {c.started_local:%Y-%m-%d %H:%M} · {escape(c.language or '')} · score "
            f"{c.score:.0f}{' · critical fail' if c.critical_fail else ''}</p>"
            '<table class="verdicts"><tr><th>item</th><th>verdict</th><th>automatic</th><th>human review</th>'
            f'<th>reason</th><th>evidence</th></tr>{"".join(rows)}</table><h2>Transcript</h2>'
            f'<div class="transcript">{"".join(segs)}</div>')
    return page(f"Call {c.call_id}", body, depth=1)
