"""Compile every case of test_compile_cases for one warehouse dialect, without a connection, and
parse the SQL with sqlglot as that dialect. Run as a child process by test_compile_sql.py: the
dialect packages register SQL functions for the whole process when imported (sqlalchemy-bigquery's
`unnest` replaces func.unnest's class), which must not leak into the other tests.

Usage: python tests/rules/dialect_check.py snowflake|bigquery|redshift
Prints one JSON object: {"missing": reason} when the dialect package is not installed, else
{"checked": n, "failures": [...]}.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# The repository root (for `tests.rules...`) and tests/, where pytest's conftests find their shared
# modules (pg_server): pytest puts it on sys.path, a plain `python` does not.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def dialect(name: str):
    if name == "snowflake":
        from snowflake.sqlalchemy import snowdialect
        return snowdialect.dialect()
    if name == "bigquery":
        from sqlalchemy_bigquery import BigQueryDialect
        return BigQueryDialect()
    from sqlalchemy_redshift.dialect import RedshiftDialect_psycopg2
    return RedshiftDialect_psycopg2()


def main(name: str) -> dict:
    try:
        target = dialect(name)
    except ImportError as exc:
        return {"missing": str(exc)}
    import sqlalchemy as sa
    import sqlglot

    from audsync.rules import parse_rule
    from audsync.rules.compile import Warehouse, compile_rule
    from tests.rules.conftest import AS_OF
    from tests.rules.test_compile_cases import CASES, _members_table

    failures = []
    for case in CASES:
        # The rudderstack layout builds the same statements with other names: segment's stand for both.
        compiled = compile_rule(parse_rule(case.rule, case.kind), kind=case.kind,
                                warehouse=Warehouse("segment", "segment_prod"), as_of=AS_OF,
                                include_anonymous=case.include_anonymous,
                                audiences={k: _members_table(v) for k, v in case.audiences.items()})
        try:
            sql = str(compiled.query.compile(dialect=target, compile_kwargs={"literal_binds": False}))
            if "segment_prod" not in sql and compiled.query.get_final_froms():
                raise AssertionError("the warehouse schema is not in the SQL")
            # PostgreSQL's own: Redshift, which speaks its dialect, lacks it (sqlglot reads it anyway).
            if "DISTINCT ON" in sql.upper():
                raise AssertionError(f"DISTINCT ON, which {name} does not have")
            # sqlglot reads named parameters as :name; pyformat's %(name)s is the same thing.
            sqlglot.parse_one(re.sub(r"%\((\w+)\)s", r":\1", sql), read=name,
                              error_level=sqlglot.ErrorLevel.RAISE)
        except Exception as exc:  # reported to the test, which fails naming the rule
            failures.append({"rule": case.rule, "error": f"{type(exc).__name__}: {exc}"[:500]})
    # The audsync layout's JSON is read on the state databases only: the error must say which.
    compiled = compile_rule(parse_rule("event('E').where(property('p') = 1).count() >= 1", "audience"),
                            kind="audience", warehouse=Warehouse("audsync"), as_of=AS_OF)
    try:
        compiled.query.compile(dialect=target)
        failures.append({"rule": "audsync layout", "error": "compiled on a warehouse dialect"})
    except sa.exc.CompileError as exc:
        if "SQLite, PostgreSQL and DuckDB" not in str(exc):
            failures.append({"rule": "audsync layout", "error": str(exc)})
    return {"checked": len(CASES), "failures": failures}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
