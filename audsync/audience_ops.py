"""Operations for one planned audience change, built through the mapping core. Pure.

Every identify goes through `mapping.translate`, so every identify setting applies (set-once,
device id preference, min_id_length, version name ...). Translating ten million messages one by
one is too slow, so translate runs once per *shape* of message (which ids are present, the kind
of value, the change) with sentinel strings in place of the ids, value and message id; the
result is compiled into a template that copies only the parts holding a sentinel. A template
copies a value in as it is, so it serves only values translate sends unchanged (strings,
booleans, 64-bit integers, finite floats) and null (whose template is translated with null);
any other value (an object, a list, NaN...) is translated for its user. The first users of
every shape are also translated for real and compared: a shape whose template disagrees (a
setting that transforms the value, say) falls back to translate for every user.
"""

from __future__ import annotations

import hashlib
import re
from operator import itemgetter
from typing import Any, Callable, Sequence

import orjson

from .config import AmplitudeSettings, AudienceConfig
from .delivery.deliverer import Bundle, Encoded, encode
from .diff import CHANGE, ENTER, EXIT, RESEND, UNSET
from .errors import ValidationError
from .mapping._props import sent_unchanged

ENTERED_EVENT = "Audience Entered"
EXITED_EVENT = "Audience Exited"
_VERIFY_PER_SHAPE = 3

_S_USER = "audsyncsentinel0user7f3b"
_S_ANON = "audsyncsentinel0anon91c4"
_S_VALUE = "audsyncsentinel0value5e2d"
_S_MID = "audsyncsentinel0mid0c88a"
_S_TRACK_MID = "audsyncsentinel0tmid44e1"
_SENTINELS = (_S_USER, _S_ANON, _S_VALUE, _S_MID, _S_TRACK_MID)
_PER_USER = "translate"  # the kind of value of a shape no template serves

Translate = Callable[[dict, AmplitudeSettings], list]


def message_id(destination: str, audience_key: str, identity: str, what: str, run_id: int) -> str:
    """Deterministic: a resend of the same planned change carries the same id (and insert_id),
    so Amplitude drops the duplicate; a later change of the same user gets another one."""
    text = "\x1f".join((destination, audience_key, identity, what, str(run_id)))
    return hashlib.sha1(text.encode()).hexdigest()


def _compile(node: Any) -> Callable[[dict], Any] | str | None:
    """How to rebuild `node` with sentinels replaced: None when it holds none (then the node
    itself is shared between operations: nothing downstream mutates them), the sentinel itself
    when the node is one (its parent copies the value in, without a call), else a function."""
    if isinstance(node, dict):
        leaves, calls = [], []
        for key, child in node.items():
            part = _compile(child)
            if isinstance(part, str):
                leaves.append((key, part))
            elif part is not None:
                calls.append((key, part))
        if not leaves and not calls:
            return None

        # A copy of the node with only the changing keys replaced: keys keep their order.
        def fill_dict(vals: dict, node: dict = node, leaves: list = leaves, calls: list = calls) -> dict:
            copy = node.copy()
            for key, sentinel in leaves:
                copy[key] = vals[sentinel]
            for key, fill in calls:
                copy[key] = fill(vals)
            return copy
        return fill_dict
    if isinstance(node, list):
        parts = [_compile(v) for v in node]
        if all(p is None for p in parts):
            return None
        pairs = list(zip(parts, node))
        return lambda vals: [v if p is None else vals[p] if isinstance(p, str) else p(vals) for p, v in pairs]
    if isinstance(node, str):
        if node in _SENTINELS:
            return node
        if any(s in node for s in _SENTINELS):
            def fill(vals: dict, text: str = node) -> str:
                for s in _SENTINELS:
                    if s in text:
                        text = text.replace(s, str(vals[s]))
                return text
            return fill
    return None


# A sentinel as a whole JSON string in an encoded operation: where the value's own encoding goes.
_QUOTED_SENTINEL = re.compile(b'"(' + b"|".join(re.escape(x.encode()) for x in _SENTINELS) + b')"')


def _encoding_plan(ops: list[dict]) -> list[tuple] | None:
    """How `ops` (holding sentinels) encode for any values: per operation its api, the texts of
    its encoding between the sentinels that are whole strings, the index (in _SENTINELS) of each
    such sentinel, and its lanes: ("v", i) the value itself, ("d", i) the device lane of it, or
    ("k", key) a constant. None when a sentinel sits inside a longer string or a lane is not a
    plain value: such a shape is encoded from its dicts."""
    plan = []
    for op in ops:
        api, data, *keys = encode(op)
        parts = _QUOTED_SENTINEL.split(data)
        texts, slots = parts[0::2], [_SENTINELS.index(p.decode()) for p in parts[1::2]]
        if any(x.encode() in text for text in texts for x in _SENTINELS):
            return None
        lanes = []
        for key in keys:
            if isinstance(key, str) and key in _SENTINELS:
                lanes.append(("v", _SENTINELS.index(key)))
            elif isinstance(key, tuple) and len(key) == 2 and key[0] == "d" and key[1] in _SENTINELS:
                lanes.append(("d", _SENTINELS.index(key[1])))
            elif any(x in repr(key) for x in _SENTINELS):
                return None
            else:
                lanes.append(("k", key))
        plan.append((api, texts, slots, lanes))
    return plan


def _plan_expressions(plan: list[tuple], value: Callable[[int], str], names: dict[str, Any]) -> list[tuple]:
    """Per operation of `plan`: Python expressions of its encoding and of its two lanes, with
    `value(i)` the expression of the i-th sentinel's value; constants go into `names`."""
    exprs = []
    for n, (api, texts, slots, lanes) in enumerate(plan):
        names[f"api{n}"] = api
        pieces = []
        for i, text in enumerate(texts):
            if i:
                pieces.append(f"dumps({value(slots[i - 1])})")
            names[f"t{n}_{i}"] = text
            pieces.append(f"t{n}_{i}")
        lane_exprs = []
        for i, (kind, what) in enumerate(lanes):
            if kind == "v":
                lane_exprs.append(value(what))
            elif kind == "d":
                lane_exprs.append(f"('d', {value(what)})")
            else:
                names[f"k{n}_{i}"] = what
                lane_exprs.append(f"k{n}_{i}")
        exprs.append((f"api{n}", " + ".join(pieces), *lane_exprs))
    return exprs


# Generated, as namedtuple and dataclasses do: one expression per shape, called ten million
# times, where every loop, branch or call would cost each of them.

def _compile_encoded(plan: list[tuple]) -> Callable[[tuple], list[Encoded]]:
    """The operations of `plan` for the values (user, anon, value, mid, track mid)."""
    names: dict[str, Any] = {"dumps": orjson.dumps}
    ops = ", ".join("(" + ", ".join(expr) + ")" for expr in _plan_expressions(plan, lambda i: f"v[{i}]", names))
    return eval(f"lambda v: [{ops}]", names)  # noqa: S307


# Where a pending row (PendingRow's field order) holds the values an encoding can take from it.
_ROW_FIELD = {_SENTINELS.index(_S_USER): 1, _SENTINELS.index(_S_ANON): 2}
_USER, _ANON, _CHANGE = itemgetter(1), itemgetter(2), itemgetter(4)


def _compile_page(plan: list[tuple]) -> Callable[[Sequence[Sequence]], tuple[list, list, list | None]] | None:
    """For a plan of one operation filled from the row's ids alone and whose first lane is the
    row's own: pending rows -> (encodings, lanes, second lanes or None), one comprehension each.
    None for any other plan."""
    if len(plan) != 1 or any(slot not in _ROW_FIELD for slot in plan[0][2]):
        return None
    first, second = plan[0][3]
    # a constant lane would make every row wait for the one before it
    if first[0] == "k" or first[1] not in _ROW_FIELD or (
            second != ("k", None) and (second[0] == "k" or second[1] not in _ROW_FIELD)):
        return None
    names: dict[str, Any] = {"dumps": orjson.dumps}
    _, data, key, key2 = _plan_expressions(plan, lambda i: f"r[{_ROW_FIELD[i]}]", names)[0]
    seconds = "None" if second == ("k", None) else f"[{key2} for r in rows]"
    return eval(f"lambda rows: ([{data} for r in rows], [{key} for r in rows], {seconds})", names)  # noqa: S307


class OperationBuilder:
    """(identity, user_id, anonymous_id, value JSON, change, run_id) -> Amplitude operations."""

    def __init__(self, audience: AudienceConfig, settings: AmplitudeSettings, destination: str,
                 translate: Translate | None = None):
        if translate is None:
            from .mapping import translate as mapping_translate

            translate = mapping_translate
        self.audience = audience
        self.settings = settings
        self.destination = destination
        self.translate = translate
        self.track_events = audience.send_track_events and audience.kind == "audience"
        self._templates: dict[tuple, tuple[Callable[[dict], Any], bool, bool] | str] = {}
        self._verified: dict[tuple, int] = {}
        self._encoders: dict[tuple, tuple[Callable[[tuple], list[Encoded]], bool, bool] | None] = {}
        self._verified_encoded: dict[tuple, int] = {}
        self._page_encoders: dict[tuple, tuple[str, Callable] | None] = {}

    # -- messages as Segment would send them

    def value_of(self, value_json: str | None, change: str) -> Any:
        if self.audience.kind == "audience":
            return change != EXIT
        return None if value_json is None else orjson.loads(value_json)

    def identify_message(self, user_id: str | None, anonymous_id: str | None, value: Any, change: str,
                         mid: str) -> dict:
        traits = {} if change == UNSET else {self.audience.key: value}
        message: dict[str, Any] = {"type": "identify", "traits": traits, "messageId": mid}
        if user_id is not None:
            message["userId"] = user_id
        if anonymous_id is not None:
            message["anonymousId"] = anonymous_id
        return message

    def track_message(self, user_id: str | None, anonymous_id: str | None, change: str, mid: str) -> dict:
        message: dict[str, Any] = {
            "type": "track", "event": ENTERED_EVENT if change == ENTER else EXITED_EVENT, "messageId": mid,
            "properties": {"audience_key": self.audience.key, "audience_name": self.audience.name},
        }
        if user_id is not None:
            message["userId"] = user_id
        if anonymous_id is not None:
            message["anonymousId"] = anonymous_id
        return message

    def _identify_ops(self, message: dict, change: str) -> list:
        ops = self.translate(message, self.settings)
        if change == UNSET:
            # A Segment identify cannot remove a trait: its traits can only set values. Amplitude's
            # $unset does, so the identify translated with no traits (every other setting applied)
            # gets user_properties = {"$unset": {key: "-"}}, an absolute operation safe to resend.
            for op in ops:
                body = op.get("body", {})
                if op.get("api") == "identify" or body.get("event_type") == "$identify":
                    body["user_properties"] = {"$unset": {self.audience.key: "-"}}
        return ops

    def translated(self, identity: str, user_id: str | None, anonymous_id: str | None,
                   value_json: str | None, change: str, run_id: int) -> list:
        """The operations by translating every message (the reference the templates must match)."""
        value = self.value_of(value_json, change)
        mid = message_id(self.destination, self.audience.key, identity, f"identify:{change}", run_id)
        ops = self._identify_ops(self.identify_message(user_id, anonymous_id, value, change, mid), change)
        if self.track_events and change in (ENTER, EXIT):
            mid = message_id(self.destination, self.audience.key, identity, f"track:{change}", run_id)
            ops = ops + self.translate(self.track_message(user_id, anonymous_id, change, mid), self.settings)
        return ops

    # -- templates

    def _template(self, shape: tuple) -> tuple[Callable[[dict], Any], bool, bool] | str:
        """The compiled template of a shape, and whether it holds the identify's and the track's
        message ids: Amplitude's /identify has no insert_id, so most users need no hash at all."""
        has_user, has_anon, vtype, change = shape
        user = _S_USER if has_user else None
        anon = _S_ANON if has_anon else None
        if self.audience.kind == "audience":
            value: Any = change != EXIT
        elif vtype == _PER_USER:
            return "translate"
        else:
            value = None if change == UNSET or vtype is type(None) else _S_VALUE
        try:
            ops = self._identify_ops(self.identify_message(user, anon, value, change, _S_MID), change)
            if self.track_events and change in (ENTER, EXIT):
                ops = ops + self.translate(self.track_message(user, anon, change, _S_TRACK_MID), self.settings)
        except ValidationError:
            return "translate"  # this shape only works with real values: translate each user
        compiled = _compile(ops)  # a list: never a bare sentinel
        encoded = orjson.dumps(ops).decode()
        return (compiled if callable(compiled) else (lambda vals: ops),
                _S_MID in encoded, _S_TRACK_MID in encoded)

    def _plan(self, shape: tuple) -> tuple[list[tuple], bool, bool] | None:
        """The encoding plan of a shape's operations (see _encoding_plan), and whether they hold
        the message ids; None when the shape's operations are encoded from their dicts."""
        template = self._template_of(shape)
        if template == "translate":
            return None
        fill, needs_mid, needs_track_mid = template
        plan = _encoding_plan(fill({s: s for s in _SENTINELS}))
        return None if plan is None else (plan, needs_mid, needs_track_mid)

    def _encoder(self, shape: tuple) -> tuple[Callable[[tuple], list[Encoded]], bool, bool] | None:
        planned = self._plan(shape)
        if planned is None:
            return None
        plan, needs_mid, needs_track_mid = planned
        return _compile_encoded(plan), needs_mid, needs_track_mid

    def _page_encoder(self, shape: tuple) -> tuple[str, Callable] | None:
        planned = self._plan(shape)
        if planned is None or planned[1] or planned[2]:
            return None
        encode_rows = _compile_page(planned[0])
        return None if encode_rows is None else (planned[0][0][0], encode_rows)

    def encode_page(self, rows: Sequence[Sequence]) -> Bundle | None:
        """A page of pending rows (PendingRow's field order, distinct identities) as one Bundle:
        when every row has the same shape and it makes one operation filled from the ids alone
        (an audience's identify, the case that reaches ten million users). None otherwise: the
        caller builds the rows one by one."""
        if self.audience.kind != "audience" or not rows:
            return None
        # column by column in C (a tuple per row for a set of shapes cost a third of the encoding)
        n = len(rows)
        changes = set(map(_CHANGE, rows))
        users, anons = list(map(_USER, rows)).count(None), list(map(_ANON, rows)).count(None)
        if len(changes) != 1 or users not in (0, n) or anons not in (0, n):
            return None
        shape = (users == 0, anons == 0, None, changes.pop())
        encoder = self._page_encoders.get(shape, False)
        if encoder is False:
            encoder = self._page_encoders[shape] = self._page_encoder(shape)
        if encoder is None:
            return None
        api, encode_rows = encoder
        datas, keys, keys2 = encode_rows(rows)
        # The page's first rows through the one-by-one path, which checks every shape's first
        # users against translate: a disagreement turns the page encoding off for the shape.
        # A row the mapping refuses leaves the page to the one-by-one path, which rejects it.
        for i, row in enumerate(rows[:_VERIFY_PER_SHAPE]):
            try:
                one_by_one = self.build_encoded(*row)
            except ValidationError:
                return None
            if one_by_one != [(api, datas[i], keys[i], None if keys2 is None else keys2[i])]:
                self._page_encoders[shape] = None
                return None
        return Bundle([r[0] for r in rows], api, datas, keys, keys2)

    def build_encoded(self, identity: str, user_id: str | None, anonymous_id: str | None,
                      value_json: str | None, change: str, run_id: int) -> list[Encoded]:
        """build()'s operations, encoded for the Deliverer: the delivery loop's hot path."""
        value, shape = self._shape(user_id, anonymous_id, value_json, change)
        encoder = self._encoders.get(shape, False)
        if encoder is False:
            encoder = self._encoders[shape] = self._encoder(shape)
        if encoder is None:
            return [encode(op) for op in self.build(identity, user_id, anonymous_id, value_json, change, run_id)]
        encode_all, needs_mid, needs_track_mid = encoder
        # in _SENTINELS' order; most shapes hold no message id (a call here costs 0.15 us a user)
        vals = ((user_id, anonymous_id, value, None, None) if not (needs_mid or needs_track_mid) else
                (user_id, anonymous_id, value, *self._message_ids(identity, change, run_id, needs_mid,
                                                                  needs_track_mid)))
        ops = encode_all(vals)
        seen = self._verified_encoded.get(shape, 0)
        if seen < _VERIFY_PER_SHAPE:
            self._verified_encoded[shape] = seen + 1
            reference = [encode(op) for op in self.translated(identity, user_id, anonymous_id, value_json,
                                                             change, run_id)]
            if ops != reference:
                self._encoders[shape] = None
                return reference
        return ops

    def _template_of(self, shape: tuple) -> tuple[Callable[[dict], Any], bool, bool] | str:
        template = self._templates.get(shape)
        if template is None:
            template = self._templates[shape] = self._template(shape)
        return template

    def _message_ids(self, identity: str, change: str, run_id: int, identify: bool,
                     track: bool) -> tuple[str | None, str | None]:
        """The identify's and the track event's message ids, each only when its template holds it."""
        return (message_id(self.destination, self.audience.key, identity, f"identify:{change}", run_id)
                if identify else None,
                message_id(self.destination, self.audience.key, identity, f"track:{change}", run_id)
                if track else None)

    def _shape(self, user_id: str | None, anonymous_id: str | None, value_json: str | None,
               change: str) -> tuple[Any, tuple]:
        """The value to send, and the shape of the message: what its template depends on."""
        if self.audience.kind == "audience":
            return change != EXIT, (user_id is not None, anonymous_id is not None, None, change)
        value = None if value_json is None else orjson.loads(value_json)
        vtype = value.__class__
        if not (vtype is str or vtype is bool or value is None or sent_unchanged(value)):  # no call for most
            vtype = _PER_USER
        return value, (user_id is not None, anonymous_id is not None, vtype, change)

    def build(self, identity: str, user_id: str | None, anonymous_id: str | None, value_json: str | None,
              change: str, run_id: int) -> list:
        """Operations for one planned change; raises ValidationError for a user the mapping refuses."""
        value, shape = self._shape(user_id, anonymous_id, value_json, change)
        template = self._template_of(shape)
        if template == "translate":
            return self.translated(identity, user_id, anonymous_id, value_json, change, run_id)
        fill, needs_mid, needs_track_mid = template
        mid, track_mid = self._message_ids(identity, change, run_id, needs_mid, needs_track_mid)
        ops = fill({_S_USER: user_id, _S_ANON: anonymous_id, _S_VALUE: value, _S_MID: mid, _S_TRACK_MID: track_mid})
        seen = self._verified.get(shape, 0)
        if seen < _VERIFY_PER_SHAPE:
            self._verified[shape] = seen + 1
            reference = self.translated(identity, user_id, anonymous_id, value_json, change, run_id)
            if ops != reference:
                self._templates[shape] = "translate"
                return reference
        return ops


__all__ = ["OperationBuilder", "message_id", "ENTERED_EVENT", "EXITED_EVENT", "RESEND", "CHANGE"]
