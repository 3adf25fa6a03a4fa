"""Operations for one planned audience change, built through the mapping core. Pure.

The reference is `translated`: it writes the Segment messages a change stands for (an identify,
and for an audience with track events an "Audience Entered" / "Audience Exited" track) and
translates them with `mapping.translate`, so every setting applies (set-once, device id
preference, version name, the batch endpoint ...).

Translating every user of a ten-million-member audience is too slow, so there is one fast path: a
template per *shape* of message (which ids are present, the kind of value, the change). For a
shape, translate runs once on a message holding placeholders (strings no real value is) where the
ids, the value and the message ids go; its encoded operations, cut at the placeholders, are the
template's constant pieces. A user's operations are those pieces joined by the encodings of their
own values: `encode_page` fills the template for a whole page of the outbox at once (by column),
`build_encoded` for one user.

What keeps the template equal to translate:
- it copies a value in as it is, so it serves only values translate sends unchanged
  (`sent_unchanged`: strings, booleans, 64-bit integers, finite floats) and null, whose template is
  translated with null; any other value (an object, a list ...) is translated for its user;
- a placeholder that translate did not keep whole (one inside a longer string, or one it
  changed) leaves the shape to translate;
- the first users of every shape are translated as well and compared: a shape whose template
  disagrees (a setting that transforms the value, say) is translated for every user.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from operator import itemgetter
from typing import Any, Callable, NamedTuple, Sequence

import orjson

from .config import AmplitudeSettings, AudienceConfig
from .delivery.deliverer import Bundle, Encoded, encode
from .diff import ENTER, EXIT, UNSET
from .errors import ValidationError
from .mapping._props import sent_unchanged

ENTERED_EVENT = "Audience Entered"
EXITED_EVENT = "Audience Exited"
_VERIFY_PER_SHAPE = 3
_PER_USER = "translated for each user"  # the kind of a value no template serves

Translate = Callable[[dict, AmplitudeSettings], list]


def message_id(destination: str, audience_key: str, identity: str, what: str, run_id: int) -> str:
    """Deterministic: a resend of the same planned change carries the same id (and insert_id),
    so Amplitude drops the duplicate; a later change of the same user gets another one."""
    text = "\x1f".join((destination, audience_key, identity, what, str(run_id)))
    return hashlib.sha1(text.encode()).hexdigest()


# A user's values, in this order, fill a template: ids, the value, the identify's and the track's
# message ids. A placeholder stands for each while a template is made.
USER, ANON, VALUE, MID, TRACK_MID = range(5)
_PLACEHOLDERS = ("audsync-placeholder-user-7f3b", "audsync-placeholder-anon-91c4",
                 "audsync-placeholder-value-5e2d", "audsync-placeholder-mid-0c88",
                 "audsync-placeholder-track-mid-44e1")
_QUOTED_PLACEHOLDER = re.compile(b'"(' + b"|".join(re.escape(p.encode()) for p in _PLACEHOLDERS) + b')"')

# Where a pending row (PendingRow's field order: identity, user_id, anonymous_id, value, change,
# run_id) holds what encode_page reads by column.
_ROW_IDENTITY, _ROW_USER, _ROW_ANON, _ROW_CHANGE = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(4)


class Lane(NamedTuple):
    """A lane key of a template's operation (see delivery.deliverer.lanes_of): the user's value
    numbered `slot` (as a device lane when `device`), or `constant` when no slot."""

    slot: int | None
    device: bool = False
    constant: Any = None

    def getter(self) -> Callable[[Sequence], Any]:
        """values -> this lane's key."""
        if self.slot is None:
            constant = self.constant
            return lambda values: constant
        if self.device:
            slot = self.slot
            return lambda values: ("d", values[slot])
        return itemgetter(self.slot)

    def column(self, columns: list[list], n: int) -> list:
        """This lane's keys of n users whose values come by column."""
        if self.slot is None:
            return [self.constant] * n
        column = columns[self.slot]
        return [("d", value) for value in column] if self.device else column


_NO_LANE = Lane(None)


def _lane(key: Any) -> Lane | None:
    """The Lane of a lane key holding placeholders; None when a placeholder sits where no value
    can be copied in."""
    if key in _PLACEHOLDERS:
        return Lane(_PLACEHOLDERS.index(key))
    if isinstance(key, tuple) and len(key) == 2 and key[0] == "d" and key[1] in _PLACEHOLDERS:
        return Lane(_PLACEHOLDERS.index(key[1]), device=True)
    if any(p in repr(key) for p in _PLACEHOLDERS):
        return None
    return Lane(None, constant=key)


# Filling a template is the work done per user, ten million times for a large audience: the
# fillers below are written out for the usual one or two values (plain concatenation, no loop,
# no call but orjson's), and a bytes format (`%b` per value) serves any other count.

def _row_encoder(api: str, pieces: list[bytes], holes: tuple[int, ...], lane: Lane,
                 lane2: Lane) -> Callable[[Sequence], Encoded]:
    """values (in slot order) -> the Encoded operation: `pieces` with the encoding of
    values[holes[i]] between pieces i and i + 1, and the lanes' keys."""
    dumps, key, key2 = orjson.dumps, lane.getter(), lane2.getter()
    if len(holes) == 1:
        (head, tail), (i,) = pieces, holes
        if lane2 == _NO_LANE:  # an audience's identify by user id or by device alone
            return lambda values: (api, head + dumps(values[i]) + tail, key(values), None)
        return lambda values: (api, head + dumps(values[i]) + tail, key(values), key2(values))
    if len(holes) == 2:
        (head, middle, tail), (i, j) = pieces, holes
        if lane2 == _NO_LANE:  # a computed trait's identify by user id or by device alone
            return lambda values: (api, head + dumps(values[i]) + middle + dumps(values[j]) + tail,
                                   key(values), None)
        return lambda values: (api, head + dumps(values[i]) + middle + dumps(values[j]) + tail,
                               key(values), key2(values))
    form = b"%b".join(piece.replace(b"%", b"%%") for piece in pieces)
    return lambda values: (api, form % tuple(map(dumps, map(values.__getitem__, holes))),
                           key(values), key2(values))


def _column_filler(pieces: list[bytes]) -> Callable[[list[list]], list[bytes]]:
    """Columns of values (one per hole) -> the encoded bodies of their users, row by row."""
    dumps = orjson.dumps
    if len(pieces) == 2:
        head, tail = pieces
        return lambda columns: [head + x + tail for x in map(dumps, columns[0])]
    if len(pieces) == 3:
        head, middle, tail = pieces
        return lambda columns: [head + x + middle + y + tail
                                for x, y in zip(map(dumps, columns[0]), map(dumps, columns[1]))]
    form = b"%b".join(piece.replace(b"%", b"%%") for piece in pieces)
    return lambda columns: [form % values for values in zip(*[map(dumps, column) for column in columns])]


class TemplateOp:
    """One operation of a template: its encoded body is `pieces` with the encodings of the
    user's values numbered in `holes` between them; its lanes are `lane` and `lane2`."""

    __slots__ = ("api", "pieces", "holes", "lane", "lane2", "encode", "bodies")

    def __init__(self, api: str, pieces: list[bytes], holes: tuple[int, ...], lane: Lane, lane2: Lane):
        self.api, self.pieces, self.holes, self.lane, self.lane2 = api, pieces, holes, lane, lane2
        # values (in slot order) -> the Encoded operation of one user
        self.encode: Callable[[Sequence], Encoded] = _row_encoder(api, pieces, holes, lane, lane2)
        # columns of values, one per hole -> the encoded bodies of their users
        self.bodies: Callable[[list[list]], list[bytes]] = _column_filler(pieces)


class Template:
    """A shape's operations, and which message ids they hold (most hold none: Amplitude's
    /identify has no insert_id, so most users need no hash)."""

    __slots__ = ("ops", "mid", "track_mid", "encode")

    def __init__(self, ops: tuple[TemplateOp, ...]):
        self.ops = ops
        self.mid = any(MID in op.holes for op in ops)  # the identify's
        self.track_mid = any(TRACK_MID in op.holes for op in ops)  # the track event's
        # values -> the Encoded operations of one user (a comprehension would be a call more)
        self.encode: Callable[[Sequence], list[Encoded]]
        if len(ops) == 1:
            (first,) = (op.encode for op in ops)
            self.encode = lambda values: [first(values)]
        elif len(ops) == 2:
            first, second = (op.encode for op in ops)
            self.encode = lambda values: [first(values), second(values)]
        else:
            encoders = [op.encode for op in ops]
            self.encode = lambda values: [encode_op(values) for encode_op in encoders]


def _template_op(operation: dict) -> TemplateOp | None:
    """`operation` (holding placeholders) as a TemplateOp; None when a placeholder is not a whole
    JSON string of its encoding or not a plain lane."""
    api, data, key, key2 = encode(operation)
    parts = _QUOTED_PLACEHOLDER.split(data)
    pieces, holes = parts[0::2], tuple(_PLACEHOLDERS.index(p.decode()) for p in parts[1::2])
    if any(p.encode() in piece for piece in pieces for p in _PLACEHOLDERS):
        return None
    lane, lane2 = _lane(key), _lane(key2)
    if lane is None or lane2 is None:
        return None
    return TemplateOp(api, pieces, holes, lane, lane2)


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
        self._audience = audience.kind == "audience"  # else a computed trait
        self.track_events = audience.send_track_events and self._audience
        # per shape: its template, or None when the shape is translated for every user
        self._templates: dict[tuple, Template | None] = {}
        self._verified: Counter = Counter()  # per shape: users compared with translate

    # -- messages as Segment would send them

    def value_of(self, value_json: str | None, change: str) -> Any:
        if self._audience:
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
        """Engage's audience event: `audience_key` and the audience's key set to whether the user
        is in it (engage-audiences.md section 5); `audience_name` for people reading Amplitude."""
        key = self.audience.key
        properties: dict[str, Any] = {"audience_key": key, key: change != EXIT}
        properties.setdefault("audience_name", self.audience.name)
        message: dict[str, Any] = {"type": "track", "event": ENTERED_EVENT if change == ENTER else EXITED_EVENT,
                                   "messageId": mid, "properties": properties}
        if user_id is not None:
            message["userId"] = user_id
        if anonymous_id is not None:
            message["anonymousId"] = anonymous_id
        return message

    def _operations(self, user_id: str | None, anonymous_id: str | None, value: Any, change: str,
                    mid: str | None, track_mid: str | None) -> list:
        """The operations of one change, by translating its messages: real values make the
        reference, placeholders a template."""
        ops = self.translate(self.identify_message(user_id, anonymous_id, value, change, mid), self.settings)
        if change == UNSET:
            # A Segment identify cannot remove a trait: its traits can only set values. Amplitude's
            # $unset does, so the identify translated with no traits (every other setting applied)
            # gets user_properties = {"$unset": {key: "-"}}, an absolute operation safe to resend.
            for op in ops:
                body = op.get("body", {})
                if op.get("api") == "identify" or body.get("event_type") == "$identify":
                    body["user_properties"] = {"$unset": {self.audience.key: "-"}}
        if self.track_events and change in (ENTER, EXIT):
            ops = ops + self.translate(self.track_message(user_id, anonymous_id, change, track_mid),
                                       self.settings)
        return ops

    def _message_ids(self, identity: str, change: str, run_id: int) -> tuple[str, str]:
        """The identify's and the track event's message ids."""
        return (message_id(self.destination, self.audience.key, identity, f"identify:{change}", run_id),
                message_id(self.destination, self.audience.key, identity, f"track:{change}", run_id))

    def translated(self, identity: str, user_id: str | None, anonymous_id: str | None,
                   value_json: str | None, change: str, run_id: int) -> list:
        """The operations by translating every message: the reference the template must match.
        Raises ValidationError for a user the mapping refuses."""
        value = self.value_of(value_json, change)
        return self._operations(user_id, anonymous_id, value, change, *self._message_ids(identity, change, run_id))

    # -- the fast path

    def _value_and_shape(self, user_id: str | None, anonymous_id: str | None, value_json: str | None,
                         change: str) -> tuple[Any, tuple]:
        """The value to send, and the shape of the message: what a template depends on (the ids
        present, the kind of value, the change)."""
        if self._audience:
            return change != EXIT, (user_id is not None, anonymous_id is not None, None, change)
        value = None if value_json is None else orjson.loads(value_json)
        kind = value.__class__
        if not (kind is str or kind is bool or value is None or sent_unchanged(value)):  # no call for most
            kind = _PER_USER
        return value, (user_id is not None, anonymous_id is not None, kind, change)

    def _template(self, shape: tuple) -> Template | None:
        template = self._templates.get(shape, False)
        if template is False:
            template = self._templates[shape] = self._make_template(shape)
        return template

    def _make_template(self, shape: tuple) -> Template | None:
        has_user, has_anon, kind, change = shape
        if kind == _PER_USER:
            return None
        if self._audience:
            value: Any = change != EXIT
        else:
            value = None if change == UNSET or kind is type(None) else _PLACEHOLDERS[VALUE]
        try:
            ops = self._operations(_PLACEHOLDERS[USER] if has_user else None,
                                   _PLACEHOLDERS[ANON] if has_anon else None, value, change,
                                   _PLACEHOLDERS[MID], _PLACEHOLDERS[TRACK_MID])
        except ValidationError:
            return None  # this shape only works with real values: translate each user
        template = tuple(_template_op(op) for op in ops)
        if None in template:
            return None
        return Template(template)

    def _check(self, shape: tuple, encoded: list[Encoded], row: Sequence) -> list[Encoded]:
        """Compares one of a shape's first users with translate; a disagreement turns the shape's
        template off. Returns what translate gives (raises ValidationError when it refuses)."""
        self._verified[shape] += 1
        reference = [encode(op) for op in self.translated(*row)]
        if encoded != reference:
            self._templates[shape] = None
        return reference

    def build_encoded(self, identity: str, user_id: str | None, anonymous_id: str | None,
                      value_json: str | None, change: str, run_id: int) -> list[Encoded]:
        """The operations of one change, encoded for the Deliverer; raises ValidationError for a
        user the mapping refuses."""
        if self._audience:  # _value_and_shape, inlined for the common case
            value: Any = change != EXIT
            shape: tuple = (user_id is not None, anonymous_id is not None, None, change)
        else:
            value, shape = self._value_and_shape(user_id, anonymous_id, value_json, change)
        template = self._templates.get(shape, False)
        if template is False:
            template = self._template(shape)
        if template is None:
            return [encode(op) for op in self.translated(identity, user_id, anonymous_id, value_json, change, run_id)]
        mid = track_mid = None
        if template.mid:
            mid = message_id(self.destination, self.audience.key, identity, f"identify:{change}", run_id)
        if template.track_mid:
            track_mid = message_id(self.destination, self.audience.key, identity, f"track:{change}", run_id)
        values = (user_id, anonymous_id, value, mid, track_mid)
        encoded = template.encode(values)
        if self._verified[shape] < _VERIFY_PER_SHAPE:
            return self._check(shape, encoded, (identity, user_id, anonymous_id, value_json, change, run_id))
        return encoded

    def encode_page(self, rows: Sequence[Sequence]) -> Bundle | None:
        """A page of pending rows (PendingRow's field order, distinct identities) as one Bundle,
        when every row has one shape of an audience whose template is one operation waiting in
        lanes of the row's own (the case of a large audience's identifies). None otherwise: the
        caller builds the rows one by one."""
        if not self._audience or not rows:
            return None
        n = len(rows)
        users, anons = list(map(_ROW_USER, rows)), list(map(_ROW_ANON, rows))
        changes = set(map(_ROW_CHANGE, rows))
        missing_users, missing_anons = users.count(None), anons.count(None)
        if len(changes) != 1 or missing_users not in (0, n) or missing_anons not in (0, n):
            return None
        change = changes.pop()
        _, shape = self._value_and_shape(users[0], anons[0], None, change)
        template = self._template(shape)
        if template is None or len(template.ops) != 1:
            return None
        (op,) = template.ops
        ids = (USER, ANON)  # what a page's rows give by column
        if not op.holes or any(hole not in ids for hole in op.holes):
            return None  # filled with a message id: hashed per user anyway
        if op.lane.slot not in ids or (op.lane2.slot not in ids and op.lane2 != _NO_LANE):
            return None  # a constant lane would make every row wait for the one before it
        # The ids by column, each encoded by one map in C: the users' own part of the work.
        columns = [users, anons]
        datas = op.bodies([columns[i] for i in op.holes])
        keys = op.lane.column(columns, n)
        keys2 = None if op.lane2 == _NO_LANE else op.lane2.column(columns, n)
        for i in range(min(n, _VERIFY_PER_SHAPE - self._verified[shape])):
            page_op = (op.api, datas[i], keys[i], None if keys2 is None else keys2[i])
            try:
                self._check(shape, [page_op], rows[i])
            except ValidationError:
                return None  # the one-by-one path rejects the row
            if self._templates[shape] is None:
                return None
        return Bundle(list(map(_ROW_IDENTITY, rows)), op.api, datas, keys, keys2)


__all__ = ["OperationBuilder", "message_id", "ENTERED_EVENT", "EXITED_EVENT"]
