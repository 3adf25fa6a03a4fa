"""Python sources ({ type = "python", callable = "module:function" }) and the data sync_dataframe
hands over: DataFrames go column-wise through the file sources' hygiene and column conventions,
dict rows as JSON lines do; every problem names the audience, the callable and the row; the real
`audsync run` reads a python source against the fake Amplitude on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import uuid
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audsync.config import AudienceConfig, FileSource, PythonSource, load
from audsync.errors import ConfigError, SourceError
from audsync.sources import FrameSource, open_source

AUDSYNC = shutil.which("audsync", path=str(Path(sys.executable).parent)) or "audsync"
NAME = "VIP Users"


def audience(source, kind: str = "audience") -> AudienceConfig:
    return AudienceConfig(name=NAME, key="vip_users", kind=kind, schedule=None, send_track_events=False,
                          source=source)


def read(aud: AudienceConfig, **kw):
    source = open_source(aud, **kw)
    rows = [row for chunk in source.chunks() for row in chunk]
    return rows, source


def frame(data, kind: str = "audience", **kw):
    return read(audience(FrameSource(data), kind), **kw)


@pytest.fixture
def module(tmp_path):
    """Writes a module of the given source into tmp_path under a fresh name; returns
    "name:function" for a python source. The import's traces leave with the test."""
    path, modules = list(sys.path), set(sys.modules)
    names = []

    def write(code: str, function: str = "members") -> str:
        name = f"members_{uuid.uuid4().hex[:10]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(code))
        names.append(name)
        return f"{name}:{function}"

    yield write
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def python(target: str, tmp_path, kind: str = "audience") -> AudienceConfig:
    return audience(PythonSource(callable=target, base=tmp_path), kind)


# DataFrames -------------------------------------------------------------------------------------

def test_a_dataframe_gives_the_same_rows_and_skips_as_the_same_table_in_a_parquet_file(tmp_path):
    df = pd.DataFrame({
        "user_id": [" user-0001 ", "user-0002", None, "abc", "null", "", "user-0007", "user-0008"],
        "anonymous_id": [None, "device-02", "device-03", None, None, None, "dev", "device-08"],
        "value": [1.0, 2.5, "gold", 4, 5, 6, None, [1, {"a": None}]],
        "email": ["x@example.com"] * 8,
    })
    df["value"] = df["value"].astype(object)
    parquet = tmp_path / "m.parquet"
    df.drop(columns="value").to_parquet(parquet, index=False)
    from_file, file_source = read(audience(FileSource(parquet)))
    rows, source = frame(df)
    assert rows == from_file
    assert rows == [("user-0001", None, None), ("user-0002", "device-02", None), (None, "device-03", None),
                    ("user-0007", None, None), ("user-0008", "device-08", None)]
    assert source.skipped == file_source.skipped == {"id shorter than min_id_length": 1, "blocked id": 1,
                                                     "no id": 1}
    assert source.rows_read == 8
    rows, source = frame(df, "computed_trait")
    assert rows == [("user-0001", None, 1), ("user-0002", "device-02", 2.5), (None, "device-03", "gold"),
                    ("user-0008", "device-08", [1, {"a": None}])]
    assert source.skipped["no value"] == 1


def test_dataframe_values_keep_their_types_and_every_pandas_missing_marker_is_no_value():
    df = pd.DataFrame({
        "user_id": [f"user-{i:04d}" for i in range(4)],
        "ints": pd.array([7, None, 9, 10], dtype="Int64"),
        "floats": [1.0, float("nan"), 2.5, 3.0],
        "flags": pd.array([True, None, False, True], dtype="boolean"),
        "when": pd.to_datetime(["2024-05-01T10:00:00Z", None, "2024-05-03T00:00:00Z", "2024-05-04T00:00:00Z"]),
        "tier": pd.Categorical(["gold", None, "silver", "gold"]),
        "text": ["a", None, "c", "d"],
        "objects": pd.Series([{"plan": "pro"}, pd.NA, Decimal("2.50"), np.int64(4)], dtype=object),
    })
    got = {}
    for column in df.columns[1:]:
        rows, source = frame(df[["user_id", column]].rename(columns={column: "value"}), "computed_trait")
        got[column] = [value for _, _, value in rows]
        assert source.skipped == {"no value": 1}, column
    assert got == {
        "ints": [7, 9, 10], "floats": [1, 2.5, 3], "flags": [True, False, True],
        "when": ["2024-05-01T10:00:00+00:00", "2024-05-03T00:00:00+00:00", "2024-05-04T00:00:00+00:00"],
        "tier": ["gold", "silver", "gold"], "text": ["a", "c", "d"], "objects": [{"plan": "pro"}, 2.5, 4],
    }


def test_dataframe_ids_of_any_column_type_become_text_and_missing_ids_are_no_id():
    df = pd.DataFrame({
        "user_id": pd.array([1234567, None, 7654321], dtype="Int64"),
        "anonymous_id": [float("nan"), 99999.0, 88888.0],
    })
    assert frame(df)[0] == [("1234567", None, None), (None, "99999", None), ("7654321", "88888", None)]
    mixed = pd.DataFrame({"user_id": pd.Series([12345, "user-0002", None, np.int64(67890)], dtype=object)})
    assert frame(mixed)[0] == [("12345", None, None), ("user-0002", None, None), ("67890", None, None)]
    categories = pd.DataFrame({"user_id": pd.Categorical(["user-0001", "user-0002", "user-0001"])})
    assert frame(categories)[0] == [("user-0001", None, None), ("user-0002", None, None), ("user-0001", None, None)]


@pytest.mark.parametrize("column, bad, kind", [
    ([True, False, True], 10, "a boolean, not"),               # a bool column
    (["user-0001", True, "user-0003"], 11, "a boolean, not"),  # an object column mixing types
    (["user-0001", [1, 2], "user-0003"], 11, "a list, not"),
    (["user-0001", "user-0002", 4.5], 12, "the number 4.5, which has a fraction; not"),
])
def test_a_dataframe_id_that_is_no_id_is_an_error_naming_the_index_label(column, bad, kind):
    df = pd.DataFrame({"user_id": column}, index=[10, 11, 12])
    with pytest.raises(SourceError) as info:
        frame(df)
    assert str(info.value) == f'audience "{NAME}": sync_dataframe: index {bad}: user_id is {kind} an id'


def test_dataframe_rows_are_named_by_index_label_in_later_chunks_too():
    df = pd.DataFrame({"user_id": [f"user-{i:04d}" for i in range(7)]}, index=[f"r{i}" for i in range(7)])
    df["value"] = pd.Series([1, 2, 3, 4, 5, float("inf"), 7], index=df.index)
    with pytest.raises(SourceError, match=r"sync_dataframe: index 'r5': value is inf, which JSON cannot carry"):
        frame(df, "computed_trait", chunk_rows=2)


def test_arrow_backed_columns_built_from_pieces_read_as_one():
    pieces = [pd.DataFrame({"user_id": pd.Series(ids, dtype="string[pyarrow]"), "value": pd.Series(values)})
              for ids, values in ((["user-0001", None], [1, 2]), (["user-0003"], [3]))]
    df = pd.concat(pieces, ignore_index=True)
    assert frame(df, "computed_trait", chunk_rows=2)[0] == [("user-0001", None, 1), ("user-0003", None, 3)]


def test_a_dataframe_is_read_in_chunks_of_at_most_chunk_rows():
    df = pd.DataFrame({"user_id": [f"user-{i:04d}" for i in range(5)]})
    source = open_source(audience(FrameSource(df)), chunk_rows=2)
    assert [len(chunk) for chunk in source.chunks()] == [2, 2, 1] and source.rows_read == 5


def test_a_dataframe_without_id_columns_names_the_columns_and_hints_at_reset_index():
    with pytest.raises(SourceError) as info:
        frame(pd.DataFrame({"email": ["a@example.com"]}))
    assert str(info.value) == f'audience "{NAME}": sync_dataframe: no user_id or anonymous_id column (columns: email)'
    by_user = pd.DataFrame({"value": [3]}, index=pd.Index(["user-0001"], name="user_id"))
    with pytest.raises(SourceError, match=r"\(columns: value\) \(the index holds user_id: frame\.reset_index\(\) "
                                          r"makes it a column\)$"):
        frame(by_user, "computed_trait")
    assert frame(by_user.reset_index(), "computed_trait")[0] == [("user-0001", None, 3)]
    with pytest.raises(SourceError, match="no value column, which a computed trait needs"):
        frame(pd.DataFrame({"user_id": ["user-0001"]}), "computed_trait")
    with pytest.raises(SourceError, match="the column user_id appears 2 times"):
        frame(pd.DataFrame([["user-0001", "user-0002"]], columns=["user_id", "user_id"]))


def test_an_empty_dataframe_with_its_columns_is_an_empty_audience():
    rows, source = frame(pd.DataFrame({"user_id": pd.Series([], dtype=object)}))
    assert rows == [] and source.rows_read == 0


# Iterables: DataFrame chunks, dict rows -----------------------------------------------------------

def test_an_iterable_of_dataframes_streams_and_names_the_chunk_of_a_bad_row():
    def chunks():
        yield pd.DataFrame({"user_id": ["user-0001", "user-0002"]})
        yield pd.DataFrame({"user_id": ["user-0003"], "anonymous_id": ["device-03"]})

    rows, source = frame(chunks())
    assert rows == [("user-0001", None, None), ("user-0002", None, None), ("user-0003", "device-03", None)]
    assert source.rows_read == 3
    bad = [pd.DataFrame({"user_id": ["user-0001"]}), pd.DataFrame({"user_id": [True]}, index=[5])]
    with pytest.raises(SourceError, match=r'sync_dataframe: chunk 2, index 5: user_id is a boolean, not an id$'):
        frame(bad)
    with pytest.raises(SourceError, match=r"sync_dataframe: chunk 2: no user_id or anonymous_id column"):
        frame([pd.DataFrame({"user_id": ["user-0001"]}), pd.DataFrame({"id": [1]})])
    with pytest.raises(SourceError, match=r"chunk 2 is a dict, not a DataFrame; give either DataFrames or rows"):
        frame([pd.DataFrame({"user_id": ["user-0001"]}), {"user_id": "user-0002"}])


def test_dict_rows_read_like_json_lines_and_name_their_position():
    rows = iter([{"user_id": "user-0001", "value": 1}, {"anonymous_id": "device-02", "value": [1, 2]},
                 {"user_id": 12345, "value": None}, {"user_id": "abc", "value": 4}])
    got, source = frame(rows, "computed_trait", chunk_rows=2)
    assert got == [("user-0001", None, 1), (None, "device-02", [1, 2])]
    assert source.skipped == {"no value": 1, "id shorter than min_id_length": 1} and source.rows_read == 4
    with pytest.raises(SourceError, match=r'^audience "VIP Users": sync_dataframe: row 3: user_id is an object, '
                                          r'not an id$'):
        frame([{"user_id": "user-0001"}, {"user_id": "user-0002"}, {"user_id": {"id": 1}}], chunk_rows=2)


def test_rows_that_are_tuples_or_never_name_an_id_are_errors():
    with pytest.raises(SourceError, match=r"sync_dataframe: row 2: a tuple, not a row: each row is a dict with "
                                          r"user_id and/or anonymous_id \(and value for a computed trait\)$"):
        frame([{"user_id": "user-0001"}, ("user-0002", None)])
    with pytest.raises(SourceError, match=r"sync_dataframe: no user_id or anonymous_id column \(columns: email, id\)"):
        frame([{"id": 1, "email": "a@example.com"}])
    with pytest.raises(SourceError, match=r"row 2: a DataFrame among rows; give either rows or DataFrames"):
        frame([{"user_id": "user-0001"}, pd.DataFrame({"user_id": ["user-0002"]})])


@pytest.mark.parametrize("data, said", [
    (None, "was given None; it takes a pandas DataFrame, an iterable of DataFrames, or an iterable of rows "
           "(dicts with user_id and/or anonymous_id)"),
    ({"user_id": ["user-0001"]}, "was given a dict; it takes a pandas DataFrame"),
    ("user-0001", "was given a str; it takes a pandas DataFrame"),
    (42, "was given an int; it takes a pandas DataFrame"),
    (pd.Series(["user-0001"], name="user_id"), "was given a Series; it takes a DataFrame (series.reset_index() "
                                               "makes one of a Series indexed by user_id)"),
])
def test_data_of_the_wrong_type_is_an_error_saying_what_is_taken(data, said):
    with pytest.raises(SourceError) as info:
        frame(data)
    assert str(info.value).startswith(f'audience "{NAME}": sync_dataframe: {said}')


# The callable -----------------------------------------------------------------------------------

def test_a_callable_next_to_the_config_is_imported_and_called_at_each_read(tmp_path, module):
    target = module("""
        import pandas as pd
        calls = []

        def members():
            calls.append(1)
            return pd.DataFrame({"user_id": [f"user-{i:04d}" for i in range(len(calls))]})
    """)
    aud = python(target, tmp_path)
    assert read(aud)[0] == [("user-0000", None, None)]
    assert read(aud)[0] == [("user-0000", None, None), ("user-0001", None, None)]


def test_a_callable_may_be_a_generator_of_rows_or_a_method(tmp_path, module):
    target = module("""
        class Warehouse:
            @staticmethod
            def members():
                for i in range(3):
                    yield {"user_id": f"user-{i:04d}", "value": i * 10}
    """, "Warehouse.members")
    assert read(python(target, tmp_path, "computed_trait"))[0] == [
        ("user-0000", None, 0), ("user-0001", None, 10), ("user-0002", None, 20)]


def test_nothing_is_imported_before_the_source_is_read(tmp_path, module):
    target = module("raise RuntimeError('imported too early')")
    source = open_source(python(target, tmp_path))
    with pytest.raises(SourceError, match="imported too early"):
        next(source.chunks())


@pytest.mark.parametrize("code, function, message", [
    ("", "members", r"{module} has no attribute members$"),
    ("members = 3", "members", r"{target} is an int, not a function$"),
    ("class A:\n    pass\nmembers = A", "members.rows", r"{module}:members has no attribute rows$"),
    ("def members():\n    pass", "members",
     r"returned None; it must return a pandas DataFrame, an iterable of DataFrames, or an iterable of rows "
     r"\(dicts with user_id and/or anonymous_id\) \(does the function end without a return statement\?\)$"),
    ("def members():\n    return 7", "members", r"returned an int; it must return a pandas DataFrame"),
    ("def members():\n    return [('user-0001', None)]", "members", r"row 1: a tuple, not a row"),
    ("def members():\n    return {}['user_id']", "members", r"raised KeyError: 'user_id' \(at {path}:2\)$"),
    ("def members():\n    yield {'user_id': 'user-0001'}\n    raise ConnectionError('warehouse gone')", "members",
     r"raised ConnectionError: warehouse gone \(at {path}:3\) after 1 row$"),
    ("import pandas as pd\ndef members():\n    return pd.read_csv('/nonexistent/members.csv')", "members",
     r"raised FileNotFoundError: .*members\.csv.* \(at {path}:3\)$"),
    ("x = 1\nimport no_such_module_here_at_all", "members",
     r"importing {module} failed: ModuleNotFoundError: No module named 'no_such_module_here_at_all' "
     r"\(at {path}:2\)$"),
    ("def members(:\n    pass", "members", r"importing {module} failed: SyntaxError: .*line 1.*$"),
    ("import sys\nsys.exit(4)", "members", r"importing {module} failed: SystemExit: 4 \(at {path}:2\)$"),
])
def test_a_bad_callable_is_an_error_naming_the_audience_and_the_callable(tmp_path, module, code, function,
                                                                         message):
    target = module(code, function)
    name = target.split(":")[0]
    expected = message.format(module=name, target=target, path=str(tmp_path / f"{name}.py"))
    with pytest.raises(SourceError, match=rf'^audience "{NAME}": callable "{target}": {expected}') as info:
        read(python(target, tmp_path))
    # Nothing chained: the CLI shows the message, and no traceback follows it anywhere.
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


def test_a_module_that_is_nowhere_says_where_it_looked(tmp_path):
    with pytest.raises(SourceError) as info:
        read(python("no_such_members_module:members", tmp_path))
    assert str(info.value) == (f'audience "{NAME}": callable "no_such_members_module:members": no module named '
                               f"no_such_members_module (looked in {tmp_path} and the installed packages)")


def test_an_exception_echoing_a_database_url_has_its_password_masked(tmp_path, module):
    target = module("""
        def members():
            raise RuntimeError("cannot connect to postgresql://reader:s3cret-pw@warehouse/db")
    """)
    with pytest.raises(SourceError) as info:
        read(python(target, tmp_path))
    assert "s3cret-pw" not in str(info.value) and "reader:***@warehouse" in str(info.value)


# Config -----------------------------------------------------------------------------------------

def config_with(tmp_path, source: str) -> Path:
    path = tmp_path / "audsync.toml"
    path.write_text(f'[[audiences]]\nname = "{NAME}"\nsource = {source}\n')
    return path


def test_a_python_source_in_the_config_searches_the_config_files_directory(tmp_path):
    cfg = load(config_with(tmp_path, '{ type = "python", callable = "pkg.members:current" }'), environ={})
    assert cfg.audiences[0].source == PythonSource(callable="pkg.members:current", base=tmp_path.resolve())


@pytest.mark.parametrize("source, message", [
    ('{ type = "python", calable = "m:f" }', r"audiences\[0\]\.source\.calable: unknown setting \(did you mean "
                                             r"callable\?\)"),
    ('{ type = "python" }', r'audiences\[0\]\.source\.callable: a python source needs a callable, as in '
                            r'"members:current"'),
    ('{ type = "python", callable = "members.current" }', r"audiences\[0\]\.source\.callable: 'members\.current' "
                                                          r'is not "module:function"'),
    ('{ type = "python", callable = "members:" }', r"'members:' is not \"module:function\""),
    ('{ type = "python", callable = "my-members:current" }', r"'my-members:current' is not \"module:function\""),
    ('{ type = "python", callable = " members:current" }', r"' members:current' is not \"module:function\""),
    ('{ type = "python", callable = 3 }', r"audiences\[0\]\.source\.callable: must be a string, not 3"),
    ('{ type = "pyhton", callable = "m:f" }', r"audiences\[0\]\.source\.type: 'pyhton' must be \"sql\", \"file\", "
                                              r"\"python\" or \"rule\""),
])
def test_a_python_source_with_a_typo_is_a_config_error_naming_the_key(tmp_path, source, message):
    with pytest.raises(ConfigError, match=message):
        load(config_with(tmp_path, source), environ={})


# The real CLI -----------------------------------------------------------------------------------

def test_audsync_run_reads_a_python_source_next_to_its_config_and_syncs_it(tmp_path, state_url, amplitude):
    module = f"crm_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        import json
        from pathlib import Path

        import pandas as pd

        def members():
            ids = json.loads((Path(__file__).parent / "ids.json").read_text())
            return pd.DataFrame({"user_id": ids, "plan": "pro"})
    """))
    (tmp_path / "ids.json").write_text(json.dumps(["user-0001", "user-0002", "abc"]))
    config = tmp_path / "audsync.toml"
    config.write_text(textwrap.dedent(f'''
        [state]
        url = "{state_url}"
        [amplitude]
        api_key = "test-api-key-123"
        endpoint = "{amplitude.url}"
        [[audiences]]
        name = "{NAME}"
        source = {{ type = "python", callable = "{module}:members" }}
        [[audiences]]
        name = "Broken"
        source = {{ type = "python", callable = "{module}:nobody" }}
    '''))

    def run(*args):
        # Run from elsewhere: the module is found next to the config, not in the working directory.
        return subprocess.run([AUDSYNC, "run", "--config", str(config), *args], capture_output=True, text=True,
                              timeout=120, cwd="/")

    first = run("--audience", NAME)
    assert first.returncode == 0, first.stderr
    assert "vip_users: 3 read, +2 entered" in first.stdout and "skipped 1 id shorter than min_id_length" in first.stdout
    assert amplitude.properties == {"user-0001": {"vip_users": True}, "user-0002": {"vip_users": True}}
    (tmp_path / "ids.json").write_text(json.dumps(["user-0002", "user-0003"]))
    amplitude.clear()
    second = run("--audience", NAME)
    assert second.returncode == 0, second.stderr
    assert "+1 entered, -1 exited" in second.stdout
    assert sorted((i["user_id"], i["user_properties"]) for i in amplitude.identifies) == [
        ("user-0001", {"vip_users": False}), ("user-0003", {"vip_users": True})]
    broken = run("--audience", "Broken")
    assert broken.returncode == 2
    assert f'audience "Broken": callable "{module}:nobody": {module} has no attribute nobody' in broken.stderr
    assert "Traceback" not in broken.stderr
