"""A check of the tests' own sources: no test compares two renders of one input unless it asks for fresh ones.

render_chart renders each distinct input once per session and hands every caller a copy of that one render, so two
calls with the same arguments return the same objects: a test that compares them (generated secrets, checksums, hook
names) compares one render with itself and passes whatever the chart does. Such a test must pass fresh=True.

Flagged, within one test function (or method): two render_chart calls whose arguments read the same, either without
fresh=True; a call without fresh=True inside a loop or comprehension whose arguments do not change with it; and a
render_chart() of the default values beside the session's default_render fixture.
"""

from __future__ import annotations

import ast
from pathlib import Path


def _is_render(call: ast.AST) -> bool:
    return isinstance(call, ast.Call) and (
        (isinstance(call.func, ast.Name) and call.func.id == "render_chart")
        or (isinstance(call.func, ast.Attribute) and call.func.attr == "render_chart"))


def _fresh(call: ast.Call) -> bool:
    return any(k.arg == "fresh" and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def _input(call: ast.Call) -> str:
    """The call's arguments as written, fresh= left out."""
    return ast.unparse(ast.Call(func=ast.Name("render_chart"), args=call.args,
                                keywords=[k for k in call.keywords if k.arg != "fresh"]))


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _loop(node: ast.AST) -> tuple[set[str], list[ast.AST]] | None:
    """(the names a loop binds, the parts of it that run on every turn), None when `node` is no loop. The iterable of
    a for loop, or of a comprehension's first `for`, is evaluated once: not a part that repeats."""
    if isinstance(node, (ast.For, ast.AsyncFor)):
        return _names(node.target), [*node.body, *node.orelse]
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
        parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        parts += [cond for g in node.generators for cond in g.ifs] + [g.iter for g in node.generators[1:]]
        return set().union(*(_names(g.target) for g in node.generators)), parts
    if isinstance(node, ast.While):
        return set(), [node.test, *node.body]
    return None


def problems(source: str, filename: str = "<test>") -> list[str]:
    """What the module `source` does that compares a cached render with itself, one line each."""
    out = []
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) or not func.name.startswith("test"):
            continue
        calls: dict[str, list[ast.Call]] = {}
        for node in ast.walk(func):
            if _is_render(node):
                calls.setdefault(_input(node), []).append(node)
            loop = _loop(node)
            if loop is None:
                continue
            targets, repeated = loop
            # names (re)bound on every turn vary with it too
            targets = targets | {n.id for part in repeated for n in ast.walk(part)
                                 if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            for inner in (n for part in repeated for n in ast.walk(part)):
                if _is_render(inner) and not _fresh(inner) and not (_names(inner) & targets):
                    out.append(f"{filename}:{inner.lineno}: {func.name} renders {_input(inner)} again in a loop "
                               "without fresh=True")
        for text, same in calls.items():
            if len(same) > 1 and not all(_fresh(c) for c in same):
                out.append(f"{filename}:{same[1].lineno}: {func.name} renders {text} {len(same)} times, not all "
                           "with fresh=True: the cached render is compared with itself")
        params = {a.arg for a in func.args.args}
        for text, same in calls.items():
            if "default_render" in params and text in ("render_chart()", "render_chart({})") \
                    and not all(_fresh(c) for c in same):
                out.append(f"{filename}:{same[0].lineno}: {func.name} renders the default values beside "
                           "default_render without fresh=True: both are the one cached render")
    return sorted(set(out))


def tree_problems(tests: Path) -> list[str]:
    return [problem for path in sorted(tests.rglob("test_*.py"))
            for problem in problems(path.read_text(), str(path.relative_to(tests.parent)))]
