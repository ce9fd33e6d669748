"""The package's layout stays what issue 21 made it: data flows one way (no import cycles between modules, lazy
imports included), no module reaches into another's private names, and every function and file fits in one's head
(at most MAX_FUNCTION lines and MAX_FILE lines). Read from the source with `ast`; nothing is imported."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "diffusekit"
MAX_FUNCTION = 80
MAX_FILE = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _target(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(mods):
    """module -> set of package modules it imports; and every (module, imported private name)."""
    edges, private = {m: set() for m in mods}, []
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                tgt = _target(m, path, node)
                for alias in node.names:
                    dest = f"{tgt}.{alias.name}" if f"{tgt}.{alias.name}" in mods else tgt
                    if dest in mods and dest != m:
                        edges[m].add(dest)
                    if alias.name.startswith("_") and not alias.name.startswith("__") and dest != m:
                        private.append((m, f"{tgt}.{alias.name}"))
            elif isinstance(node, ast.Import):
                edges[m] |= {a.name for a in node.names if a.name in mods and a.name != m}
    return edges, private


def _cycle(edges) -> list[str] | None:
    """One import cycle, as a path of modules, or None (depth-first search with colours)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == "open":
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_checker_sees_cycles_and_private_imports():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    node = ast.parse("from ..data.arrays import _scale").body[0]
    assert _target("diffusekit.inverse.task", Path("task.py"), node) == "diffusekit.data.arrays"


def test_no_import_cycles():
    edges, _ = _imports(_modules())
    assert _cycle(edges) is None, " -> ".join(_cycle(edges))


def test_no_module_imports_another_modules_private_names():
    _, private = _imports(_modules())
    assert not private, private


def test_functions_and_files_are_short():
    long = []
    for m, path in _modules().items():
        src = path.read_text()
        if src.count("\n") > MAX_FILE:
            long.append(f"{path.relative_to(PACKAGE.parent)}: {src.count(chr(10))} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {n} lines")
    assert not long, long
