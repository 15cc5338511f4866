"""The provisioned Grafana dashboards and data sources (observability/grafana/).

Checked from the files alone: every panel is complete and points at the provisioned Prometheus;
every expression is valid PromQL (parsed and type-checked here, as Prometheus would) and uses
only the metrics and labels of the metrics contract, prometheus-client's process metrics and the
RabbitMQ plugin's metrics listed below; histogram panels ask for exemplars; exemplars link to
Jaeger. Running the expressions against a real Prometheus is another test's job.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# PyYAML ships no type stubs and types-PyYAML is no dev dependency: loaded untyped on purpose.
yaml = importlib.import_module("yaml")

GRAFANA = Path(__file__).resolve().parents[1] / "observability" / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
TARGET_LABELS = frozenset({"job", "instance"})

# The metrics contract: name -> (type, labels besides job and instance).
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    "http_server_request_duration_seconds": (
        "histogram",
        frozenset({"route", "method", "status"}),
    ),
    "http_server_requests_in_flight": ("gauge", frozenset()),
    "rpc_client_duration_seconds": ("histogram", frozenset({"method", "outcome"})),
    "rpc_overhead_seconds": ("histogram", frozenset({"method"})),
    "rpc_client_calls_in_flight": ("gauge", frozenset({"method"})),
    "rpc_client_errors_total": ("counter", frozenset({"method", "error_type"})),
    "rpc_queue_wait_seconds": ("histogram", frozenset({"method"})),
    "rpc_handler_duration_seconds": ("histogram", frozenset({"method", "outcome"})),
    "rpc_handler_in_flight": ("gauge", frozenset({"method"})),
    "rpc_dead_lettered_total": ("counter", frozenset({"queue", "reason"})),
}

# prometheus-client's default process collector (no labels of its own).
PROCESS_METRICS = frozenset(
    {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    }
)

# The RabbitMQ plugin's metrics the dashboards may use, with their labels, as RabbitMQ 3.10.8
# serves them: per queue from /metrics/detailed?family=queue_coarse_metrics&family=
# queue_consumer_count, the rest from /metrics. If a broker names them otherwise, rename them
# here and in the dashboards' JSON (observability/grafana/README.md, "Changing things").
_PER_QUEUE = frozenset({"vhost", "queue"})
_DEAD_LETTERED = frozenset({"queue_type", "dead_letter_strategy"})
RABBITMQ_METRICS: dict[str, frozenset[str]] = {
    "rabbitmq_detailed_queue_messages_ready": _PER_QUEUE,
    "rabbitmq_detailed_queue_messages_unacked": _PER_QUEUE,
    "rabbitmq_detailed_queue_consumers": _PER_QUEUE,
    "rabbitmq_global_messages_received_total": frozenset({"protocol"}),
    "rabbitmq_global_messages_delivered_total": frozenset({"protocol", "queue_type"}),
    "rabbitmq_global_messages_acknowledged_total": frozenset({"protocol", "queue_type"}),
    "rabbitmq_global_messages_dead_lettered_rejected_total": _DEAD_LETTERED,
    "rabbitmq_global_messages_dead_lettered_expired_total": _DEAD_LETTERED,
    "rabbitmq_queues": frozenset(),
    "rabbitmq_connections": frozenset(),
}


def known_series() -> dict[str, frozenset[str]]:
    """Every series name an expression may select, with its labels."""
    series: dict[str, frozenset[str]] = {}
    for name, (kind, own_labels) in CONTRACT.items():
        labels = own_labels | TARGET_LABELS
        if kind == "histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = labels
            series[f"{name}_count"] = labels
        else:
            series[name] = labels
    for name in PROCESS_METRICS:
        series[name] = TARGET_LABELS
    for name, rabbit_labels in RABBITMQ_METRICS.items():
        series[name] = rabbit_labels | TARGET_LABELS
    return series


SERIES = known_series()


# --- A PromQL parser and type checker (the subset of the language Prometheus 2.x accepts) ---


class PromQLError(ValueError):
    pass


TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)(?!\w)
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w:])
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
    | (?P<ident>[a-zA-Z_][\w:]*)
    | (?P<op>==|!=|<=|>=|=~|!~|[-+*/%^<>=(){}\[\],:@])
    """,
    re.VERBOSE,
)

AGGREGATIONS = frozenset(
    {
        "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar",
        "topk", "bottomk", "quantile", "count_values", "limitk", "limit_ratio",
    }
)  # fmt: skip
AGGREGATION_PARAM = {
    "topk": "scalar",
    "bottomk": "scalar",
    "quantile": "scalar",
    "limitk": "scalar",
    "limit_ratio": "scalar",
    "count_values": "string",
}

# name -> (required argument types, optional ones, result); a trailing "*" repeats the last.
_V, _M, _S, _STR = "vector", "matrix", "scalar", "string"
_MATH = (
    "abs ceil floor exp ln log2 log10 sqrt sgn acos acosh asin asinh atan atanh cos cosh sin sinh"
    " tan tanh deg rad timestamp sort sort_desc absent"
)
_OVER_TIME = "avg min max sum count stddev stdvar last present mad"
_RANGE = "rate irate increase delta idelta deriv changes resets absent_over_time"
_DATES = "day_of_month day_of_week day_of_year days_in_month hour minute month year"
FUNCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    **dict.fromkeys(_MATH.split(), ((_V,), (), _V)),
    **{f"{name}_over_time": ((_M,), (), _V) for name in _OVER_TIME.split()},
    **dict.fromkeys(_DATES.split(), ((), (_V,), _V)),
    **dict.fromkeys(_RANGE.split(), ((_M,), (), _V)),
    "quantile_over_time": ((_S, _M), (), _V),
    "predict_linear": ((_M, _S), (), _V),
    "holt_winters": ((_M, _S, _S), (), _V),
    "histogram_quantile": ((_S, _V), (), _V),
    "histogram_fraction": ((_S, _S, _V), (), _V),
    "histogram_count": ((_V,), (), _V),
    "histogram_sum": ((_V,), (), _V),
    "clamp": ((_V, _S, _S), (), _V),
    "clamp_min": ((_V, _S), (), _V),
    "clamp_max": ((_V, _S), (), _V),
    "round": ((_V,), (_S,), _V),
    "label_replace": ((_V, _STR, _STR, _STR, _STR), (), _V),
    "label_join": ((_V, _STR, _STR), (_STR, "*"), _V),
    "scalar": ((_V,), (), _S),
    "vector": ((_S,), (), _V),
    "time": ((), (), _S),
    "pi": ((), (), _S),
}

# Binary operators by precedence, lowest first; "^" is right-associative.
PRECEDENCE = {
    "or": 1,
    "and": 2,
    "unless": 2,
    "==": 3,
    "!=": 3,
    "<=": 3,
    "<": 3,
    ">=": 3,
    ">": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "atan2": 5,
    "^": 6,
}
COMPARISONS = frozenset({"==", "!=", "<=", "<", ">=", ">"})
SET_OPERATORS = frozenset({"and", "or", "unless"})


@dataclass(frozen=True)
class Value:
    """An expression's type, and the labels its series carry (None: unknown)."""

    type: str
    labels: frozenset[str] | None = frozenset()


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...]


@dataclass
class Parsed:
    value: Value
    selectors: list[Selector] = field(default_factory=list)
    # (grouping label, metrics inside the aggregation) for every `by (...)`
    groupings: list[tuple[str, frozenset[str]]] = field(default_factory=list)


def _unquote(text: str) -> str:
    if text[0] == "`":
        return text[1:-1]
    escapes = {"n": "\n", "t": "\t", "r": "\r"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m[1], m[1]), text[1:-1])


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            match = TOKEN.match(text, pos)
            if match is None:
                raise PromQLError(f"unexpected character {text[pos]!r} at {pos}")
            pos = match.end()
            kind = match.lastgroup
            assert kind is not None
            if kind != "space":
                self.tokens.append((kind, match.group()))
        self.tokens.append(("eof", ""))
        self.pos = 0
        self.selectors: list[Selector] = []
        self.groupings: list[tuple[str, frozenset[str]]] = []
        # True right after a vector selector, the only thing a range [5m] may follow
        self.after_selector = False

    def parse(self) -> Parsed:
        value = self.expr(0)
        if self.peek()[0] != "eof":
            raise PromQLError(f"unexpected {self.peek()[1]!r} after the expression")
        return Parsed(value, self.selectors, self.groupings)

    # --- tokens ---
    def peek(self, ahead: int = 0) -> tuple[str, str]:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.pos += 1
        return token

    def expect(self, text: str) -> None:
        kind, got = self.take()
        if got != text or kind not in {"op", "ident"}:
            raise PromQLError(f"expected {text!r}, got {got or 'the end'!r}")

    def at(self, text: str) -> bool:
        kind, got = self.peek()
        return kind in {"op", "ident"} and got == text

    # --- expressions ---
    def binary_operator(self) -> str | None:
        kind, text = self.peek()
        if kind == "op" and text in PRECEDENCE:
            return text
        if kind == "ident" and text.lower() in {"and", "or", "unless", "atan2"}:
            return text.lower()
        return None

    def expr(self, min_precedence: int) -> Value:
        lhs = self.unary()
        while (op := self.binary_operator()) is not None and PRECEDENCE[op] >= min_precedence:
            self.take()
            returns_bool = False
            if self.at("bool"):
                self.take()
                if op not in COMPARISONS:
                    raise PromQLError(f"bool modifier on {op!r}, not a comparison")
                returns_bool = True
            matching = None
            if self.peek()[1] in {"on", "ignoring"}:
                matching = self.take()[1]
                self.label_list()
                if self.peek()[1] in {"group_left", "group_right"}:
                    matching = self.take()[1]
                    if self.at("("):
                        self.label_list()
            right_assoc = op == "^"
            rhs = self.expr(PRECEDENCE[op] if right_assoc else PRECEDENCE[op] + 1)
            lhs = self.combine(op, lhs, rhs, returns_bool=returns_bool, matching=matching)
        return lhs

    @staticmethod
    def combine(
        op: str, lhs: Value, rhs: Value, *, returns_bool: bool, matching: str | None
    ) -> Value:
        for side in (lhs, rhs):
            if side.type not in {_S, _V}:
                raise PromQLError(f"{op!r} needs scalars or instant vectors, got a {side.type}")
        if op in SET_OPERATORS and _S in {lhs.type, rhs.type}:
            raise PromQLError(f"set operator {op!r} needs instant vectors on both sides")
        if matching is not None and _S in {lhs.type, rhs.type}:
            raise PromQLError(f"vector matching ({matching}) needs vectors on both sides")
        if op in COMPARISONS and lhs.type == rhs.type == _S and not returns_bool:
            raise PromQLError("comparisons between scalars must use the bool modifier")
        if lhs.type == rhs.type == _S:
            return Value(_S)
        if _S in {lhs.type, rhs.type}:
            vector = lhs if lhs.type == _V else rhs
            return Value(_V, vector.labels)
        if op == "or":
            if lhs.labels is None or rhs.labels is None:
                return Value(_V, lhs.labels or rhs.labels)
            return Value(_V, lhs.labels & rhs.labels)
        if matching == "group_right":
            return Value(_V, rhs.labels)
        return Value(_V, lhs.labels)

    def unary(self) -> Value:
        if self.peek() in {("op", "-"), ("op", "+")}:
            self.take()
            # Unary minus binds more loosely than "^": -2^2 is -4.
            operand = self.expr(PRECEDENCE["^"])
            if operand.type not in {_S, _V}:
                raise PromQLError(f"unary minus on a {operand.type}")
            return operand
        return self.postfix(self.primary())

    def postfix(self, value: Value) -> Value:
        while True:
            if self.at("["):
                value = self.range_or_subquery(value)
            elif self.at("offset"):
                self.take()
                if self.at("-"):
                    self.take()
                self.duration()
            elif self.at("@"):
                self.at_modifier()
            else:
                self.after_selector = False
                return value
            self.after_selector = False

    def range_or_subquery(self, value: Value) -> Value:
        self.expect("[")
        self.duration()
        if self.at(":"):
            self.take()
            if self.peek()[0] == "duration":
                self.take()
            if value.type != _V:
                raise PromQLError(f"subquery of a {value.type}, not an instant vector")
        elif not self.after_selector:
            raise PromQLError("a range [..] applies to a vector selector only")
        self.expect("]")
        return Value(_M, value.labels)

    def at_modifier(self) -> None:
        self.expect("@")
        kind, text = self.take()
        if kind == "ident" and text in {"start", "end"}:
            self.expect("(")
            self.expect(")")
        elif kind != "number":
            raise PromQLError(f"@ needs a timestamp, got {text!r}")

    def duration(self) -> None:
        kind, text = self.take()
        if kind != "duration":
            raise PromQLError(f"expected a duration such as 5m, got {text or 'the end'!r}")

    def primary(self) -> Value:
        self.after_selector = False
        kind, text = self.peek()
        if kind in {"number", "string"}:
            self.take()
            return Value(_S if kind == "number" else _STR)
        if kind == "op" and text == "(":
            self.take()
            value = self.expr(0)
            self.expect(")")
            self.after_selector = False
            return value
        if kind == "op" and text == "{":
            return self.selector(None)
        if kind == "ident":
            return self.identifier(text)
        raise PromQLError(f"expected an expression, got {text or 'the end'!r}")

    def identifier(self, text: str) -> Value:
        """A number (Inf, NaN), an aggregation, a function call or a metric name."""
        following = self.peek(1)[1]
        if text.lower() in {"inf", "nan"}:
            self.take()
            return Value(_S)
        if text in AGGREGATIONS and following in {"(", "by", "without"}:
            return self.aggregation()
        if following == "(":
            return self.call()
        if text in {"by", "without", "on", "ignoring", "bool", "offset"}:
            raise PromQLError(f"keyword {text!r} where an expression was expected")
        self.take()
        return self.selector(text)

    def selector(self, metric: str | None) -> Value:
        matchers: list[tuple[str, str, str]] = []
        if self.at("{"):
            self.take()
            while not self.at("}"):
                kind, label = self.take()
                if kind != "ident" or ":" in label:
                    raise PromQLError(f"expected a label name, got {label or 'the end'!r}")
                kind, op = self.take()
                if op not in {"=", "!=", "=~", "!~"}:
                    raise PromQLError(f"expected a label matcher operator, got {op!r}")
                kind, quoted = self.take()
                if kind != "string":
                    raise PromQLError(f"label {label!r} needs a quoted value, got {quoted!r}")
                value = _unquote(quoted)
                if op in {"=~", "!~"}:
                    try:
                        re.compile(value)
                    except re.error as error:
                        raise PromQLError(f"bad regular expression {value!r}: {error}") from None
                matchers.append((label, op, value))
                if not self.at("}"):
                    self.expect(",")
            self.expect("}")
        names = [v for label, op, v in matchers if label == "__name__" and op == "="]
        name = metric or (names[0] if names else None)
        if name is None and not matchers:
            raise PromQLError("a vector selector needs a metric name or a label matcher")
        self.selectors.append(Selector(name or "", tuple(matchers)))
        self.after_selector = True
        labels = SERIES.get(name) if name else None
        return Value(_V, labels)

    def label_list(self) -> list[str]:
        self.expect("(")
        labels: list[str] = []
        while not self.at(")"):
            kind, label = self.take()
            if kind != "ident" or ":" in label:
                raise PromQLError(f"expected a label name, got {label or 'the end'!r}")
            labels.append(label)
            if not self.at(")"):
                self.expect(",")
        self.expect(")")
        return labels

    def aggregation(self) -> Value:
        name = self.take()[1]
        grouping: tuple[str, list[str]] | None = None
        if self.peek()[1] in {"by", "without"}:
            grouping = (self.take()[1], self.label_list())
        self.expect("(")
        first_selector = len(self.selectors)
        if name in AGGREGATION_PARAM:
            param = self.expr(0)
            if param.type != AGGREGATION_PARAM[name]:
                raise PromQLError(f"{name} needs a {AGGREGATION_PARAM[name]} parameter")
            self.expect(",")
        argument = self.expr(0)
        if argument.type != _V:
            raise PromQLError(f"{name} aggregates an instant vector, got a {argument.type}")
        self.expect(")")
        if self.peek()[1] in {"by", "without"}:
            if grouping is not None:
                raise PromQLError(f"{name} has two grouping clauses")
            grouping = (self.take()[1], self.label_list())
        inner = frozenset(s.metric for s in self.selectors[first_selector:])
        if grouping is None:
            return Value(_V, frozenset())
        clause, labels = grouping
        if clause == "by":
            self.groupings.extend((label, inner) for label in labels)
            return Value(_V, frozenset(labels))
        if argument.labels is None:
            return Value(_V, None)
        return Value(_V, argument.labels - set(labels))

    def call(self) -> Value:
        name = self.take()[1]
        if name not in FUNCTIONS:
            raise PromQLError(f"unknown function {name!r}")
        required, optional, returns = FUNCTIONS[name]
        self.expect("(")
        arguments: list[Value] = []
        while not self.at(")"):
            arguments.append(self.expr(0))
            if not self.at(")"):
                self.expect(",")
        self.expect(")")
        repeat = optional[-2] if optional and optional[-1] == "*" else None
        allowed = list(required) + [t for t in optional if t != "*"]
        if len(arguments) < len(required) or (repeat is None and len(arguments) > len(allowed)):
            raise PromQLError(f"{name} takes {len(required)} argument(s), got {len(arguments)}")
        for index, argument in enumerate(arguments):
            wanted = allowed[index] if index < len(allowed) else repeat
            if argument.type != wanted:
                raise PromQLError(
                    f"argument {index + 1} of {name} must be a {wanted}, got a {argument.type}"
                )
        if returns != _V:
            return Value(returns)
        first = next((a for a in arguments if a.type in {_V, _M}), None)
        if first is None:
            return Value(_V, frozenset())
        if name == "histogram_quantile" and first.labels is not None:
            return Value(_V, first.labels - {"le"})
        return Value(_V, first.labels)


def parse_promql(text: str) -> Parsed:
    """Parse and type-check one PromQL expression; raise PromQLError if Prometheus would."""
    parsed = Parser(text).parse()
    if parsed.value.type not in {_S, _V}:
        raise PromQLError(
            f"a query must give an instant vector or a scalar, not a {parsed.value.type}"
        )
    return parsed


def contract_problems(parsed: Parsed) -> list[str]:
    """Metrics and labels an expression uses that the contract (or the allow-lists) lacks."""
    problems: list[str] = []
    for selector in parsed.selectors:
        if selector.metric not in SERIES:
            problems.append(f"unknown metric {selector.metric or '(no name)'!r}")
            continue
        for label, _, _ in selector.matchers:
            if label not in SERIES[selector.metric] | {"__name__"}:
                problems.append(f"{selector.metric} has no label {label!r}")
    for label, metrics in parsed.groupings:
        if not any(label in SERIES.get(metric, ()) for metric in metrics):
            problems.append(f"by ({label}): no metric inside has that label")
    return problems


# --- Loading the dashboards ---

VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def expand_variables(expr: str) -> str:
    """What Prometheus receives when every template variable is set to All (.*)."""
    return VARIABLE.sub(".*", expr)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


DASHBOARD_FILES = sorted(DASHBOARD_DIR.glob("*.json"))
DASHBOARDS = {path.name: load(path) for path in DASHBOARD_FILES}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        result.append(panel)
        result.extend(panel.get("panels", []))  # a collapsed row's panels
    return result


def all_targets() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (name, panel, target)
        for name, dashboard in DASHBOARDS.items()
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def target_id(item: tuple[str, dict[str, Any], dict[str, Any]]) -> str:
    name, panel, target = item
    return f"{name}:{panel.get('id')}{target.get('refId', '')}"


TARGETS = all_targets()


# --- The parser itself: it must reject what Prometheus rejects ---


@pytest.mark.parametrize(
    "expr",
    [
        'histogram_quantile(0.99, sum by (method, le) (rate(rpc_queue_wait_seconds_bucket{method=~".*"}[1m])))',  # noqa: E501
        "sum by (route) (rate(http_server_request_duration_seconds_count[5m])) > bool 0",
        "(sum(rate(rpc_client_errors_total[5m])) or vector(0)) / 2",
        "a / on (method) group_left (job) b",
        "-2 ^ 2 * sum without (instance) (x offset 5m)",
        "max_over_time(rate(x[1m])[10m:1m])",
        "topk(3, sum by (queue) (y))",
        'label_join(x, "dst", ",", "a", "b", "c")',
        "sum(x) by (job)",
        '{__name__="process_open_fds", job!=""}',
    ],
)
def test_parser_accepts_valid_promql(expr: str) -> None:
    parse_promql(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "rate(rpc_client_errors_total)",  # rate needs a range vector
        "rate(rpc_client_errors_total[5])",  # a duration needs a unit
        "sum(rate(rpc_client_errors_total[5m])",  # unbalanced
        'x{method="a"',
        "x{method=a}",
        'x{method=~"("}',  # bad regular expression
        "histogram_quantile(0.99, x_bucket[1m])",
        "histogram_quantile(x, y)",
        "nosuch(x)",
        "1 > 2",
        "x and 1",
        "x[1m]",  # a range vector is no graphable result
        "sum(x[1m])",
        "sum by method (x)",
        "(x)[1m]",
        "x + on (a) 1",
        "topk(x)",
        "x y",
        "",
    ],
)
def test_parser_rejects_invalid_promql(expr: str) -> None:
    with pytest.raises(PromQLError):
        parse_promql(expr)


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(rpc_queue_wait_bucket[1m])", "unknown metric 'rpc_queue_wait_bucket'"),
        ("rpc_queue_wait_seconds", "unknown metric 'rpc_queue_wait_seconds'"),
        ("rabbitmq_queue_messages_ready", "unknown metric 'rabbitmq_queue_messages_ready'"),
        ('rpc_client_errors_total{outcome="ok"}', "has no label 'outcome'"),
        ("sum by (route) (rpc_handler_in_flight)", "by (route): no metric inside"),
    ],
)
def test_contract_check_catches_strangers(expr: str, problem: str) -> None:
    problems = contract_problems(parse_promql(expr))
    assert any(problem in p for p in problems), problems


def test_labels_of_results_are_tracked() -> None:
    parsed = parse_promql(
        "histogram_quantile(0.5, sum by (route, le) (rate(http_server_request_duration_seconds_bucket[1m])))"  # noqa: E501
    )
    assert parsed.value.labels == frozenset({"route"})
    parsed = parse_promql("sum(a) or vector(0)")
    assert parsed.value.labels == frozenset()


# --- The dashboards ---


def test_the_three_dashboards_are_there() -> None:
    assert set(DASHBOARDS) == {"latency-breakdown.json", "rabbitmq.json", "service-health.json"}


def test_dashboards_are_provisioned_not_imported() -> None:
    uids, titles = set(), set()
    for name, dashboard in DASHBOARDS.items():
        text = (DASHBOARD_DIR / name).read_text()
        assert "${DS_" not in text, f"{name}: import placeholder; reference uid prometheus"
        assert "__inputs" not in dashboard, name
        assert dashboard.get("id") is None, f"{name}: a provisioned dashboard has no id"
        assert dashboard.get("uid"), f"{name}: a fixed uid keeps links stable"
        assert len(dashboard["uid"]) <= 40, name
        assert dashboard["schemaVersion"] >= 39, name
        assert dashboard.get("title"), name
        uids.add(dashboard["uid"])
        titles.add(dashboard["title"])
    assert len(uids) == len(DASHBOARDS), "dashboard uids must be unique"
    assert len(titles) == len(DASHBOARDS), "dashboard titles must be unique"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_is_complete(name: str) -> None:
    dashboard = DASHBOARDS[name]
    ids: set[int] = set()
    for panel in panels(dashboard):
        where = f"{name}: panel {panel.get('id')} {panel.get('title')!r}"
        assert isinstance(panel.get("id"), int), where
        assert panel["id"] not in ids, f"{where}: duplicate id"
        ids.add(panel["id"])
        assert panel["type"] in {"timeseries", "stat"}, where
        assert panel.get("title", "").strip(), f"{where}: no title"
        description = panel.get("description", "")
        assert len(description) >= 40, f"{where}: the description says what it answers"
        assert "?" in description, f"{where}: the description asks its question"
        assert panel.get("datasource") == PROMETHEUS, where
        targets = panel.get("targets", [])
        assert any(t.get("expr", "").strip() for t in targets), f"{where}: no query"
        ref_ids = [t.get("refId") for t in targets]
        assert all(ref_ids), where
        assert len(set(ref_ids)) == len(ref_ids), f"{where}: duplicate refId"
        for target in targets:
            assert target.get("datasource") == PROMETHEUS, where
            assert target.get("expr", "").strip(), f"{where}: empty query {target['refId']}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_do_not_overlap(name: str) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(DASHBOARDS[name]):
        pos = panel["gridPos"]
        assert pos["w"] > 0, panel["title"]
        assert pos["h"] > 0, panel["title"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("item", TARGETS, ids=target_id)
def test_expression_is_promql_over_known_metrics(
    item: tuple[str, dict[str, Any], dict[str, Any]],
) -> None:
    name, panel, target = item
    expr = expand_variables(target["expr"])
    try:
        parsed = parse_promql(expr)
    except PromQLError as error:
        pytest.fail(f"{name} {panel['title']!r} {target['refId']}: {error}\n{expr}")
    assert parsed.selectors, expr
    assert contract_problems(parsed) == [], expr
    legend = target.get("legendFormat", "")
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    if parsed.value.labels is not None:
        missing = used - parsed.value.labels
        assert not missing, f"legend {legend!r} uses {missing}, which the result lacks"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_template_variables_expand_to_valid_matchers(name: str) -> None:
    dashboard = DASHBOARDS[name]
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    for variable in variables.values():
        assert variable["type"] == "query", variable["name"]
        assert variable.get("datasource") == PROMETHEUS, variable["name"]
        assert variable.get("includeAll") is True, variable["name"]
        assert variable.get("allValue") == ".*", variable["name"]
        query = variable["query"] if isinstance(variable["query"], str) else ""
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, f"{variable['name']}: label_values(metric, label) expected, got {query!r}"
        metric, label = match.groups()
        labels = SERIES.get(metric)
        assert labels is not None, f"{variable['name']}: unknown metric {metric!r}"
        assert label in labels, f"{variable['name']}: {metric} has no label {label!r}"
    for panel in panels(dashboard):
        texts = [t["expr"] for t in panel["targets"]]
        for text in texts:
            for match in VARIABLE.finditer(text):
                used = next(g for g in match.groups() if g)
                assert used in variables, f"{panel['title']!r} uses undefined ${used}"
                before = text[: match.start()]
                assert before.endswith('=~"'), (
                    f"{panel['title']!r}: ${used} must stand alone in a regex matcher "
                    f'(label=~"${used}") so that All (.*) keeps the expression valid'
                )
        if "repeat" in panel:
            assert panel["repeat"] in variables, panel["title"]


def test_histogram_panels_ask_for_exemplars() -> None:
    histogram_targets = 0
    for name, panel, target in TARGETS:
        if panel["type"] != "timeseries":
            continue  # a stat panel draws no exemplars
        if re.search(r"\w+_bucket\b", target["expr"]):
            histogram_targets += 1
            assert target.get("exemplar") is True, f"{name} {panel['title']!r}"
    assert histogram_targets >= 6


def test_latency_breakdown_answers_where_the_time_goes() -> None:
    dashboard = DASHBOARDS["latency-breakdown.json"]
    all_panels = panels(dashboard)

    def metrics_of(panel: dict[str, Any]) -> set[str]:
        return {
            s.metric
            for target in panel["targets"]
            for s in parse_promql(expand_variables(target["expr"])).selectors
        }

    stacked = [
        p
        for p in all_panels
        if p["type"] == "timeseries"
        and p["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    ]
    parts = {"rpc_queue_wait_seconds", "rpc_overhead_seconds", "rpc_handler_duration_seconds"}
    breakdown = [p for p in stacked if {f"{m}_sum" for m in parts} <= metrics_of(p)]
    assert breakdown, "a stacked panel splits each call into queue wait, transport and handler"
    assert breakdown[0].get("repeat") == "method", "one stacked breakdown per method"
    for target in breakdown[0]["targets"]:
        assert "sum by (method)" in target["expr"], target["expr"]

    p99 = {
        m
        for p in all_panels
        for t in p["targets"]
        if "histogram_quantile(0.99" in t["expr"]
        for m in parts | {"http_server_request_duration_seconds", "rpc_client_duration_seconds"}
        if f"{m}_bucket" in t["expr"]
    }
    assert p99 == parts | {"http_server_request_duration_seconds", "rpc_client_duration_seconds"}

    http = [
        t["expr"]
        for p in all_panels
        for t in p["targets"]
        if "http_server_request_duration_seconds" in t["expr"]
    ]
    assert any("by (route" in e and "status" in e and "_count" in e for e in http), "rate"
    assert any('status=~"5.."' in e and "by (route)" in e for e in http), "error ratio"
    for quantile in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({quantile}, sum by (route, le)" in e for e in http)


def test_rabbitmq_dashboard_covers_the_broker() -> None:
    used = {
        s.metric
        for _, _, target in TARGETS
        for s in parse_promql(expand_variables(target["expr"])).selectors
    }
    assert set(RABBITMQ_METRICS) <= used, set(RABBITMQ_METRICS) - used


# --- Provisioning ---


def test_datasources_link_exemplars_to_jaeger() -> None:
    config = yaml.safe_load(DATASOURCES.read_text())
    assert config["apiVersion"] == 1
    sources = {source["uid"]: source for source in config["datasources"]}
    prometheus, jaeger = sources["prometheus"], sources["jaeger"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "${PROMETHEUS_URL}"
    assert prometheus.get("isDefault") is True
    destinations = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": "jaeger"}.items() <= destinations[0].items()
    assert jaeger["type"] == "jaeger"
    assert jaeger["url"] == "${JAEGER_URL}"
    assert sum(bool(source.get("isDefault")) for source in config["datasources"]) == 1


def test_dashboard_provider_loads_the_folder() -> None:
    config = yaml.safe_load(PROVIDERS.read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider.get("allowUiUpdates") is False, "the JSON files are the one source"
