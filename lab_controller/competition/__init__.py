"""Competitions (issue 9): events with a frozen exercise + rubric, heats across sites started
together, an auditable automated referee, judges' marks, appeals, signed results and
leaderboards. See docs/competitions.md.

Modules: ``rules`` (judge averaging, totals, the tie-break), ``referee`` (marks from stored
samples, digests, re-computation), ``signing`` (HMAC-SHA256 over the result record),
``service`` (the facade the CLI uses, over ``telemetry.competition``), ``coordination`` (the
coordinated start of a heat across site controllers).
"""
