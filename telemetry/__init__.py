"""Telemetry: the TimescaleDB schema, the durable writer (binary COPY + spool), retention,
queries and exports. The only package that imports psycopg (docs/telemetry.md).

Public surface (import the module you need; this package imports nothing eagerly, so that
``telemetry.schema`` stays cheap and psycopg-free for the dashboards):

- ``telemetry.schema``: table/column names, role and metric names.
- ``telemetry.records``: row layouts the writer takes (``PoseBatch``, ``ScoreWindowBatch``, ...).
- ``telemetry.writer``: ``TelemetryWriter``, ``WriterConfig`` — the controller's durable sink.
- ``telemetry.migrate``, ``telemetry.roles``, ``telemetry.policies``: database administration.
- ``telemetry.reference``, ``telemetry.queries``, ``telemetry.export``: reference data, reads, exports.
- ``telemetry.spool``, ``telemetry.cluster``: the project's spool and managed cluster.
"""
