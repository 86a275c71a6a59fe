"""Run every panel, annotation and variable query of a dashboard the way Grafana would.

Variables are resolved in order (each variable's own SQL sees the ones before it), panel SQL
is expanded with `dashboards.macros`, executed through a caller-supplied runner (the
dashboards package never talks to a database itself) and the result is checked against what
the panel type needs to draw anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboards.common import Json, query_name
from dashboards.macros import ALL, TimeRange, Variable, expand


@dataclass(frozen=True)
class Column:
    """A result column: its name and PostgreSQL type name (`timestamptz`, `float8`, ...)."""

    name: str
    type_name: str


@dataclass(frozen=True)
class Result:
    """Columns and rows of one executed query."""

    columns: Sequence[Column]
    rows: Sequence[Sequence[Any]]


SqlRunner = Callable[[str], Result]
"""Executes one SQL statement read-only and returns its result; raises on SQL errors."""

TIME_TYPES = frozenset({"timestamptz", "timestamp", "date"})
NUMERIC_TYPES = frozenset({"int2", "int4", "int8", "float4", "float8", "numeric", "bool"})
TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "name", "uuid", "citext"})


@dataclass
class QueryCheck:
    """The outcome of one query on one dashboard."""

    dashboard: str
    where: str  # "panel <title>", "annotation <name>", "variable <name>"
    query: str  # query name from the SQL header
    sql: str  # as sent to the database
    columns: list[Column] = field(default_factory=list)
    row_count: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        state = "ok  " if self.ok else "FAIL"
        cols = ", ".join(c.name for c in self.columns)
        text = f"{state} {self.dashboard} / {self.where} / {self.query}: {self.row_count} rows"
        text += f" ({cols})"
        return text + "".join(f"\n     ! {p}" for p in self.problems)


def _shape_problems(kind: str, fmt: str, columns: Sequence[Column], panel: Json) -> list[str]:
    """What is missing for a panel of type `kind` to draw this result."""
    names = [c.name for c in columns]
    numeric = [c for c in columns if c.type_name in NUMERIC_TYPES]
    timecols = [c for c in columns if c.type_name in TIME_TYPES]
    problems: list[str] = []
    if not columns:
        return ["no columns"]
    if kind in ("timeseries", "state-timeline"):
        # Grafana turns a numeric `time` column (epoch seconds) into timestamps as well.
        if not any(c.name == "time" and c.type_name in TIME_TYPES | NUMERIC_TYPES
                   for c in columns):
            problems.append(f"{kind} needs a time column named time")
        if kind == "timeseries" and not numeric:
            problems.append("timeseries needs a numeric column")
        if kind == "state-timeline" and len(columns) < 2:
            problems.append("state-timeline needs a value column besides time")
    elif kind in ("stat", "gauge", "bargauge", "piechart", "histogram") and not numeric:
        problems.append(f"{kind} needs a numeric column")
    elif kind == "barchart":
        if not numeric:
            problems.append("barchart needs a numeric column")
        x_field = panel.get("options", {}).get("xField")
        if x_field and x_field not in names:
            problems.append(f"barchart xField {x_field!r} is not a column")
        if not x_field and not any(c.type_name in TEXT_TYPES for c in columns) and not timecols:
            problems.append("barchart needs a text or time column for the x axis")
    if fmt == "table":
        for ov in panel.get("fieldConfig", {}).get("overrides", []):
            matcher = ov.get("matcher", {})
            if matcher.get("id") == "byName" and matcher.get("options") not in names:
                problems.append(f"override for {matcher.get('options')!r} matches no column")
    return problems


def _values(result: Result) -> list[str]:
    """Variable options as Grafana reads them: `__value` if present, else the first column."""
    names = [c.name for c in result.columns]
    index = names.index("__value") if "__value" in names else 0
    return [str(row[index]) for row in result.rows]


def resolve_variables(
    model: Json,
    run: SqlRunner,
    rng: TimeRange,
    selections: Mapping[str, str | Sequence[str]] | None = None,
    checks: list[QueryCheck] | None = None,
) -> dict[str, Variable]:
    """Each variable's current value as Grafana picks it on load: All/every value or the first.

    `selections` pins values (like a URL `var-name=value`).
    """
    selections = selections or {}
    resolved: dict[str, Variable] = {}
    for var in model.get("templating", {}).get("list", []):
        name = var["name"]
        multi, include_all = bool(var.get("multi")), bool(var.get("includeAll"))
        options: list[str] = []
        if var.get("type") == "query":
            sql = expand(var["query"], rng, resolved)
            check = QueryCheck(model["uid"], f"variable {name}", query_name(var["query"]), sql)
            try:
                result = run(sql)
            except Exception as exc:  # report, keep checking the rest
                check.problems.append(f"{type(exc).__name__}: {exc}")
                result = Result([], [])
            check.columns, check.row_count = list(result.columns), len(result.rows)
            if checks is not None:
                checks.append(check)
            # No rows: Grafana offers a single "None" option whose value is the empty string.
            options = _values(result) or [""]
        elif var.get("type") == "custom":
            options = [o.strip() for o in str(var.get("query", "")).split(",") if o.strip()]
        value: str | Sequence[str]
        if name in selections:
            value = selections[name]
        elif include_all:
            value = ALL
        elif multi:
            value = options
        else:
            value = options[0] if options else ""
        resolved[name] = Variable(
            name, value, multi=multi, include_all=include_all,
            all_value=var.get("allValue") or None, options=tuple(options),
        )
    return resolved


def _repeat_values(variable: Variable) -> list[str]:
    value = variable.value
    if value == ALL or (not isinstance(value, str) and ALL in value):
        return list(variable.options)
    return [value] if isinstance(value, str) else list(value)


def _run_one(
    model: Json, where: str, raw_sql: str, rng: TimeRange, variables: Mapping[str, Variable],
    run: SqlRunner, timescaledb: bool,
) -> tuple[QueryCheck, Result]:
    sql = expand(raw_sql, rng, variables, timescaledb=timescaledb)
    check = QueryCheck(model["uid"], where, query_name(raw_sql), sql)
    try:
        result = run(sql)
    except Exception as exc:  # report, keep checking the rest
        check.problems.append(f"{type(exc).__name__}: {exc}")
        return check, Result([], [])
    check.columns, check.row_count = list(result.columns), len(result.rows)
    return check, result


def check_dashboard(
    model: Json,
    run: SqlRunner,
    rng: TimeRange,
    selections: Mapping[str, str | Sequence[str]] | None = None,
    *,
    timescaledb: bool = True,
) -> list[QueryCheck]:
    """Run every query of `model` for `rng`; one QueryCheck per query (and per repeat)."""
    checks: list[QueryCheck] = []
    variables = resolve_variables(model, run, rng, selections, checks)
    for anno in model.get("annotations", {}).get("list", []):
        if "target" not in anno:
            continue
        check, _ = _run_one(model, f"annotation {anno['name']}", anno["target"]["rawSql"], rng,
                            variables, run, timescaledb)
        names = {c.name for c in check.columns}
        if check.ok and not {"time", "text"} <= names:
            check.problems.append("annotations need time and text columns")
        checks.append(check)
    panels: list[Json] = []
    for panel in model.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    for panel in panels:
        if panel["type"] == "row":
            continue
        scopes: list[tuple[str, Mapping[str, Variable]]] = [("", variables)]
        repeat = panel.get("repeat")
        if repeat and repeat in variables:
            base = variables[repeat]
            scopes = [
                (f" [{repeat}={v}]", {**variables, repeat: Variable(repeat, v, multi=True)})
                for v in _repeat_values(base)
            ]
        for suffix, scoped in scopes:
            for tgt in panel.get("targets", []):
                check, result = _run_one(model, f"panel {panel['title']}{suffix}",
                                         tgt["rawSql"], rng, scoped, run, timescaledb)
                if check.ok:
                    check.problems.extend(
                        _shape_problems(panel["type"], tgt.get("format", "table"),
                                        result.columns, panel)
                    )
                checks.append(check)
    return checks
