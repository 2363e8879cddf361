"""The layers of the tree, read from the source with `ast` (nothing is imported).

- `callqa/records.py` imports nothing of callqa; `models/` imports records only; `qa_rules/` imports models and
  records: none of the three imports anything of `callqa.pipelines`.
- The sub-packages of `pipelines/` stack in one direction, each importing only those below it:

      store  <  reports  <  run  <  learn  <  bench, app  <  cli

  store (the one door to DuckDB) imports no other sub-package; reports read through the store; run (flows,
  batch, the scheduled weekly artifact) uses the store and the reports' read model; learn (training, evaluation)
  uses run's manifests and engine; bench and app (the benches, the review workstation) may use everything below
  but not each other; cli wires them all. A new sub-package fails until it is placed here.
- No import cycle between the modules of `pipelines/`, of `qa_rules/` or of `models/`.

Every import counts, also one inside a function (a lazy import hides a cycle, it does not remove it); only imports
under `if TYPE_CHECKING:` are left out, as they never run.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

FOLDERS = {"callqa": "callqa", "models": "callqa.models", "qa_rules": "callqa.qa_rules",
           "pipelines": "callqa.pipelines"}
PIPELINES = "callqa.pipelines"
LAYER = {"store": 0, "reports": 1, "run": 2, "learn": 3, "bench": 4, "app": 4, "cli": 5}
CORE_ALLOWED = {  # what each core part may import of callqa
    "callqa.records": (),
    "callqa.models": ("callqa.models", "callqa.records"),
    "callqa.qa_rules": ("callqa.qa_rules", "callqa.models", "callqa.records"),
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module imported (the longest known module the name resolves to)
    line: int


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file for every .py of the product folders (a package is its __init__.py)."""
    out = {}
    for folder, ns in FOLDERS.items():
        for p in sorted((root / folder).rglob("*.py")):
            if "__pycache__" in p.parts:
                continue
            parts = p.relative_to(root / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((ns, *parts))] = p
    return out


def _runtime_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under `if TYPE_CHECKING:` (their `else:` counts)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def type_checking(test: ast.expr) -> bool:
        return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
            (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def imports_of(module: str, source: str, known: set[str], is_package: bool = False) -> list[Import]:
    """The callqa modules `module` imports (see the module docstring), each resolved to a known module:
    `from callqa.pipelines.store import reads` is `...store.reads`, `from ...reads import scored_calls` is
    `...store.reads`, relative imports resolved from the module's package."""
    package = module if is_package else module.rpartition(".")[0]

    def known_prefix(name: str) -> str | None:
        while name:
            if name in known:
                return name
            name = name.rpartition(".")[0]
        return None

    out = []
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            names = [f"{base_name}.{a.name}" if f"{base_name}.{a.name}" in known else base_name for a in node.names]
        for name in names:
            target = known_prefix(name) if name.startswith("callqa") else None
            if target and target != module:
                out.append(Import(module, target, node.lineno))
    return out


def all_imports(root: Path = ROOT) -> list[Import]:
    files = module_files(root)
    known = set(files)
    return [imp for mod, p in files.items()
            for imp in imports_of(mod, p.read_text(encoding="utf-8"), known, p.name == "__init__.py")]


def _where(imp: Import) -> str:
    return f"{imp.source}:{imp.line} imports {imp.target}"


def core_of(module: str) -> str | None:
    return next((c for c in CORE_ALLOWED if module == c or module.startswith(c + ".")), None)


def sub_package(module: str) -> str | None:
    """'store' for callqa.pipelines.store.reads; None for callqa.pipelines itself and modules outside it."""
    parts = module.split(".")
    return parts[2] if parts[:2] == ["callqa", "pipelines"] and len(parts) > 2 else None


def layer_breaks(imports: list[Import]) -> list[str]:
    """Imports that go sideways or up the stack of pipelines' sub-packages, or from the core into anything not
    allowed to it (always including `callqa.pipelines`)."""
    out = []
    for imp in imports:
        core = core_of(imp.source)
        if core is not None:
            if not any(imp.target == a or imp.target.startswith(a + ".") for a in CORE_ALLOWED[core]):
                out.append(_where(imp))
            continue
        src, dst = sub_package(imp.source), sub_package(imp.target)
        if src is None or dst is None or src == dst:
            continue
        if LAYER[dst] >= LAYER[src]:
            below = ", ".join(k for k, v in LAYER.items() if v < LAYER[src]) or "no other sub-package"
            out.append(f"{_where(imp)} ({src} may import {below})")
    return out


def cycles(imports: list[Import], within: str = PIPELINES) -> list[list[str]]:
    """The import cycles (strongly connected sets of two or more modules, or a module importing itself) among the
    modules under `within` (Tarjan's algorithm, iterative)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.source.startswith(within) and imp.target.startswith(within):
            graph.setdefault(imp.source, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1 or node in graph[node]:
                    found.append(sorted(comp))
    return found


# --- the tree ----------------------------------------------------------------------------------------


def test_the_scan_sees_the_tree():
    files = module_files()
    assert {"callqa.records", "callqa.models.asr", "callqa.qa_rules.engine", "callqa.pipelines.store.database",
            "callqa.pipelines.app.server", "callqa.pipelines.cli.main"} <= set(files)
    imports = all_imports()
    assert len(imports) > 200
    assert any(i.source == "callqa.pipelines.reports.report_data" and i.target == "callqa.pipelines.store.reads"
               for i in imports)


def test_every_pipelines_sub_package_has_a_layer():
    subs = {p.name for p in (ROOT / "pipelines").iterdir() if (p / "__init__.py").is_file()}
    assert subs == set(LAYER), f"place each sub-package of pipelines/ in LAYER: {sorted(subs ^ set(LAYER))}"


def test_models_qa_rules_and_records_import_nothing_of_pipelines_and_pipelines_only_downwards():
    breaks = layer_breaks(all_imports())
    assert not breaks, "imports against the layers (see this test's docstring):\n" + "\n".join(breaks)


def test_no_import_cycles_in_pipelines():
    found = cycles(all_imports())
    assert not found, "import cycles in pipelines/:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("within", ["callqa.qa_rules", "callqa.models"])
def test_no_import_cycles_in_qa_rules_and_models(within):
    found = cycles(all_imports(), within=within)
    assert not found, f"import cycles in {within}:\n" + "\n".join(" <-> ".join(c) for c in found)


# --- the scanner can fail ----------------------------------------------------------------------------


KNOWN = {"callqa.records", "callqa.models", "callqa.models.asr", "callqa.pipelines", "callqa.pipelines.store",
         "callqa.pipelines.store.reads", "callqa.pipelines.store.database", "callqa.pipelines.run",
         "callqa.pipelines.run.batch", "callqa.pipelines.reports", "callqa.pipelines.reports.report_data"}

SAMPLE = '''
from __future__ import annotations
from typing import TYPE_CHECKING
import os
import callqa.models.asr
from callqa.pipelines.store import reads
from . import database
from .database import Store
from ..reports.report_data import load_dataset

if TYPE_CHECKING:
    from callqa.pipelines.run.batch import BatchEntry
else:
    from callqa.records import Segment


def late():
    from callqa.pipelines.run import batch
    return batch
'''


def test_imports_resolve_relative_lazy_and_type_only_imports():
    got = imports_of("callqa.pipelines.store.review", SAMPLE, KNOWN)
    targets = sorted({(i.target, i.line) for i in got})
    assert targets == [("callqa.models.asr", 5), ("callqa.pipelines.reports.report_data", 9),
                       ("callqa.pipelines.run.batch", 18), ("callqa.pipelines.store.database", 7),
                       ("callqa.pipelines.store.database", 8), ("callqa.pipelines.store.reads", 6),
                       ("callqa.records", 14)]
    # a package's own relative import starts from the package itself
    pkg = imports_of("callqa.pipelines.store", "from . import reads\nfrom .database import Store\n", KNOWN,
                     is_package=True)
    assert [i.target for i in pkg] == ["callqa.pipelines.store.reads", "callqa.pipelines.store.database"]


def test_layer_breaks_and_cycles_are_found():
    bad = [Import("callqa.pipelines.store.review", "callqa.pipelines.run.batch", 3),  # store reaching up
           Import("callqa.pipelines.app.bench", "callqa.pipelines.bench.pipeline_bench", 4),  # sideways
           Import("callqa.models.asr", "callqa.pipelines.store.database", 5),  # the core into pipelines
           Import("callqa.qa_rules.engine", "callqa.records", 6),  # fine
           Import("callqa.records", "callqa.models.asr", 7),  # records imports nothing of callqa
           Import("callqa.pipelines.cli.main", "callqa.pipelines.store.database", 8),  # fine: downwards
           Import("callqa.pipelines.run.flows", "callqa.pipelines.reports.report_data", 9)]  # fine: downwards
    assert [b.split(" (")[0] for b in layer_breaks(bad)] == [
        "callqa.pipelines.store.review:3 imports callqa.pipelines.run.batch",
        "callqa.pipelines.app.bench:4 imports callqa.pipelines.bench.pipeline_bench",
        "callqa.models.asr:5 imports callqa.pipelines.store.database",
        "callqa.records:7 imports callqa.models.asr"]
    ring = [Import("callqa.pipelines.reports.report", "callqa.pipelines.reports.report_html", 1),
            Import("callqa.pipelines.reports.report_html", "callqa.pipelines.reports.report", 2),
            Import("callqa.pipelines.reports.report", "callqa.pipelines.store.reads", 3),
            Import("callqa.pipelines.store.reads", "callqa.pipelines.store.reads", 4)]
    assert sorted(cycles(ring)) == [["callqa.pipelines.reports.report", "callqa.pipelines.reports.report_html"],
                                    ["callqa.pipelines.store.reads"]]
    assert cycles(ring[:1] + ring[2:3]) == []  # one direction only: no cycle
