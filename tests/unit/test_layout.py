"""The layout's rules, checked on the code's own imports: each folder one concern, imports pointing one way.

Rooms, top to bottom: commands -> verify, publish -> pipeline -> attest, stages -> core -> installer,
profile -> formats and the shared modules (errors, console, paths, hashing, atomicfile, interrupts).
An import may go down or stay in its room, never up; there are no circles; no stage imports another
stage; every product module is used by the product; no module grows past about 600 lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "bootkiln"
MAX_LINES = 600
# Higher number = higher floor. Shared modules at the top level of the package are the ground.
FLOORS = {"commands": 7, "verify": 6, "publish": 6, "scale": 6, "pipeline": 5, "attest": 4, "stages": 4, "core": 3,
          "installer": 2, "profile": 1, "formats": 0}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> Iterator[str]:
    """The bootkiln modules a file imports, at any depth of the file (lazy imports count too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            if name in known:
                yield name


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: {target for target in imports(path, known) if target != name} for name, path in found.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "bootkiln"


def floor(module: str) -> int:
    return FLOORS.get(room(module), -1)


def test_every_room_has_a_floor() -> None:
    rooms = {room(name) for name in modules() if (PACKAGE / room(name)).is_dir()}
    assert rooms <= set(FLOORS), f"give these folders a floor: {sorted(rooms - set(FLOORS))}"


def test_imports_never_run_up_a_floor() -> None:
    upward = [f"{source} -> {target}" for source, targets in graph().items() for target in targets
              if floor(target) > floor(source) and room(target) != room(source)]
    assert upward == []


def test_there_are_no_import_circles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert circles == []


def test_no_stage_imports_another_stage() -> None:
    shared = {"bootkiln.stages", "bootkiln.stages.base", "bootkiln.stages.artifacts"}
    crossing = [f"{source} -> {target}" for source, targets in graph().items() if room(source) == "stages"
                for target in targets if room(target) == "stages" and target not in shared]
    assert crossing == []


def test_every_product_module_is_used_by_the_product() -> None:
    edges = graph()
    used = {target for targets in edges.values() for target in targets}
    tasks = ROOT / "tasks.py"
    used |= set(imports(tasks, set(edges)))
    # Loaded by name: pytest's -p option (imagetest) and python -m (the fake IMDS's QEMU relay).
    text = "\n".join(path.read_text() for path in PACKAGE.rglob("*.py"))
    used |= {name for name in edges if f'"{name}"' in text}
    packages = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert sorted(set(edges) - used - packages) == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: module_name(path))
def test_no_module_is_over_600_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES
