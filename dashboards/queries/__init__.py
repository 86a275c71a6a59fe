"""Named SQL for every panel, annotation and variable, one module per dashboard topic.

SQL is written with the table and column names from `telemetry.schema` (f-strings over
constants, never over user input): a renamed column breaks the import or the SQL tests, not a
panel in front of a class. Every query uses Grafana macros and `$variables` only; see
`dashboards.macros` for how they expand.
"""
