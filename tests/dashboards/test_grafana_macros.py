"""Macro expansion follows the rules and the table in the shared grafana.md exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboards.macros import (
    ALL,
    MacroError,
    TimeRange,
    Variable,
    expand,
    format_interval,
    parse_interval,
    strip_comments,
    substitute_variables,
)

# The range of the table in grafana.md: 08:00:00Z to 14:00:00.123Z, interval 30 s.
RANGE = TimeRange(
    datetime(2026, 11, 1, 8, 0, 0, tzinfo=UTC),
    datetime(2026, 11, 1, 14, 0, 0, 123000, tzinfo=UTC),
    timedelta(seconds=30),
)

# (macro, plain PostgreSQL, with timescaledb: true) -- copied row by row from grafana.md.
TABLE = [
    ("$__time(ts)", 'ts AS "time"', None),
    ("$__timeEpoch(ts)", 'extract(epoch from ts) as "time"', None),
    (
        "$__timeFilter(ts)",
        "ts BETWEEN '2026-11-01T08:00:00Z' AND '2026-11-01T14:00:00.123Z'",
        None,
    ),
    ("$__timeFrom()", "'2026-11-01T08:00:00Z'", None),
    ("$__timeTo()", "'2026-11-01T14:00:00.123Z'", None),
    (
        "$__timeGroup(ts,'5m')",
        "floor(extract(epoch from ts)/300)*300",
        "time_bucket('300.000s',ts)",
    ),
    (
        "$__timeGroupAlias(ts,'1h')",
        'floor(extract(epoch from ts)/3600)*3600 AS "time"',
        "time_bucket('3600.000s',ts) AS \"time\"",
    ),
    ("$__unixEpochFilter(c)", "c >= 1793520000 AND c <= 1793541600", None),
    ("$__unixEpochGroup(c,'5m')", "floor((c)/300)*300", None),
    ("$__interval", "30s", None),
    ("$__interval_ms", "30000", None),
]


@pytest.mark.parametrize(("macro", "plain", "tsdb"), TABLE)
def test_table_from_grafana_notes(macro: str, plain: str, tsdb: str | None) -> None:
    assert expand(macro, RANGE, timescaledb=False) == plain
    assert expand(macro, RANGE, timescaledb=True) == (tsdb or plain)


def test_unix_epoch_group_never_uses_time_bucket() -> None:
    assert "time_bucket" not in expand("$__unixEpochGroupAlias(c,'1m')", RANGE)


def test_arguments_are_trimmed_and_split_on_commas() -> None:
    assert expand("$__timeGroup( ts , '1m' )", RANGE) == "time_bucket('60.000s',ts)"
    assert expand("$__timeGroup(ts, $__interval)", RANGE) == "time_bucket('30.000s',ts)"


def test_interval_ms_is_replaced_before_interval() -> None:
    assert expand("$__interval_ms/$__interval", RANGE) == "30000/30s"


def test_unix_epoch_from_to() -> None:
    assert expand("$__unixEpochFrom() $__unixEpochTo()", RANGE) == "1793520000 1793541600"


def test_pitfall_group_by_alias_is_a_syntax_error_in_the_output() -> None:
    # Grafana does not protect you: the alias lands in GROUP BY (hence our `GROUP BY 1`).
    assert expand("GROUP BY $__timeGroupAlias(ts,'1m')", RANGE).endswith('AS "time"')


def test_pitfall_sub_millisecond_bucket() -> None:
    assert expand("$__timeGroup(ts,'100us')", RANGE) == "time_bucket('0.000s',ts)"


def test_unknown_macro_and_missing_arguments_fail() -> None:
    with pytest.raises(MacroError, match="undefined macro"):
        expand("$__nope(ts)", RANGE)
    with pytest.raises(MacroError):
        expand("$__timeGroup(ts)", RANGE)
    with pytest.raises(MacroError):
        expand("$__timeFilter()", RANGE)


def test_comments_stripped_outside_quotes_only() -> None:
    sql = "SELECT '--not' AS \"a--b\", 1 -- gone $__nope(x)\n/* $__nope(y) */ FROM t"
    assert strip_comments(sql) == "SELECT '--not' AS \"a--b\", 1 \n  FROM t"
    # A macro inside a comment is never expanded (the comment goes first).
    assert "nope" not in expand(sql, RANGE)
    assert strip_comments("SELECT 'it''s -- here'") == "SELECT 'it''s -- here'"


def test_single_value_variable_doubles_quotes_and_is_not_quoted() -> None:
    v = {"trainee": Variable("trainee", "o'brien")}
    assert substitute_variables("t = '$trainee'", v) == "t = 'o''brien'"
    assert substitute_variables("t = '${trainee}'", v) == "t = 'o''brien'"
    assert substitute_variables("t = '[[trainee]]'", v) == "t = 'o''brien'"


def test_multi_value_variable_is_quoted_and_comma_joined() -> None:
    v = {"class": Variable("class", ["c-1", "c'2"], multi=True)}
    assert substitute_variables("IN ($class)", v) == "IN ('c-1','c''2')"
    # One selected value of a multi variable (e.g. a repeated panel) is still quoted.
    one = {"class": Variable("class", "c-1", multi=True)}
    assert substitute_variables("IN ($class)", one) == "IN ('c-1')"


def test_all_value() -> None:
    options = ("a", "b")
    every = {"x": Variable("x", ALL, multi=True, include_all=True, options=options)}
    assert substitute_variables("IN ($x)", every) == "IN ('a','b')"
    custom = {"x": Variable("x", [ALL], include_all=True, all_value="x_col", options=options)}
    assert substitute_variables("IN ($x)", custom) == "IN (x_col)"


def test_variable_names_are_greedy_and_unknown_names_stay() -> None:
    v = {"site": Variable("site", "s1")}
    assert substitute_variables("$site_id $site $__timeFilter(t)", v) == (
        "$site_id s1 $__timeFilter(t)"
    )


def test_variables_before_macros() -> None:
    v = {"col": Variable("col", "ts")}
    assert expand("$__timeFilter($col)", RANGE, v).startswith("ts BETWEEN")


def test_intervals() -> None:
    assert parse_interval("5m") == timedelta(minutes=5)
    assert parse_interval("1h30m") == timedelta(minutes=90)
    assert parse_interval("1.5s") == timedelta(seconds=1.5)
    assert parse_interval("2d") == timedelta(days=2)
    assert parse_interval("1w") == timedelta(weeks=1)
    now = datetime(2026, 3, 15, tzinfo=UTC)
    assert parse_interval("1M", now) == timedelta(days=28)  # February 2026
    with pytest.raises(MacroError):
        parse_interval("5 minutes")
    assert format_interval(timedelta(milliseconds=1500)) == "1s"
    assert format_interval(timedelta(minutes=90)) == "1h"
    assert format_interval(timedelta(microseconds=10)) == "1ms"
    assert format_interval(timedelta(days=800)) == "2y"


def test_time_group_fill_argument_does_not_change_the_sql() -> None:
    # Grafana uses the fill value to fill gaps in the result frame, not in the SQL.
    assert expand("$__timeGroup(ts, '1m', 0)", RANGE) == "time_bucket('60.000s',ts)"
    assert expand("$__timeGroupAlias(ts, '1m', NULL)", RANGE, timescaledb=False) == (
        'floor(extract(epoch from ts)/60)*60 AS "time"'
    )
