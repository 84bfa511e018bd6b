"""The grader's modules import each other at their top, never inside a
function, and without a cycle: every import of conformance/, the inner ones
too, read with ast."""
import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "conformance"


def imports_of(path):
    """[(module of conformance it imports, whether at the module's top level)]."""
    tree = ast.parse(path.read_text(), str(path))
    top = set()
    for node in tree.body:
        # An import guarded at the top (try/except ImportError, if) is still at the top.
        for inner in ast.walk(node) if isinstance(node, (ast.Try, ast.If)) else [node]:
            top.add(id(inner))
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                names = [node.module] if node.module else [alias.name for alias in node.names]
            elif node.level == 0 and (node.module or "").startswith("conformance."):
                names = [node.module.split(".")[1]]
            elif node.level == 0 and node.module == "conformance":
                names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("conformance.")]
        for name in names:
            module = name.split(".")[0]
            if (PACKAGE / f"{module}.py").exists():
                out.append((module, id(node) in top))
    return out


def graph():
    return {path.stem: imports_of(path) for path in sorted(PACKAGE.glob("*.py"))}


def test_no_module_of_the_grader_imports_another_inside_a_function():
    inner = {module: sorted({name for name, at_top in found if not at_top})
             for module, found in graph().items()}
    assert {module: names for module, names in inner.items() if names} == {}


def test_the_grader_s_modules_import_each_other_without_a_cycle():
    edges = {module: {name for name, _ in found} for module, found in graph().items()}
    cycles, done = [], set()

    def visit(module, path):
        if module in path:
            cycles.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        for name in sorted(edges.get(module, ())):
            visit(name, path + [module])
        done.add(module)

    for module in edges:
        visit(module, [])
    assert cycles == []


def test_the_walk_sees_inner_imports_and_cycles(tmp_path):
    """The walk itself: an import inside a function is seen as one."""
    (tmp_path / "a.py").write_text("from . import b\n\ndef f():\n    from .c import x\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path
    try:
        (tmp_path / "b.py").write_text("from .a import y\n")
        (tmp_path / "c.py").write_text("")
        assert sorted(imports_of(tmp_path / "a.py")) == [("b", True), ("c", False)]
        assert imports_of(tmp_path / "b.py") == [("a", True)]
    finally:
        PACKAGE = saved


def test_checks_read_facts_never_the_code_that_gathers_them():
    edges = {module: {name for name, _ in found} for module, found in graph().items()}
    reached, todo = set(), ["checks"]
    while todo:
        for name in edges.get(todo.pop(), ()):
            if name not in reached:
                reached.add(name)
                todo.append(name)
    assert not reached & {"seccomp", "ptrace", "procfs", "observe", "watch", "witness"}, reached
