"""SQL constructs whose spelling differs between databases, compiled per dialect (@compiles).

The rule compiler builds one SQLAlchemy Core statement for any dialect; the few operations that no
portable SQL expresses are the constructs here. Every name or value that comes from a rule reaches
the database as a bound parameter, created while compiling (`_param`): nothing from the rule is ever
pasted into the SQL text.

JSON fields (the audsync layout keeps properties, traits and context as JSON text) are read on
SQLite (json_extract / json_type, or json_each for a key no JSON path can spell), PostgreSQL (jsonb
`#>` / `#>>` with a text[] path of bound keys) and DuckDB (json_extract with a JSON Pointer, which
escapes any key). Three readings of a field:

- `json_text`: a string as its text, a number as its text, true/false as 'true'/'false', an object
  or array as its JSON text, JSON null or a missing key as NULL;
- `json_number`: a JSON number as a double, anything else NULL (a numeric string is not a number);
- `json_raw`: the value as JSON text ('"pro"', '100', 'true'), JSON null or missing as NULL.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import Select

try:  # SQLAlchemy 2.1; 2.0 spells it select.distinct(expr), which 2.1 deprecates
    from sqlalchemy.dialects.postgresql import distinct_on
except ImportError:  # pragma: no cover
    distinct_on = None

_JSON_DIALECTS = "SQLite, PostgreSQL and DuckDB"


def _param(compiler, value, type_=None, **kw) -> str:
    return compiler.process(sa.literal(value, type_ or sa.String()), **kw)


def _template(template: str):
    """A compile function that puts the element's one argument into `template`."""
    def compile_(element, compiler, **kw):
        return template.format(compiler.process(list(element.clauses)[0], **kw))
    return compile_


class _JsonField(FunctionElement):
    """A field of a JSON text column, by its path of keys (`keys`: top-level first)."""

    # The keys are attributes, not clauses: a cached statement must not be reused for other keys.
    inherit_cache = False

    def __init__(self, doc, keys: tuple[str, ...]):
        self.keys = tuple(keys)
        super().__init__(doc)

    @property
    def doc(self):
        return list(self.clauses)[0]


class json_text(_JsonField):
    inherit_cache = False
    type = sa.String()
    name = "json_text"


class json_number(_JsonField):
    inherit_cache = False
    type = sa.Float()
    name = "json_number"


class json_raw(_JsonField):
    inherit_cache = False
    type = sa.String()
    name = "json_raw"


@compiles(json_text)
@compiles(json_number)
@compiles(json_raw)
def _json_unsupported(element, compiler, **kw):
    raise CompileError(f"JSON fields of the audsync layout are read on {_JSON_DIALECTS}, not on "
                       f"{compiler.dialect.name}")


# --- SQLite ----------------------------------------------------------------------------------------

def _sqlite_path_safe(key: str) -> bool:
    # SQLite's JSON path reads a quoted key up to the next double quote, some versions read a
    # backslash in it as an escape, and a path key matches a \uXXXX-escaped key of the JSON text
    # only in newer versions: such keys are looked up by json_each, which decodes keys.
    return key.isascii() and '"' not in key and "\\" not in key


def _sqlite_lookup(element, compiler, **kw) -> tuple[str, str]:
    """(value, type) SQL of the field: json_extract / json_type when a path can spell every key,
    else a chain of json_each lookups (any key, compared as a bound parameter)."""
    doc = compiler.process(element.doc, **kw)
    if all(_sqlite_path_safe(k) for k in element.keys):
        path = "$" + "".join(f'."{k}"' for k in element.keys)
        return (f"json_extract({doc}, {_param(compiler, path, **kw)})",
                f"json_type({doc}, {_param(compiler, path, **kw)})")
    cur = doc
    for depth, key in enumerate(element.keys[:-1]):
        cur = (f"(SELECT j{depth}.value FROM json_each({cur}) AS j{depth} WHERE j{depth}.key = "
               f"{_param(compiler, key, **kw)} AND j{depth}.type = 'object')")
    last = len(element.keys)
    pick = (f"FROM json_each({cur}) AS j{last} WHERE j{last}.key = ")
    return (f"(SELECT j{last}.value {pick}{_param(compiler, element.keys[-1], **kw)})",
            f"(SELECT j{last}.type {pick}{_param(compiler, element.keys[-1], **kw)})")


@compiles(json_text, "sqlite")
def _json_text_sqlite(element, compiler, **kw):
    value, kind = _sqlite_lookup(element, compiler, **kw)
    return (f"CASE {kind} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN NULL "
            f"ELSE CAST({value} AS TEXT) END")


@compiles(json_number, "sqlite")
def _json_number_sqlite(element, compiler, **kw):
    value, kind = _sqlite_lookup(element, compiler, **kw)
    return f"CASE WHEN {kind} IN ('integer', 'real') THEN CAST({value} AS REAL) END"


@compiles(json_raw, "sqlite")
def _json_raw_sqlite(element, compiler, **kw):
    value, kind = _sqlite_lookup(element, compiler, **kw)
    return (f"CASE {kind} WHEN 'null' THEN NULL WHEN 'text' THEN json_quote({value}) "
            f"WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST({value} AS TEXT) END")


# --- PostgreSQL ------------------------------------------------------------------------------------

def _pg_parts(element, compiler, **kw) -> tuple[str, str]:
    doc = compiler.process(element.doc, **kw)
    keys = ", ".join(f"CAST({_param(compiler, k, **kw)} AS TEXT)" for k in element.keys)
    return f"CAST({doc} AS JSONB)", f"ARRAY[{keys}]"


@compiles(json_text, "postgresql")
def _json_text_pg(element, compiler, **kw):
    doc, path = _pg_parts(element, compiler, **kw)
    return f"({doc} #>> {path})"


def _jsonpath_key(key: str) -> str:
    """A key as a double-quoted jsonpath string (JSON escapes)."""
    out = []
    for ch in key:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


@compiles(json_number, "postgresql")
def _json_number_pg(element, compiler, **kw):
    # One jsonpath query parses the document once and keeps only a JSON number; jsonb casts a
    # number to double precision. The path is a bound parameter.
    doc = compiler.process(element.doc, **kw)
    path = "$." + ".".join(_jsonpath_key(k) for k in element.keys) + ' ? (@.type() == "number")'
    return (f"CAST(jsonb_path_query_first(CAST({doc} AS JSONB), CAST({_param(compiler, path, **kw)} AS JSONPATH)) "
            "AS DOUBLE PRECISION)")


@compiles(json_raw, "postgresql")
def _json_raw_pg(element, compiler, **kw):
    doc, path = _pg_parts(element, compiler, **kw)
    return f"NULLIF(CAST({doc} #> {path} AS TEXT), 'null')"


# --- DuckDB ----------------------------------------------------------------------------------------

def _pointer(keys: tuple[str, ...]) -> str:
    """RFC 6901 JSON Pointer: escapes every key."""
    return "".join("/" + k.replace("~", "~0").replace("/", "~1") for k in keys)


@compiles(json_text, "duckdb")
def _json_text_duckdb(element, compiler, **kw):
    doc = compiler.process(element.doc, **kw)
    return f"json_extract_string({doc}, {_param(compiler, _pointer(element.keys), **kw)})"


@compiles(json_number, "duckdb")
def _json_number_duckdb(element, compiler, **kw):
    doc = compiler.process(element.doc, **kw)
    path = _pointer(element.keys)
    return (f"CASE WHEN json_type({doc}, {_param(compiler, path, **kw)}) IN "
            "('BIGINT', 'UBIGINT', 'HUGEINT', 'DOUBLE') "
            f"THEN CAST(json_extract_string({doc}, {_param(compiler, path, **kw)}) AS DOUBLE) END")


@compiles(json_raw, "duckdb")
def _json_raw_duckdb(element, compiler, **kw):
    doc = compiler.process(element.doc, **kw)
    return (f"NULLIF(CAST(json_extract({doc}, {_param(compiler, _pointer(element.keys), **kw)}) "
            "AS VARCHAR), 'null')")


class json_value_text(FunctionElement):
    """The `json_text` reading of a value already in `json_raw` form ('"pro"' -> 'pro'): parsing the
    small value is cheaper than reading the whole document a second time."""

    type = sa.String()
    name = "json_value_text"
    inherit_cache = True


compiles(json_value_text)(_json_unsupported)


@compiles(json_value_text, "sqlite")
def _json_value_text_sqlite(element, compiler, **kw):
    value = compiler.process(list(element.clauses)[0], **kw)
    return (f"CASE json_type({value}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN NULL "
            f"ELSE CAST(json_extract({value}, '$') AS TEXT) END")


compiles(json_value_text, "postgresql")(_template("(CAST({} AS JSONB) #>> '{{}}')"))
compiles(json_value_text, "duckdb")(_template("json_extract_string({}, '$')"))


class json_string(FunctionElement):
    """A text column's value as a JSON string ('"Pricing"'), NULL stays NULL: the `value` form of a
    plain text column in a layout whose values are JSON text."""

    type = sa.String()
    name = "json_string"
    inherit_cache = True


compiles(json_string)(_json_unsupported)


compiles(json_string, "sqlite")(_template("json_quote({})"))
compiles(json_string, "postgresql")(_template("CAST(to_json(CAST({} AS TEXT)) AS TEXT)"))
compiles(json_string, "duckdb")(_template("CAST(to_json(CAST({} AS VARCHAR)) AS VARCHAR)"))


# --- substring search, case-sensitive everywhere -------------------------------------------------

class position(FunctionElement):
    """1-based position of `needle` in `haystack`, 0 when absent. (SQLite's LIKE ignores case, and
    LIKE would need its wildcards escaped: a position is exact on every database.)"""

    type = sa.Integer()
    name = "position"
    inherit_cache = True


@compiles(position)
def _position(element, compiler, **kw):
    haystack, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"POSITION({needle} IN {haystack})"


@compiles(position, "sqlite")
def _position_sqlite(element, compiler, **kw):
    haystack, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"instr({haystack}, {needle})"


@compiles(position, "bigquery")
def _position_bigquery(element, compiler, **kw):
    haystack, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"STRPOS({haystack}, {needle})"


# --- the sorted list of unique values, as JSON array text -----------------------------------------

class sorted_json_array(FunctionElement):
    """Aggregate: the (already distinct) text values of a group as a JSON array text, sorted. On
    SQLite, which has no ordered aggregate before 3.44, the rows must arrive sorted (the compiler
    feeds it from an ordered subquery: SQLite aggregates in scan order)."""

    type = sa.String()
    name = "sorted_json_array"
    inherit_cache = True


@compiles(sorted_json_array)
def _sorted_json_array(element, compiler, **kw):
    value = compiler.process(list(element.clauses)[0], **kw)
    return f"JSON_ARRAYAGG({value} ORDER BY {value})"


compiles(sorted_json_array, "sqlite")(_template("json_group_array({})"))


@compiles(sorted_json_array, "postgresql")
def _sorted_json_array_pg(element, compiler, **kw):
    value = compiler.process(list(element.clauses)[0], **kw)
    return f"CAST(json_agg({value} ORDER BY {value}) AS TEXT)"


@compiles(sorted_json_array, "duckdb")
def _sorted_json_array_duckdb(element, compiler, **kw):
    value = compiler.process(list(element.clauses)[0], **kw)
    return f"CAST(to_json(list({value} ORDER BY {value})) AS VARCHAR)"


@compiles(sorted_json_array, "snowflake")
def _sorted_json_array_snowflake(element, compiler, **kw):
    value = compiler.process(list(element.clauses)[0], **kw)
    return f"TO_JSON(ARRAY_AGG({value}) WITHIN GROUP (ORDER BY {value}))"


@compiles(sorted_json_array, "bigquery")
def _sorted_json_array_bigquery(element, compiler, **kw):
    value = compiler.process(list(element.clauses)[0], **kw)
    return f"TO_JSON_STRING(ARRAY_AGG({value} ORDER BY {value}))"


@compiles(sorted_json_array, "redshift")
def _sorted_json_array_redshift(element, compiler, **kw):
    # Redshift has no array aggregate over text: each value is quoted as a JSON string by hand.
    value = compiler.process(list(element.clauses)[0], **kw)
    quoted = f"'\"' || REPLACE(REPLACE({value}, '\\\\', '\\\\\\\\'), '\"', '\\\\\"') || '\"'"
    return f"'[' || LISTAGG({quoted}, ',') WITHIN GROUP (ORDER BY {value}) || ']'"


# --- instants read from text (trait and property values compared with dates) ----------------------

class instant(FunctionElement):
    """The instant a text value names (ISO 8601), comparable with `instant_param`; NULL when the text
    is no timestamp (where the database can tell without failing)."""

    type = sa.DateTime(timezone=True)
    name = "instant"
    inherit_cache = True


class instant_param(FunctionElement):
    """A bound instant, in the form `instant` compares with on this database."""

    type = sa.DateTime(timezone=True)
    name = "instant_param"
    inherit_cache = False

    def __init__(self, moment: datetime):
        self.moment = moment.astimezone(timezone.utc)
        super().__init__()


@compiles(instant)
def _instant(element, compiler, **kw):
    return compiler.process(sa.cast(list(element.clauses)[0], sa.DateTime(timezone=True)), **kw)


# ISO 8601 as PostgreSQL and Redshift read it, each field in its range; the day within its month is
# checked apart (February 30 passes here).
_ISO_INSTANT = (r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
                r"([ T]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?)?(Z|[+-](0\d|1[0-5])(:?[0-5]\d)?)?$")


@compiles(instant, "postgresql")
@compiles(instant, "redshift")
def _instant_pg(element, compiler, **kw):
    # A cast of text that is no timestamp would fail the whole query: only text in ISO form whose day
    # exists in its month is cast. The CASEs are nested because PostgreSQL does not promise to test
    # the conditions of an AND in order, and the day check itself reads the month.
    value = compiler.process(list(element.clauses)[0], **kw)
    pattern = _param(compiler, _ISO_INSTANT, **kw)
    month_start = f"CAST(SUBSTRING({value} FROM 1 FOR 7) || '-01' AS DATE)"
    last_day = f"EXTRACT(DAY FROM {month_start} + INTERVAL '1 month' - INTERVAL '1 day')"
    return (f"CASE WHEN {value} ~ {pattern} THEN CASE WHEN CAST(SUBSTRING({value} FROM 9 FOR 2) AS INTEGER) "
            f"<= {last_day} THEN CAST({value} AS TIMESTAMP WITH TIME ZONE) END END")


compiles(instant, "duckdb")(_template("TRY_CAST({} AS TIMESTAMPTZ)"))
compiles(instant, "snowflake")(_template("TRY_TO_TIMESTAMP_TZ({})"))
compiles(instant, "bigquery")(_template("SAFE_CAST({} AS TIMESTAMP)"))


@compiles(instant, "sqlite")
def _instant_sqlite(element, compiler, **kw):
    # julianday reads ISO 8601 with a Z or an offset and gives NULL for most other text, but it rolls
    # an impossible day over (02-30 -> 03-02) and reads 'now' or a bare number as instants too: the
    # value counts only when its first ten characters are the date they name.
    value = compiler.process(list(element.clauses)[0], **kw)
    day = f"substr({value}, 1, 10)"
    return f"CASE WHEN date(julianday({day})) = {day} THEN julianday({value}) END"


@compiles(instant_param)
def _instant_param(element, compiler, **kw):
    return _param(compiler, element.moment, sa.DateTime(timezone=True), **kw)


@compiles(instant_param, "sqlite")
def _instant_param_sqlite(element, compiler, **kw):
    # SQLite reads the text the way it reads the compared values: equal instants give equal days.
    text = element.moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"julianday({_param(compiler, text, **kw)})"


class event_time(FunctionElement):
    """A warehouse's event timestamp column, comparable with `instant_param`. SQLite has no timestamp
    type: a local warehouse keeps text, ISO 8601 ('2026-01-31T08:00:00Z', offsets) or SQLAlchemy's
    '2026-01-31 08:00:00.000000', which do not compare as text; julianday reads them all."""

    type = sa.DateTime(timezone=True)
    name = "event_time"
    inherit_cache = True


compiles(event_time)(_template("{}"))
compiles(event_time, "sqlite")(_template("julianday({})"))


# --- numbers read from warehouse columns ----------------------------------------------------------

class to_number(FunctionElement):
    """A column's value as a double; NULL when it is text that is no number. A warehouse types a
    column by the first value it saw (reference/segment-warehouse-schema.md), so a text column may
    hold '10' and 'M': a plain CAST fails the whole query on 'M' (or, on SQLite, reads it as 0)."""

    type = sa.Float()
    name = "to_number"
    inherit_cache = True


_NUMBER_TEXT = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?\s*$"


@compiles(to_number, "postgresql")
@compiles(to_number, "redshift")
def _to_number_pg(element, compiler, **kw):
    # The column may be a number or text: its text form is tested, then cast.
    text = f"CAST({compiler.process(list(element.clauses)[0], **kw)} AS VARCHAR)"
    return (f"CASE WHEN {text} ~ {_param(compiler, _NUMBER_TEXT, **kw)} "
            f"THEN CAST({text} AS DOUBLE PRECISION) END")


@compiles(to_number, "sqlite")
def _to_number_sqlite(element, compiler, **kw):
    # CAST(... AS NUMERIC) carries numeric affinity into the comparison, which turns the other side
    # into a number only when it is one in full ('10', ' 1.5e3'): 'M' and '10 kg' stay text, unequal.
    value = compiler.process(list(element.clauses)[0], **kw)
    return f"CASE WHEN {value} = CAST({value} AS NUMERIC) THEN CAST({value} AS REAL) END"


for _dialect, _sql in {
    None: "CAST({} AS FLOAT)",
    "duckdb": "TRY_CAST({} AS DOUBLE)",
    "snowflake": "TRY_TO_DOUBLE(TO_VARCHAR({}))",   # TRY_TO_DOUBLE takes text only: the column may be a number
    "bigquery": "SAFE_CAST({} AS FLOAT64)",
}.items():
    compiles(to_number, *([_dialect] if _dialect else []))(_template(_sql))


# --- the first row per key -------------------------------------------------------------------------

class _FirstPer(Select):
    """A Select of row_number() = 1 per key that compiles as SELECT DISTINCT ON where the database has
    it (`distinct_on`, the same columns by the same names). Built by `first_per`."""

    # The DISTINCT ON form is an attribute, outside the statement's cache key: never cached.
    inherit_cache = False
    distinct_on: Select


def first_per(columns, key, order, where=None, name: str = "ranked") -> Select:
    """SELECT `columns` (of one FROM, each with a name), keeping per `key` the row first in `order`.
    PostgreSQL and DuckDB: DISTINCT ON (key) ... ORDER BY key, order (one sort and a Unique); the
    others (SQLite, Snowflake, BigQuery, Redshift, which lacks DISTINCT ON though it speaks
    PostgreSQL's dialect): row_number() OVER (PARTITION BY key ORDER BY order) = 1 in a subquery.
    Rows that tie on `order` leave either one, alike in both."""
    rank = sa.func.row_number().over(partition_by=key, order_by=order)
    ranked = sa.select(*columns, rank.label("rn"))
    plain = sa.select(*columns)
    if where is not None:
        ranked, plain = ranked.where(where), plain.where(where)
    ranked = ranked.subquery(name)
    out = _FirstPer(*(c for c in ranked.c if c.key != "rn")).where(ranked.c.rn == 1)
    plain = plain.ext(distinct_on(key)) if distinct_on is not None else plain.distinct(key)
    out.distinct_on = plain.order_by(key, *order)
    return out


@compiles(_FirstPer, "postgresql")
@compiles(_FirstPer, "duckdb")
def _first_per_distinct_on(element, compiler, **kw):
    return compiler.process(element.distinct_on, **kw)
