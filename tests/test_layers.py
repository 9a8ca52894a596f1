"""The import graph: layers point downward only, and there is no cycle.

Layers, lowest first; a module may import from its own layer and those below it only:
  core      pipeline.core.*      the data model, settings, errors, identifiers, files
  sources   pipeline.sources.*   PDF text, DOI metadata, HTTP
  llm       pipeline.llm.*       the model seam and what wraps it
  stages    pipeline.stages.*    extract, draft, grade, check (pure functions of text and answers)
  team      pipeline.team.*      the shared store and its accounts
  review    pipeline.review.*    decisions on records, their pages, notices, the public site
  workflow  pipeline.workflow.*  one paper's run, batches, evidence, replay, evaluation
  web       pipeline.web.*       the review server
  cli       pipeline.cli.*, __main__
The store and the page renderer must not reach into a stage, the model or the sources; the web
layer reaches the stages only through the review and workflow layers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "pipeline"
LAYERS = ["core", "sources", "llm", "stages", "team", "review", "workflow", "web", "cli"]
# modules that may not import the sources, the model or the stages, not even through a lower layer's name
NO_STAGES = ("pipeline.team", "pipeline.review.render", "pipeline.web")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("core", "__init__"):
        return "core"
    if parts[1] == "__main__":
        return "cli"
    assert parts[1] in LAYERS, f"{module} is in no layer: add its package to LAYERS"
    return parts[1]


def imports() -> dict[str, set[str]]:
    """Module -> the pipeline modules it imports at module level (imports inside functions included)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
                for alias in node.names:
                    candidate = f"{node.module}.{alias.name}"
                    found.add(
                        candidate if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists() else node.module
                    )
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("pipeline")}
        graph[name] = found - {name}
    return graph


def test_layers_point_downward_only() -> None:
    upward = []
    for module, targets in imports().items():
        for target in targets:
            if LAYERS.index(layer(target)) > LAYERS.index(layer(module)):
                upward.append(f"{module} ({layer(module)}) imports {target} ({layer(target)})")
            kept_apart = any(module == side or module.startswith(side + ".") for side in NO_STAGES)
            if kept_apart and layer(target) in ("sources", "llm", "stages"):
                upward.append(f"{module} reaches sideways into {target}")
    assert upward == []


def test_there_is_no_import_cycle() -> None:
    graph = imports()
    # the package's __init__ of cli registers the commands: an edge to a child, not a cycle
    graph = {
        m: {t for t in ts if not (m == "pipeline.cli" and t.startswith("pipeline.cli."))} for m, ts in graph.items()
    }
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_store_and_the_page_load_without_the_model_client() -> None:
    probe = (
        "import sys, pipeline.team.store, pipeline.review.render; "
        "print(sorted({m.split('.')[0] if not m.startswith('pipeline') else m for m in sys.modules "
        "if m.split('.')[0] in ('httpx', 'openai') or m.startswith(('pipeline.llm', 'pipeline.stages', 'pipeline.sources'))}))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert loaded.strip() == "[]"


def test_every_module_sits_in_a_package_that_names_its_layer() -> None:
    at_the_root = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert at_the_root == []


def test_no_function_is_longer_than_120_lines() -> None:
    """A function a reader cannot hold at once is split where its steps are."""
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 120
    ]
    assert long == []
