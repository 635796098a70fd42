"""The package's layout rules: task names compared only in the task lookup, no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import erase_jax
from erase_jax.tasks import task_names

PACKAGE = Path(erase_jax.__file__).parent
DECLARING_ATTRIBUTES = {"task", "name"}  # `task = "CF"` on a model, `name = "CF"` on a task plug-in


def package_modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def task_name_uses(path: Path, names: set[str]) -> list[str]:
    """Places in a module where a task name appears as a string other than in a declaration."""
    tree = ast.parse(path.read_text())
    allowed = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id in DECLARING_ATTRIBUTES for t in targets) and node.value is not None:
                allowed.add(id(node.value))
    return [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and node.value.upper() in names and id(node) not in allowed
    ]


def test_task_names_appear_only_where_tasks_and_models_declare_them():
    names = {name.upper() for name in task_names()} | {"NBR"}
    assert {"CF", "SBR"} <= names
    uses = [use for path in package_modules().values() for use in task_name_uses(path, names)]
    assert uses == [], "task names compared or keyed outside the task lookup:\n" + "\n".join(uses)


def test_the_check_finds_a_comparison(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('class M:\n    task = "SBR"\n\ndef f(model):\n    return model.task == "SBR"\n')
    assert len(task_name_uses_outside(module)) == 1


def task_name_uses_outside(module: Path) -> list[str]:
    tree = ast.parse(module.read_text())
    allowed = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign) and n.targets[0].id in DECLARING_ATTRIBUTES}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == "SBR" and id(n) not in allowed]


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules `module` imports, at any depth of its code (lazy imports included)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules and name != module}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state, stack, found = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_package_has_no_import_cycle():
    modules = package_modules()
    # a package's __init__ is imported with each of its modules; it may re-export them, so the
    # edge from a module to its own parent package does not count
    graph = {
        name: {m for m in imports_of(name, path, modules) if not name.startswith(m + ".")}
        for name, path in modules.items()
    }
    found = cycles(graph)
    assert found == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_test_folders_mirror_the_package():
    tests_root = Path(__file__).parent
    folders = [p.parent.relative_to(tests_root) for p in tests_root.rglob("__init__.py") if p.parent != tests_root]
    unmatched = [str(f) for f in folders if not (PACKAGE / f).is_dir()]
    assert folders and unmatched == [], f"test folders without a package folder: {unmatched}"
