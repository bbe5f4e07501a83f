"""OneBot v11 wire format: event parsing, CQ codes, segments, signatures.

No I/O here; the server and clients in bot.transport use these functions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# How long a message's key is remembered. Message ids are 32-bit hashes that
# repeat over months, so a key names one delivery: account, chat, sender, id
# and the event's `time`. Implementations redeliver within seconds (HTTP
# retries, a reconnect); two days is ample. An event without `time` can only
# be told apart by its id, so its key lasts a short window.
MESSAGE_KEY_TTL = timedelta(days=2)
REDELIVERY_WINDOW = timedelta(minutes=10)


class EventError(ValueError):
    """An event that is not valid OneBot v11: answered with 400 and logged."""


@dataclass(frozen=True)
class Segment:
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class FileRef:
    file_id: str
    name: str
    size: int | None = None
    busid: int | None = None
    url: str | None = None


@dataclass
class Event:
    """A parsed event, the same for every transport (OneBot or sandbox)."""

    post_type: str  # message / notice / meta_event / request / message_sent
    self_id: int
    chat_type: str | None = None  # group / private
    group_id: int | None = None
    user_id: int = 0
    message_id: int | None = None
    segments: list[Segment] = field(default_factory=list)
    sender_name: str = ""
    notice_type: str | None = None
    file: FileRef | None = None
    time: int | None = None  # the implementation's event time (Unix seconds)
    key: str | None = None  # the dedupe key, None for events with no effects
    key_ttl: timedelta | None = None  # how long the key is remembered; None: for ever

    @property
    def chat_id(self) -> int:
        return (
            self.group_id
            if self.chat_type == "group" and self.group_id is not None
            else self.user_id
        )


# ---------------------------------------------------------------- CQ codes

_CQ = re.compile(r"\[CQ:([A-Za-z0-9_.\-]+)((?:,[^\[\]]*)?)\]")


def cq_unescape(text: str, in_param: bool = False) -> str:
    text = text.replace("&#91;", "[").replace("&#93;", "]")
    if in_param:
        text = text.replace("&#44;", ",")
    return text.replace("&amp;", "&")


def cq_escape(text: str, in_param: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("[", "&#91;").replace("]", "&#93;")
    return text.replace(",", "&#44;") if in_param else text


def parse_cq_string(message: str) -> list[Segment]:
    """A CQ-code string into segments; escaped brackets become plain text."""
    segments: list[Segment] = []
    pos = 0
    for m in _CQ.finditer(message):
        if m.start() > pos:
            segments.append(Segment("text", {"text": cq_unescape(message[pos : m.start()])}))
        data: dict[str, Any] = {}
        for pair in m.group(2).split(",")[1:]:
            k, _, v = pair.partition("=")
            if k:
                data[k] = cq_unescape(v, in_param=True)
        segments.append(Segment(m.group(1), data))
        pos = m.end()
    if pos < len(message):
        segments.append(Segment("text", {"text": cq_unescape(message[pos:])}))
    return segments


def parse_message(message: Any) -> list[Segment]:
    """Either message form into segments; malformed segments are skipped."""
    if isinstance(message, str):
        return parse_cq_string(message)
    if not isinstance(message, list):
        raise EventError("message must be a string or an array of segments")
    out: list[Segment] = []
    for seg in message:
        if not isinstance(seg, dict) or not isinstance(seg.get("type"), str):
            continue
        data = seg.get("data")
        data = data if isinstance(data, dict) else {}
        if seg["type"] == "text" and not isinstance(data.get("text"), str):
            continue
        out.append(Segment(seg["type"], data))
    return out


def to_cq_string(segments: list[dict]) -> str:
    """Segments as an escaped CQ string (for logs and transports that need strings)."""
    out = []
    for seg in segments:
        if seg["type"] == "text":
            out.append(cq_escape(seg["data"]["text"]))
        else:
            params = "".join(f",{k}={cq_escape(str(v), True)}" for k, v in seg["data"].items())
            out.append(f"[CQ:{seg['type']}{params}]")
    return "".join(out)


# ---------------------------------------------------------------- outgoing segments


def text_segment(text: str) -> dict:
    # In array form a text segment is literal: CQ-looking user text stays inert.
    return {"type": "text", "data": {"text": text}}


def at_segment(user_id: int) -> dict:
    return {"type": "at", "data": {"qq": str(int(user_id))}}


# ---------------------------------------------------------------- decoding

# A lone surrogate or a NUL can only come from a \uD800- or \u0000-style escape in the
# JSON text (json.loads refuses raw control characters in strings).
_ESCAPED_BAD = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode(raw: bytes | str) -> Any:
    """A JSON frame or body as it arrived on any transport.

    Bad JSON, invalid UTF-8 and nesting too deep for the parser raise
    EventError (HTTP answers 400, a WebSocket skips the frame and stays open).
    Lone surrogates (`"\\ud800"`), which no database or encoder accepts, are
    replaced with U+FFFD everywhere in the payload, and NUL characters (which
    PostgreSQL text cannot hold) are removed.
    """
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EventError("malformed JSON") from None
    except RecursionError:
        raise EventError("JSON nested too deeply") from None
    as_bytes = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    if _ESCAPED_BAD.search(as_bytes):
        payload = _cleaned(payload)
    return payload


def _clean(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text).replace("\x00", "")


def _cleaned(payload: Any) -> Any:
    """Iterative, so a payload as deep as json.loads accepts cannot overflow the stack."""
    if isinstance(payload, str):
        return _clean(payload)
    stack = [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in [k for k in node if _clean(k) != k]:
                node[_clean(key)] = node.pop(key)
            pairs = node.items()
        elif isinstance(node, list):
            pairs = enumerate(node)
        else:
            continue
        for key, value in list(pairs):
            if isinstance(value, str):
                node[key] = _clean(value)
            elif isinstance(value, dict | list):
                stack.append(value)
    return payload


# ---------------------------------------------------------------- events


_ID = re.compile(r"-?[0-9]+")


def parse_id(value: Any, *, signed: bool = False) -> int | None:
    """An id as OneBot sends it: an integer or a string of ASCII digits, within
    64 bits; only message ids may be negative. None for anything else: a float
    (10001.9), "1_0001", " 10001 " or "１０００１" are not ids."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and _ID.fullmatch(value):
        n = int(value)
    else:
        return None
    if not (INT64_MIN if signed else 0) <= n <= INT64_MAX:
        return None
    return n


def _int(value: Any, name: str, required: bool = True, signed: bool = False) -> int | None:
    if value is None and not required:
        return None
    n = parse_id(value, signed=signed)
    if n is None:
        raise EventError(f"{name} must be an integer or a string of digits")
    return n


def _file_from_segment(seg: Segment) -> FileRef | None:
    d = seg.data
    file_id = d.get("file_id") or d.get("id") or d.get("file")
    name = d.get("name") or d.get("file") or ""
    if not isinstance(file_id, str) or not isinstance(name, str) or not name:
        return None
    size = d.get("file_size", d.get("size"))
    try:
        size = int(size) if size is not None else None
    except (TypeError, ValueError):
        size = None
    url = d.get("url") if isinstance(d.get("url"), str) else None
    return FileRef(file_id=file_id, name=name, size=size, url=url)


def parse_event(payload: Any, self_id_header: str | None = None) -> Event:
    """Validate and normalise one OneBot v11 event."""
    if not isinstance(payload, dict):
        raise EventError("event must be a JSON object")
    post_type = payload.get("post_type")
    if not isinstance(post_type, str):
        raise EventError("post_type missing")
    self_id = _int(payload.get("self_id", self_id_header), "self_id")
    event = Event(post_type=post_type, self_id=self_id)
    if post_type in ("message", "message_sent"):
        chat_type = payload.get("message_type")
        if chat_type not in ("group", "private"):
            raise EventError("message_type must be group or private")
        event.chat_type = chat_type
        event.user_id = _int(payload.get("user_id"), "user_id")
        event.message_id = _int(payload.get("message_id"), "message_id", signed=True)
        if chat_type == "group":
            event.group_id = _int(payload.get("group_id"), "group_id")
        if "message" not in payload:
            raise EventError("message missing")
        event.segments = parse_message(payload["message"])
        sender = payload.get("sender") if isinstance(payload.get("sender"), dict) else {}
        name = sender.get("card") or sender.get("nickname") or ""
        event.sender_name = name if isinstance(name, str) else ""
        event.time = parse_id(payload.get("time"))
        where = f"msg:{self_id}:{chat_type}:{event.chat_id}:{event.user_id}:{event.message_id}"
        if event.time is None:
            event.key, event.key_ttl = where, REDELIVERY_WINDOW
        else:
            event.key, event.key_ttl = f"{where}:{event.time}", MESSAGE_KEY_TTL
        files = [
            f for f in (_file_from_segment(s) for s in event.segments if s.type == "file") if f
        ]
        if files:
            event.file = files[0]
            # NapCat reports a group file twice (message + group_upload): one key for both.
            event.key, event.key_ttl = f"file:{self_id}:{event.chat_id}:{files[0].file_id}", None
    elif post_type == "notice":
        event.notice_type = (
            payload.get("notice_type") if isinstance(payload.get("notice_type"), str) else ""
        )
        event.user_id = _int(payload.get("user_id", 0), "user_id")
        event.group_id = _int(payload.get("group_id"), "group_id", required=False)
        if event.group_id is not None:
            event.chat_type = "group"
        if event.notice_type in ("group_upload", "offline_file"):
            f = payload.get("file")
            if not isinstance(f, dict):
                raise EventError("file missing in upload notice")
            ref = _file_from_segment(Segment("file", f))
            if ref is None:
                raise EventError("file id or name missing in upload notice")
            busid = f.get("busid")
            event.file = FileRef(
                ref.file_id, ref.name, ref.size, _int(busid, "busid", required=False), ref.url
            )
            if event.notice_type == "offline_file":
                event.chat_type = "private"
            event.key = f"file:{self_id}:{event.chat_id}:{ref.file_id}"
    return event


# ---------------------------------------------------------------- auth


def token_matches(expected: str, given: str) -> bool:
    """Constant-time comparison: the time taken says nothing about the token."""
    return hmac.compare_digest(expected.encode(), given.encode())


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha1="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return hmac.compare_digest(expected, header[5:].strip().lower())


def sign(secret: str, body: bytes) -> str:
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def token_from(headers: Any, query: Any) -> str | None:
    """The access token as go-cqhttp (Token), NapCat/Lagrange (Bearer) or a query string sends it."""
    auth = headers.get("Authorization", "")
    for scheme in ("Bearer ", "Token ", "bearer ", "token "):
        if auth.startswith(scheme):
            return auth[len(scheme) :].strip()
    return query.get("access_token")
