"""The `/rules` page and `POST /api/rules/test`: the checklist test bench of `rules.py` in the workstation."""

from __future__ import annotations

from typing import Any

from callqa.qa_rules.checklist import Checklist, load_checklist
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from .rules import ExampleResult, bundled_checklists, parse_dialogue, run_dialogue, run_examples


def add_rules_routes(app: Any, page: Any, error: type[Exception], json_body: Any, check_fields: Any) -> None:
    """`GET /rules?checklist=NAME` (bundled checklists only: no path from a URL is read) and
    `POST /api/rules/test` with {"checklist": NAME, "dialogue": TEXT} → the dialogue's verdicts as JSON.
    The server hands in its page renderer, error type and request helpers (this module imports nothing of it)."""

    def bundled(name: str) -> Checklist:
        if name not in bundled_checklists():
            raise error(404, f"no bundled checklist {name!r}; bundled: {', '.join(bundled_checklists())}")
        return load_checklist(name)

    @app.get("/rules", response_class=HTMLResponse)
    def rules_page(checklist: str = "team_follow_up") -> HTMLResponse:
        cl = bundled(checklist)
        results = run_examples(cl)
        by_item: dict[str, list[ExampleResult]] = {}
        for r in results:
            by_item.setdefault(r.item_id, []).append(r)
        return page("rules.html", title="Rules bench", checklist=cl, names=bundled_checklists(), by_item=by_item,
                    n_ok=sum(r.ok for r in results), n=len(results))

    @app.post("/api/rules/test")
    async def rules_test(request: Request) -> JSONResponse:
        body = await json_body(request)
        fields = check_fields(body, required=("checklist", "dialogue"), optional=())
        cl = bundled(fields["checklist"])
        try:
            transcript = parse_dialogue(fields["dialogue"])
        except ValueError as e:
            raise error(422, str(e)) from None
        verdicts = await run_in_threadpool(run_dialogue, cl, transcript)
        return JSONResponse({"checklist": {"id": cl.id, "version": cl.version}, "verdicts": verdicts})
