"""docs/ARCHITECTURE.md as a checked contract: the layer order, an import graph of ``harl/``
without circles or upward imports, and a file map that names every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "harl"
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text()


def layer_order() -> dict[str, int]:
    """``{"experiments": 0, "cli": 1, ...}`` from the doc's "Layers, top to bottom" line."""
    match = re.search(r"Layers, top to bottom[^`]*`([^`]+)`", DOC)
    assert match, "docs/ARCHITECTURE.md lost its 'Layers, top to bottom' line"
    return {name.strip(): rank for rank, level in enumerate(match.group(1).split("->")) for name in level.split(",")}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, function-local imports included."""
    modules = module_files()

    def owner(name: str) -> str | None:  # the module a dotted name lives in
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            targets |= {owner(name) for name in names if name.split(".")[0] == "harl"}
        graph[module] = {target for target in targets if target and target != module}
    return graph


def layer_of(module: str, order: dict[str, int]) -> int | None:
    parts = module.split(".")
    return order.get(parts[1]) if len(parts) > 1 else None  # harl/__init__.py belongs to no layer


def test_the_layer_order_covers_every_subpackage():
    order = layer_order()
    top_level = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()}
    code = {name for name in top_level if name not in ("__init__", "__pycache__", "configs")}
    assert code == set(order), "every package under harl/ (and cli.py) has a place in the layer order"


def test_imports_point_down_the_layers():
    order, graph = layer_order(), import_graph()
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if None not in (layer_of(module, order), layer_of(target, order))
        and layer_of(target, order) < layer_of(module, order)
    )
    assert not upward, f"imports that point up a layer (docs/ARCHITECTURE.md): {upward}"


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    # depth-first search; a grey module met again closes a circle
    state: dict[str, str] = {}
    stack: list[str] = []
    circles = []

    def visit(module: str) -> None:
        state[module] = "grey"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "grey":
                circles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "black"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_checks_can_fail():
    """The graph sees function-local imports and relative imports (a checker that sees nothing passes)."""
    graph = import_graph()
    assert "harl.runners.base_runner" in graph["harl.cli"]  # imported inside a function
    assert "harl.utils.errors" in graph["harl.utils.files"]


def file_map_entries() -> list[str]:
    """The entries of the doc's layout block under ``harl/``, continuation lines joined."""
    block = DOC.split("```\nharl/\n", 1)[1].split("```", 1)[0]
    entries: list[str] = []
    for line in block.splitlines():
        if re.match(r"  \S", line):
            entries.append(line.strip())
        elif line.startswith("    ") and entries:
            entries[-1] += " " + line.strip()
    return entries


def is_marker(path: Path) -> bool:
    """A package ``__init__.py`` with nothing but a docstring (not a module of its own)."""
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body
    )


def named_modules() -> set[str]:
    """Files the map names: paths relative to harl/, and bare names in the folder of their entry."""
    named = set()
    for entry in file_map_entries():
        folder = str(Path(entry.split()[0]).parent)
        for token in re.findall(r"[\w/<>]+\.py\b", entry):
            if token.split("/")[0] in ("tests", "examples", "benchmarks"):
                continue  # a file outside harl/ mentioned in a description
            token = token if "/" in token or folder == "." else f"{folder}/{token}"
            if "<family>" in token:  # one line for every environment family's package
                families = [p.name for p in (PACKAGE / "envs").iterdir() if (p / "__init__.py").exists()]
                named.update(token.replace("<family>", family) for family in families)
            else:
                named.add(token)
    return named


def test_the_file_map_names_every_module_and_nothing_else():
    named = named_modules()
    modules = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if not is_marker(path)}
    assert not modules - named, f"modules missing from docs/ARCHITECTURE.md's layout: {sorted(modules - named)}"
    assert not named - modules, f"the layout names files that do not exist: {sorted(named - modules)}"


@pytest.mark.parametrize("path", ["utils/errors.py", "algorithms/actors/hatrpo.py", "envs/smax/maps.py"])
def test_the_file_map_reader_finds_paths_and_bare_names(path):
    assert path in named_modules()


# a module may grow a little past this before its docstring must say why it is one module
LONG_MODULE_LINES = 460


def test_long_modules_say_why_at_their_top():
    unexplained = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > LONG_MODULE_LINES and "Length (" not in (ast.get_docstring(ast.parse(text)) or ""):
            unexplained.append(str(path.relative_to(ROOT)))
    assert not unexplained, f"modules over {LONG_MODULE_LINES} lines with no 'Length (...)' reason: {unexplained}"
