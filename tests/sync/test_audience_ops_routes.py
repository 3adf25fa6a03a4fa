"""OperationBuilder's fast path, filled per user (build_encoded) or per page (encode_page), sends,
byte for byte, what translating each user's messages gives (`translated`), for every user of a
shape, not only its first ones: a property test over many users per shape and hostile values."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from audsync._audience_ops import OperationBuilder
from audsync.config import AmplitudeSettings, AudienceConfig, FileSource
from audsync.delivery.deliverer import encode
from audsync.errors import ValidationError
from audsync.mapping._common import check_id

SETTINGS = [
    AmplitudeSettings(),
    AmplitudeSettings(traits_to_set_once=("vip",)),
    AmplitudeSettings(traits_to_increment=("vip",)),
    AmplitudeSettings(traits_to_append=("vip",)),
    AmplitudeSettings(traits_to_prepend=("vip",)),
    AmplitudeSettings(prefer_anonymous_id_for_device_id=True, min_id_length=3, version_name="1.2.3"),
    AmplitudeSettings(send_to_batch_endpoint=True, map_query_params={"q": "user_properties"}),
]
# one plain value per kind: three users of it first push a shape past its verification window
WARM_UP = {"dict": '{"a":1}', "list": "[1]", "str": '"s"', "int": "1", "float": "1.5", "bool": "true",
           "NoneType": "null"}


def _valid(text: str) -> bool:
    try:
        return check_id(text, "id", 5) is not None
    except ValidationError:
        return False


ids = st.one_of(
    st.text(min_size=5, max_size=40),
    st.text(alphabet="0123456789", min_size=5, max_size=25),  # numeric-looking ids
    st.from_regex(r"[a-z]{2,8}[-_.@+ ][A-Za-z0-9]{3,12}", fullmatch=True),
    st.text(alphabet="é漢字🙂\u200b\u0301 '\"\\/", min_size=5, max_size=12),
    st.just("x" * 1500),
).filter(_valid)
json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1), st.integers(),  # beyond 64 bits: a float once read
    st.floats(allow_nan=False, allow_infinity=False), st.just(-0.0), st.just(0.0),
    st.text(max_size=30), st.text(min_size=1100, max_size=1300, alphabet="aé漢🙂"),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _audience(kind: str, track: bool) -> AudienceConfig:
    return AudienceConfig(name="VIP", key="vip", kind=kind, schedule=None, send_track_events=track,
                          source=FileSource(path="x.csv"))  # type: ignore[arg-type]


def _reference(builder: OperationBuilder, *args) -> list:
    return [encode(op) for op in builder.translated(*args)]


def _assert_every_route_gives_translate(builder: OperationBuilder, rows: list[tuple]) -> None:
    for row in rows:
        assert builder.build_encoded(*row) == _reference(builder, *row), row


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(settings=st.sampled_from(SETTINGS), has_user=st.booleans(), has_anon=st.booleans(),
       change=st.sampled_from(["enter", "change", "resend", "unset"]),
       users=st.lists(st.tuples(ids, ids, json_values), min_size=1, max_size=12))
def test_every_route_sends_what_translate_gives_for_every_computed_trait_value(
        settings, has_user, has_anon, change, users):
    builder = OperationBuilder(_audience("computed_trait", False), settings, "dest")
    has_user = has_user or not has_anon
    rows = []
    for i, (user, anon, value) in enumerate(users):
        value_json = None if change == "unset" else json.dumps(value, ensure_ascii=False)
        rows.append((f"id{i}", user if has_user else None, anon if has_anon else None, value_json, change, 5))
    kinds = {type(json.loads(r[3])).__name__ for r in rows if r[3] is not None}
    warm_up = [(f"w{k}{i}", "warmuser1" if has_user else None, "warmdevice1" if has_anon else None,
                WARM_UP[k], change, 5) for k in sorted(kinds) for i in range(3)]
    _assert_every_route_gives_translate(builder, warm_up + rows)


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(settings=st.sampled_from(SETTINGS), track=st.booleans(), has_user=st.booleans(), has_anon=st.booleans(),
       change=st.sampled_from(["enter", "exit", "resend"]),
       users=st.lists(st.tuples(ids, ids), min_size=1, max_size=12, unique_by=lambda u: u[0]))
def test_every_route_sends_what_translate_gives_for_every_audience_member(
        settings, track, has_user, has_anon, change, users):
    builder = OperationBuilder(_audience("audience", track), settings, "dest")
    has_user = has_user or not has_anon
    rows = [(f"id{i}", user if has_user else None, anon if has_anon else None,
             None if change == "exit" else "true", change, 5) for i, (user, anon) in enumerate(users)]
    for page in (rows, rows):  # the second time, past the shape's verification window
        bundle = builder.encode_page(page)
        if bundle is not None:
            keys2 = bundle.keys2 or [None] * len(page)
            assert [(bundle.api, *op) for op in zip(bundle.datas, bundle.keys, keys2)] == \
                [op for row in page for op in _reference(builder, *row)]
        _assert_every_route_gives_translate(builder, page)
