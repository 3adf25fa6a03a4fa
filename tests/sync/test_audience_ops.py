"""The fast path (a template per shape of message, filled per user or per page) sends what
mapping.translate gives for the same messages, and the messages are what Engage would send."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

import audsync.errors
from audsync._audience_ops import ENTERED_EVENT, EXITED_EVENT, OperationBuilder
from audsync.config import AmplitudeSettings, AudienceConfig, FileSource
from audsync.delivery.deliverer import encode
from audsync.mapping import translate

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


def test_unset_is_sent_as_an_absolute_unset_of_the_key():
    builder = OperationBuilder(_audience("computed_trait"), AmplitudeSettings(), "dest")
    ops = builder.translated("uuser0001", "user0001", None, None, "unset", 2)
    identify = [op for op in ops if op["api"] == "identify" or op["body"].get("event_type") == "$identify"]
    assert identify and identify[0]["body"]["user_properties"] == {"$unset": {"vip": "-"}}


def test_track_event_insert_ids_depend_on_the_planned_change_only():
    builder = OperationBuilder(_audience("audience", track=True), AmplitudeSettings(), "dest")
    first = builder.build_encoded("uuser0001", "user0001", None, "true", "enter", 4)
    again = builder.build_encoded("uuser0001", "user0001", None, "true", "enter", 4)
    later = builder.build_encoded("uuser0001", "user0001", None, "true", "enter", 9)
    assert first == again and first[-1] != later[-1]


def test_a_percent_sign_in_the_template_is_sent_as_it_is():
    # the template is a bytes format (%b per value): its own % signs must come out unchanged
    audience = AudienceConfig(name="50% off %s %b", key="off_50", kind="audience", schedule=None,
                              send_track_events=True, source=FileSource(path="x.csv"))  # type: ignore[arg-type]
    builder = OperationBuilder(audience, AmplitudeSettings(version_name="%d%%"), "dest")
    for i in range(5):
        args = (f"uuser{i:04d}", f"us%r{i:04d}", None, "true", "enter", 1)
        encoded = builder.build_encoded(*args)
        assert encoded == _encoded_reference(builder, *args)
        assert orjson.loads(encoded[-1][1])["event_properties"]["audience_name"] == "50% off %s %b"


@pytest.mark.parametrize("change,event,member", [("enter", ENTERED_EVENT, True), ("exit", EXITED_EVENT, False)])
def test_audience_events_carry_engages_properties_and_the_audience_name(change, event, member):
    # engage-audiences.md section 5: {"audience_key": key, key: true|false}
    builder = OperationBuilder(_audience("audience", track=True), AmplitudeSettings(), "dest")
    for run in range(5):  # the template's users as well as the verified first ones
        *_, (api, data, _, _) = builder.build_encoded(f"uuser{run:04d}", f"user{run:04d}", None, "true", change, 1)
        body = orjson.loads(data)
        assert (api, body["event_type"]) == ("event", event)
        assert body["event_properties"] == {"audience_key": "vip", "vip": member, "audience_name": "VIP"}


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
def test_a_mapping_no_byte_template_can_express_is_translated_for_every_user(embeds_ids):
    builder = OperationBuilder(_audience("computed_trait"), AmplitudeSettings(), "dest",
                               translate=_translate_that(embeds_ids))
    user = "user:user{:04d}" if embeds_ids else "user{:04d}"
    for i in range(10):
        args = (f"uuser{i:04d}", f"user{i:04d}", None, f'"gold{i}"', "change", 1)
        (op,) = builder.build_encoded(*args)
        assert op == encode({"api": "identify", "body": builder.translated(*args)[0]["body"]})
        assert op[2] == user.format(i) and f'"GOLD{i}"'.encode() in op[1]


def _page(n: int, user: bool = True, anon: bool = False, change: str = "enter", start: int = 0) -> list[tuple]:
    return [(f"u{i:06d}", f"user{i:06d}" if user else None, f"device{i:06d}" if anon else None,
             None if change == "exit" else "true", change, 7) for i in range(start, start + n)]


def _one_by_one(builder, rows):
    return [op for row in rows for op in _encoded_reference(builder, *row)]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(
    f"{f.name}" for f in dataclasses.fields(s) if getattr(s, f.name) != getattr(AmplitudeSettings(), f.name)) or "defaults")
@pytest.mark.parametrize("user,anon", [(True, False), (True, True), (False, True)])
@pytest.mark.parametrize("change", ["enter", "exit", "resend"])
def test_a_page_encoded_at_once_equals_its_rows_translated_one_by_one(settings, user, anon, change):
    builder = OperationBuilder(_audience("audience"), settings, "dest")
    for start in (0, 50, 100):  # later pages too, past the verification of the shape's first users
        rows = _page(50, user, anon, change, start)
        bundle = builder.encode_page(rows)
        expected = _one_by_one(builder, rows)
        assert bundle is not None  # one operation per user, in lanes of its own ids
        assert bundle.refs == [row[0] for row in rows]
        keys2 = bundle.keys2 or [None] * len(rows)
        assert [(bundle.api, *op) for op in zip(bundle.datas, bundle.keys, keys2)] == expected


@pytest.mark.parametrize("rows,why", [
    (_page(3) + _page(3, change="exit", start=3), "two changes"),
    (_page(3) + _page(3, anon=True, start=3), "ids present differently"),
    ([], "empty"),
])
def test_a_page_of_mixed_shapes_is_left_to_the_one_by_one_path(rows, why):
    assert OperationBuilder(_audience("audience"), AmplitudeSettings(), "dest").encode_page(rows) is None, why


def test_pages_that_need_more_than_ids_are_left_to_the_one_by_one_path():
    traits = OperationBuilder(_audience("computed_trait"), AmplitudeSettings(), "dest")
    assert traits.encode_page([("u1", "user1", None, '"gold"', "change", 1)]) is None
    tracked = OperationBuilder(_audience("audience", track=True), AmplitudeSettings(), "dest")
    assert tracked.encode_page(_page(5)) is None  # a track event per user, with its insert_id


def test_a_page_whose_first_row_the_mapping_refuses_is_left_to_the_one_by_one_path():
    builder = OperationBuilder(_audience("audience"), AmplitudeSettings(min_id_length=9), "dest")
    rows = [("ushort", "short", None, "true", "enter", 1), *_page(5)]
    assert builder.encode_page(rows) is None
    with pytest.raises(audsync.errors.ValidationError):
        builder.build_encoded(*rows[0])


def test_a_mapping_no_byte_template_can_express_never_goes_by_pages():
    builder = OperationBuilder(_audience("audience"), AmplitudeSettings(), "dest",
                               translate=_translate_that(embeds_ids=True))
    rows = _page(20)
    assert builder.encode_page(rows) is None
    assert [builder.build_encoded(*row) for row in rows] == [_encoded_reference(builder, *row) for row in rows]
