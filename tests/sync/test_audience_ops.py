"""Templated identifies equal what mapping.translate gives for the same messages."""

from __future__ import annotations

import dataclasses

import pytest

import audsync.mapping  # noqa: E402

if not hasattr(audsync.mapping, "translate"):
    pytest.skip("audsync.mapping.translate is not in the tree yet", allow_module_level=True)

from audsync.audience_ops import OperationBuilder  # noqa: E402
from audsync.config import AmplitudeSettings, AudienceConfig, FileSource  # noqa: E402
from audsync.delivery.deliverer import encode  # noqa: E402
from audsync.mapping import translate  # noqa: E402

SETTINGS = [
    AmplitudeSettings(),
    AmplitudeSettings(traits_to_set_once=("vip",)),
    AmplitudeSettings(prefer_anonymous_id_for_device_id=True),
    AmplitudeSettings(min_id_length=3, version_name="1.2.3"),
    AmplitudeSettings(send_to_batch_endpoint=True),
    AmplitudeSettings(traits_to_append=("vip",)),
]
USERS = [("uuser0001", "user0001", None), ("uuser0002", "user0002", "device0002"), ("adevice03", None, "device03")]


def _audience(kind: str, track: bool = False) -> AudienceConfig:
    return AudienceConfig(name="VIP", key="vip", kind=kind, schedule=None, send_track_events=track,
                          source=FileSource(path="x.csv"))  # type: ignore[arg-type]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(
    f"{f.name}" for f in dataclasses.fields(s) if getattr(s, f.name) != getattr(AmplitudeSettings(), f.name)) or "defaults")
@pytest.mark.parametrize("track", [False, True])
def test_audience_templates_equal_translate_for_every_setting(settings, track):
    builder = OperationBuilder(_audience("audience", track), settings, "dest")
    for _ in range(5):  # past the verification window, the template alone answers
        for identity, user, anon in USERS:
            for change in ("enter", "exit", "resend"):
                expected = builder.translated(identity, user, anon, "true", change, 3)
                assert builder.build(identity, user, anon, "true", change, 3) == expected


@pytest.mark.parametrize("settings", SETTINGS[:4], ids=str)
def test_computed_trait_templates_equal_translate_for_every_value_type(settings):
    builder = OperationBuilder(_audience("computed_trait"), settings, "dest")
    values = ['"gold"', "12", "1.5", "true", '{"a":1}', '[1,2]', '"x y"']
    for _ in range(5):
        for identity, user, anon in USERS:
            for value in values:
                assert builder.build(identity, user, anon, value, "change", 2) == \
                    builder.translated(identity, user, anon, value, "change", 2)
            assert builder.build(identity, user, anon, None, "unset", 2) == \
                builder.translated(identity, user, anon, None, "unset", 2)


def test_unset_is_sent_as_an_absolute_unset_of_the_key():
    builder = OperationBuilder(_audience("computed_trait"), AmplitudeSettings(), "dest")
    ops = builder.build("uuser0001", "user0001", None, None, "unset", 2)
    identify = [op for op in ops if op["api"] == "identify" or op["body"].get("event_type") == "$identify"]
    assert identify and identify[0]["body"]["user_properties"] == {"$unset": {"vip": "-"}}


def test_track_event_insert_ids_depend_on_the_planned_change_only():
    builder = OperationBuilder(_audience("audience", track=True), AmplitudeSettings(), "dest")
    first = builder.build("uuser0001", "user0001", None, "true", "enter", 4)
    again = builder.build("uuser0001", "user0001", None, "true", "enter", 4)
    later = builder.build("uuser0001", "user0001", None, "true", "enter", 9)
    assert first == again and first[-1] != later[-1]


def _encoded_reference(builder, *args):
    return [encode(op) for op in builder.translated(*args)]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(
    f"{f.name}" for f in dataclasses.fields(s) if getattr(s, f.name) != getattr(AmplitudeSettings(), f.name)) or "defaults")
@pytest.mark.parametrize("track", [False, True])
def test_encoded_audience_operations_equal_the_translated_ones_encoded(settings, track):
    builder = OperationBuilder(_audience("audience", track), settings, "dest")
    for run in range(5):  # past the verification window, the byte templates alone answer
        for identity, user, anon in USERS:
            for change in ("enter", "exit", "resend"):
                args = (identity, user, anon, "true", change, run)
                assert builder.build_encoded(*args) == _encoded_reference(builder, *args)


@pytest.mark.parametrize("settings", SETTINGS[:4], ids=str)
def test_encoded_computed_trait_operations_equal_the_translated_ones_for_every_value(settings):
    builder = OperationBuilder(_audience("computed_trait"), settings, "dest")
    values = ['"gold"', "12", "1.5", "true", '{"a":1,"b":[1,"x\\"y"]}', "[1,2]", '"x y \\u00e9 \\"q\\""', "null"]
    for _ in range(5):
        for identity, user, anon in [*USERS, ("uquo\"te", 'quo"te', None)]:
            for value in values:
                args = (identity, user, anon, value, "change", 2)
                assert builder.build_encoded(*args) == _encoded_reference(builder, *args)
            args = (identity, user, anon, None, "unset", 2)
            assert builder.build_encoded(*args) == _encoded_reference(builder, *args)


def _translate_that(embeds_ids: bool):
    """A mapping that upper-cases string values, and may put the user id inside a longer string:
    no byte template can express either, so every user must come out as translate says."""
    def translate_(message, settings):
        ops = translate(message, settings)
        for op in ops:
            body = op["body"]
            if embeds_ids and "user_id" in body:
                body["user_id"] = "user:" + body["user_id"]
            props = body.get("user_properties", {})
            values = props.get("$set", props)
            for key, value in list(values.items()):
                if isinstance(value, str):
                    values[key] = value.upper()
        return ops
    return translate_


@pytest.mark.parametrize("embeds_ids", [False, True])
def test_a_mapping_no_byte_template_can_express_is_encoded_from_its_dicts(embeds_ids):
    builder = OperationBuilder(_audience("computed_trait"), AmplitudeSettings(), "dest",
                               translate=_translate_that(embeds_ids))
    user = "user:user{:04d}" if embeds_ids else "user{:04d}"
    for i in range(10):
        args = (f"uuser{i:04d}", f"user{i:04d}", None, f'"gold{i}"', "change", 1)
        (op,) = builder.build_encoded(*args)
        assert op == encode({"api": "identify", "body": builder.translated(*args)[0]["body"]})
        assert op[2] == user.format(i) and f'"GOLD{i}"'.encode() in op[1]
