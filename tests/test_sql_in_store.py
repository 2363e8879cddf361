"""One door to DuckDB: SQL lives only in `pipelines/store/`.

Everything else hands the store what it holds (a `Store`, or what the web app's `store.pool.Pool` lends) and
gets records from `callqa.records` (or the store's own dataclasses) back; there is no exception, the web app
included. The scan parses every module (and the notebook's code cells) and
flags, outside `pipelines/store/`:
- a call of `.execute(`, `.executemany(` or `.sql(`, and `duckdb.connect(`;
- `import duckdb` / `from duckdb import ...`;
- a string literal or f-string that reads as SQL (`SELECT ... FROM`, `INSERT INTO`, `UPDATE x SET`,
  `DELETE FROM`, `CREATE TABLE`, `COPY x TO`, ...; keywords in capitals, as our SQL is written), except
  docstrings, which describe SQL without running it.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from tests.conftest import ROOT

SCANNED = ("callqa", "models", "qa_rules", "pipelines", "scripts")
DOOR = "pipelines/store/"

DB_CALLS = {"execute", "executemany", "sql"}
SQL = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+(OR\s+[A-Z]+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\b(CREATE|DROP|ALTER)\s+(TEMP\s+|TEMPORARY\s+|OR\s+REPLACE\s+)?(TABLE|VIEW|INDEX|SEQUENCE)\b"
    r"|\bCOPY\s+\S+\s+(TO|FROM)\b|\bWITH\s+\w+\s+AS\s*\(")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (first statement of a module, class or function)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def sql_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for every use of DuckDB or SQL text in `source` (see the module docstring)."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    in_fstring = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if f.attr in DB_CALLS:
                found.append((node.lineno, f".{f.attr}("))
            elif f.attr == "connect" and isinstance(f.value, ast.Name) and f.value.id == "duckdb":
                found.append((node.lineno, "duckdb.connect("))
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "duckdb" for a in node.names):
            found.append((node.lineno, "import duckdb"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "duckdb":
            found.append((node.lineno, "from duckdb import"))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
            if SQL.search(text):
                found.append((node.lineno, f"SQL in f-string: {text[:60]!r}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs \
                and id(node) not in in_fstring and SQL.search(node.value):
            found.append((node.lineno, f"SQL in string: {node.value[:60]!r}"))
    return sorted(found)


def _notebook_source(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    # IPython magics and shell lines are not Python
    return "\n".join("\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in c.splitlines())
                     for c in cells)


def _sources() -> list[tuple[str, str]]:
    out = []
    for top in SCANNED:
        for p in sorted((ROOT / top).rglob("*.py")):
            rel = p.relative_to(ROOT).as_posix()
            if ".venv" not in rel and "__pycache__" not in rel:
                out.append((rel, p.read_text(encoding="utf-8")))
    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        out.append((p.relative_to(ROOT).as_posix(), _notebook_source(p)))
    return out


def test_sql_only_inside_the_store():
    sources = _sources()
    assert any(rel == "pipelines/reports/report_data.py" for rel, _ in sources)  # the scan sees the tree
    assert any(rel == "pipelines/app/server.py" for rel, _ in sources)  # the web app too: no exception
    assert any(rel.endswith(".ipynb") for rel, _ in sources)
    outside = [f"{rel}:{line}: {what}" for rel, src in sources
               if not rel.startswith(DOOR) for line, what in sql_uses(src)]
    assert not outside, "SQL outside pipelines/store/ (add a store function instead):\n" + "\n".join(outside)
    # the door itself is where the SQL is: the scan would see it there
    assert sum(len(sql_uses(src)) for rel, src in sources if rel.startswith(DOOR)) > 50


def test_scanner_flags_sql_and_spares_docstrings_and_prose():
    flagged = sql_uses('''
"""Module doc: SELECT agent_id FROM recordings is how it used to be done."""
import duckdb
from duckdb import DuckDBPyConnection


def f(con, week):
    """Also a docstring: INSERT INTO x VALUES (1)."""
    con.execute("SELECT 1")
    rows = store.con.sql("SELECT 1").fetchall()
    q = "SELECT r.agent_id, count(*) FROM recordings r " "GROUP BY 1"
    q2 = f"UPDATE recordings SET status = 'x' WHERE week = {week}"
    q3 = ("CREATE TABLE p (a INT)")
    duckdb.connect(":memory:")
    help_text = "select the items from the checklist you want; copy the file to the stage"
    return q, q2, q3, help_text
''')
    whats = [w for _, w in flagged]
    assert whats.count(".execute(") == 1 and whats.count(".sql(") == 1
    assert "import duckdb" in whats and "from duckdb import" in whats and "duckdb.connect(" in whats
    assert sum(w.startswith("SQL in string") for w in whats) == 2  # q and q3 (q2 is an f-string)
    assert sum(w.startswith("SQL in f-string") for w in whats) == 1
    assert not any("Module doc" in w or "Also a docstring" in w or "select the items" in w for w in whats)
    lines = {line for line, _ in flagged}
    assert 2 not in lines and 8 not in lines  # the two docstrings
