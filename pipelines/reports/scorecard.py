"""The weekly scorecard as a plain-text table. The numbers come from the read model
(`callqa.pipelines.report_data.weekly_scorecard`), the same ones the HTML report shows."""

from __future__ import annotations

from callqa.pipelines.reports.report_data import Scorecard


def format_scorecard(card: Scorecard, lang: str = "en") -> str:
    """A plain-text table: one row per agent, one column per scored item."""
    scored = [it for it in card.items if it.get("weight", 0) > 0]
    heads = ["agent", "calls", "score", "crit"] + [it["id"] for it in scored]
    rows = [[a.agent_id, str(a.calls), f"{a.score:.1f}", str(a.critical_fails)]
            + ["-" if (r := a.pass_rate(it["id"])) is None else f"{100 * r:.0f}%" for it in scored]
            for a in card.agents]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]
    line = "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))
    out = [f"Weekly scorecard {card.week} — checklist {card.checklist_id} v{card.checklist_version}", line,
           "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out.append("score: mean call score 0-100 (a critical fail scores 0, human overrides applied); item columns: "
               "share of applicable calls passed")
    if card.routing:
        out.append(f"routing: calls per agent routed to {card.checklist_id}, to another checklist, and not scored "
                   "(reasons)")
        for agent, c in card.routing.items():
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k not in ("routed", "elsewhere", "skipped"))
            out.append(f"  {agent}: {c['routed']} routed, {c['elsewhere']} elsewhere, {c['skipped']} skipped"
                       + (f" ({reasons})" if reasons else ""))
    return "\n".join(out)
