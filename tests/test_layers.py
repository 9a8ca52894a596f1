"""The import graph: layers point downward only, and there is no cycle (issue 12).

Layers, lowest first; a module may import from its own layer and those below it only:
  core      pipeline.core.*             (models errors identifiers schema files settings resources
                                         retry terms memo worker)
  sources   pipeline.sources.*          (PDF text, DOI metadata, HTTP)
  llm       pipeline.llm.*              (the model seam and what wraps it)
  stages    pipeline.stages.*           (extract, draft, grade, check)
  services  run batch evidence review evaluation store render web
  cli       pipeline.cli.*, __main__
store, render and web are services that must not reach into a stage, the model or the sources.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "pipeline"
LAYERS = ["core", "sources", "llm", "stages", "services", "cli"]
READ_SIDE = {"pipeline.store", "pipeline.render", "pipeline.web"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("core", "__init__"):
        return "core"
    if parts[1] in ("sources", "llm", "stages", "cli"):
        return parts[1]
    if parts[1] == "__main__":
        return "cli"
    return "services"


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
            read_side = any(module == side or module.startswith(side + ".") for side in READ_SIDE)
            if read_side and layer(target) in ("sources", "llm", "stages"):
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
        "import sys, pipeline.store, pipeline.render; "
        "print(sorted({m.split('.')[0] if not m.startswith('pipeline') else m for m in sys.modules "
        "if m.split('.')[0] in ('httpx', 'openai') or m.startswith(('pipeline.llm', 'pipeline.stages', 'pipeline.sources'))}))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert loaded.strip() == "[]"
