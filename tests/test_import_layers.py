"""The house has one direction: gateway (lowest) ← monitor ← dashboard, and no circle of modules. Every import
counts (inside functions, type-only ones), and so does an `apps.get_model("<app>", …)` look-up."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("gateway", "monitor", "dashboard")  # lowest first: an app may use those before it, never those after
FLOOR = {app: index for index, app in enumerate(APPS)}


def modules() -> dict[str, Path]:
    found = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "tests" in parts or "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules a file imports (the longest known prefix of each name), and apps it looks models up in."""
    names: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "get_model" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value.split(".")[0])
    result = set()
    for name in names:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in known or (end == 1 and candidate in APPS):
                result.add(candidate)
                break
    return result


def test_no_app_imports_an_app_above_it() -> None:
    known = modules()
    upward = [
        f"{name} imports {target}"
        for name, path in known.items()
        for target in imported(path, known)
        if FLOOR[target.split(".")[0]] > FLOOR[name.split(".")[0]]
    ]
    assert upward == []


def test_no_module_is_in_a_circle_of_imports() -> None:
    known = modules()
    graph = {name: {t for t in imported(path, known) if t in known and t != name} for name, path in known.items()}
    # A package's __init__ that re-exports its modules is not a step of a circle through them.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    circles, state = [], dict.fromkeys(graph, 0)

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state[target] == 1:
                circles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif state[target] == 0:
                visit(target, [*trail, target])
        state[name] = 2

    for name in sorted(graph):
        if state[name] == 0:
            visit(name, [name])
    assert circles == []
