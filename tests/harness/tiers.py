"""The test tiers: a folder of tests/ each, and the marker its conftest applies; which tiers a `-m` expression can
select."""

from __future__ import annotations

import re

# The tier folders and the marker each one's conftest applies (the render tier has none).
TIERS = {"render": None, "servers": "servers", "app": "app", "e2e": "e2e", "real": "real"}
_OPERATORS = {"and", "or", "not", "(", ")"}


def selects(markexpr: str, marker: str | None) -> bool:
    """Whether `-m markexpr` can select a test that carries only `marker` (None: no marker). Marker expressions
    are identifiers joined by and, or, not and parentheses; anything else (a marker with arguments) answers True,
    so that nothing is left out that the expression might select."""
    tokens = re.findall(r"[()]|[^\s()]+", markexpr)
    if not all(t in _OPERATORS or re.fullmatch(r"[A-Za-z_][\w.-]*", t) for t in tokens):
        return True
    if any(t not in _OPERATORS and after == "(" for t, after in zip(tokens, tokens[1:], strict=False)):
        return True  # a marker called with arguments
    text = " ".join(t if t in _OPERATORS else str(t == marker) for t in tokens)
    try:
        return bool(eval(text, {"__builtins__": {}}, {}))  # only True, False, and, or, not and parentheses
    except SyntaxError:
        return True
