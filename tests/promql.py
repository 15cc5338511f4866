"""The metric names a PromQL expression reads, for tests that check dashboards and rules.

Not a parser: whether an expression is valid, and what it returns, is asked of a real
Prometheus (tests/test_prometheus_live.py).
"""

from __future__ import annotations

import re

# Words of PromQL that are not metric names.
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset", "inf", "nan"}
)  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric and recorded-series names ``expr`` selects (functions and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][\w:]*", text):
        word = match.group(0)
        if word in KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # a keyword or a function
        names.add(word)
    return names
