"""The package root: its names load on first use, and the mapping core needs no heavy dependency."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

import audsync

HEAVY = ("sqlalchemy", "httpx", "apscheduler")

# A fresh interpreter where the heavy dependencies cannot be imported, as on a machine that
# installed audsync's mapping core alone.
WITHOUT_HEAVY = textwrap.dedent(f"""
    import json, sys

    HEAVY = {HEAVY!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in HEAVY:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
""")


def _run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", WITHOUT_HEAVY + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_mapping_translates_without_sqlalchemy_httpx_apscheduler():
    result = _run("""
        try:
            import sqlalchemy
            blocker_works = False
        except ModuleNotFoundError:
            blocker_works = True

        import audsync.mapping
        from audsync import translate, ValidationError
        from audsync.config import AmplitudeSettings

        ops = translate({"type": "identify", "userId": "user-0001", "traits": {"plan": "pro"}},
                        AmplitudeSettings())
        try:
            translate({"type": "jump"}, AmplitudeSettings())
            rejected = None
        except ValidationError as exc:
            rejected = str(exc)
        print(json.dumps({
            "blocker_works": blocker_works, "ops": ops, "rejected": rejected,
            "same": translate is audsync.mapping.translate,
            "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in HEAVY),
        }))
    """)
    assert result["blocker_works"]
    assert result["ops"] == [{"api": "identify", "body": {"user_id": "user-0001", "library": "segment",
                                                          "user_properties": {"plan": "pro"}}}]
    assert result["rejected"].startswith("type:")
    assert result["same"]
    assert result["loaded"] == []


def test_import_audsync_loads_only_what_is_used():
    result = _run("""
        import audsync
        after_import = sorted(m for m in sys.modules if m.startswith("audsync"))
        try:
            audsync.run_once  # the sync needs SQLAlchemy: loading it now must fail, and say so
            sync_error = None
        except ModuleNotFoundError as exc:
            sync_error = exc.name
        print(json.dumps({"after_import": after_import, "sync_error": sync_error}))
    """)
    assert result["after_import"] == ["audsync", "audsync.errors"]
    assert result["sync_error"] in HEAVY


def _available(module: str) -> bool:
    return importlib.util.find_spec(module, "audsync") is not None


@pytest.mark.parametrize("name", sorted(audsync._LAZY))
def test_every_lazy_name_is_the_object_of_its_module(name):
    module, attribute = audsync._LAZY[name]
    if not _available(module):
        pytest.skip(f"audsync{module} is not in this checkout")
    assert getattr(audsync, name) is getattr(importlib.import_module(module, "audsync"), attribute)


def test_all_is_the_lazy_table_and_the_error_tree():
    errors = {name for name in audsync.__all__ if name.endswith("Error")}
    assert set(audsync.__all__) == set(audsync._LAZY) | errors
    assert all(issubclass(getattr(audsync, name), audsync.AudsyncError) for name in errors)
    assert set(audsync.__all__) <= set(dir(audsync))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'run_twice'"):
        audsync.run_twice  # noqa: B018
    assert not hasattr(audsync, "nothing_here")
