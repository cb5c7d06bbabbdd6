"""The NATS client protocol, sans-IO: bytes in, events out; commands to bytes.

Theory. NATS is a line protocol. Every operation is a control line ended by
CRLF (``PING``, ``+OK``, ``INFO {json}``), and two server operations carry a
payload after their control line: ``MSG <subject> <sid> [reply] <size>`` and,
with headers, ``HMSG <subject> <sid> [reply] <header size> <total size>``,
whose payload starts with a header block (``NATS/1.0[ status[ text]]``, then
``Name: value`` lines, then an empty line). The payload is followed by CRLF.

:class:`Parser` keeps whatever it has not parsed yet, so bytes may arrive split
at any boundary; :meth:`Parser.feed` returns the events that are complete. It
enforces two limits, so a broken or hostile peer cannot make it buffer without
bound: a control line longer than ``max_control_line`` and a message larger
than ``max_payload`` (the server's, from its INFO, plus room for headers the
server itself adds) raise :class:`ProtocolError`, after which the connection
is unusable. Operation names are case-insensitive, as the protocol says.

The command functions (:func:`connect`, :func:`pub`, :func:`hpub`, :func:`sub`,
:func:`unsub`, :data:`PING`, :data:`PONG`) return the bytes to write. They
check subjects, queue groups and headers, raising ``ValueError`` for anything
that would corrupt the stream (whitespace in a subject, CR or LF in a header).

Nothing here imports an event loop or a socket module: the driver in
:mod:`micro.nats._connection` reads, feeds, and writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "MAX_CONTROL_LINE",
    "PING",
    "PONG",
    "Err",
    "Event",
    "Info",
    "Msg",
    "Ok",
    "Parser",
    "Ping",
    "Pong",
    "ProtocolError",
    "connect",
    "decode_headers",
    "encode_headers",
    "hpub",
    "pub",
    "sub",
    "unsub",
]

#: nats-server's default max_payload, used until the server's INFO says otherwise
DEFAULT_MAX_PAYLOAD = 1024 * 1024
#: nats-server's own limit on a control line (MAX_CONTROL_LINE_SIZE is 4 KiB);
#: a subject is capped well below it, so a longer line is garbage.
MAX_CONTROL_LINE = 4096
#: An INFO line carries JSON that grows with a cluster's connect_urls; allow more.
MAX_INFO_LINE = 64 * 1024
#: Room for headers the server adds to a message itself (JetStream, status
#: replies) beyond the max_payload it enforces on publishers.
HEADER_SLACK = 4096

PING = b"PING\r\n"
PONG = b"PONG\r\n"
_CRLF = b"\r\n"
_HEADER_LINE = b"NATS/1.0"


class ProtocolError(ValueError):
    """The peer broke the protocol; the connection cannot be used any more."""


# -- events ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Info:
    """The server's INFO: sent on connect and again when the cluster changes."""

    options: Mapping[str, Any]

    @property
    def max_payload(self) -> int:
        value = self.options.get("max_payload", DEFAULT_MAX_PAYLOAD)
        return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_PAYLOAD

    @property
    def headers(self) -> bool:
        """Whether the server supports HPUB/HMSG."""
        return bool(self.options.get("headers", False))

    @property
    def server_id(self) -> str:
        return str(self.options.get("server_id", ""))


@dataclass(slots=True)
class Msg:
    """A message delivered to subscription ``sid``.

    ``headers`` is empty for a MSG; for an HMSG it holds the header block's
    fields (a repeated name keeps its last value). ``status`` is the header
    block's status code, if any (503: no responders to a request).
    """

    subject: str
    sid: int
    reply: str | None
    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class Ping:
    """The server checks we are alive: answer with PONG."""


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to our oldest unanswered PING."""


@dataclass(frozen=True, slots=True)
class Ok:
    """``+OK``: only sent in verbose mode, which micro never asks for."""


@dataclass(frozen=True, slots=True)
class Err:
    """``-ERR``: most are followed by the server closing the connection."""

    message: str


Event = Info | Msg | Ping | Pong | Ok | Err

_PING, _PONG, _OK = Ping(), Pong(), Ok()


# -- the parser ----------------------------------------------------------------


class Parser:
    """Turns received bytes into events; see the module docstring for the limits."""

    def __init__(
        self, *, max_payload: int = DEFAULT_MAX_PAYLOAD, max_control_line: int = MAX_CONTROL_LINE
    ) -> None:
        self.max_payload = max_payload
        self.max_control_line = max_control_line
        # What is not parsed yet: a control line without its CRLF, or (when
        # _pending is set) a message's payload without its end.
        self._rest = bytearray()
        self._scan = 0
        # Bytes _rest must hold before the pending message's payload is complete.
        self._need = 0
        # A MSG/HMSG whose control line is parsed and whose payload is awaited:
        # (subject, sid, reply, header size, total size).
        self._pending: tuple[str, int, str | None, int, int] | None = None
        # Subjects as text by their bytes: a subscriber sees a few subjects over and over.
        self._subjects: dict[bytes, str] = {}
        self._ops: dict[bytes, Callable[[bytes], Event]] = {
            b"PING": lambda rest: _PING,
            b"PONG": lambda rest: _PONG,
            b"+OK": lambda rest: _OK,
            b"-ERR": _err,
            b"INFO": self._info,
        }

    def feed(self, data: bytes) -> list[Event]:
        """The events completed by ``data``; raises ProtocolError on a broken stream."""
        held = self._rest
        scan, self._scan = self._scan, 0
        if held:
            # Bytes left from before: add to them until an event is complete, then
            # parse one immutable copy (a slice of bytes is one copy, of a
            # bytearray two).
            held += data
            if len(held) < self._need:
                return []
            self._need = 0
            if self._pending is None and held.find(_CRLF, scan) < 0:
                # Resume the search for an unfinished line's CRLF where the last
                # one stopped: a line dripping in byte by byte costs linear time.
                self._check_line_length(held, 0, len(held) - 1)
                self._scan = max(0, len(held) - 1)
                return []
            buf = bytes(held)
        else:
            self._need = 0
            buf = data if type(data) is bytes else bytes(data)
        events: list[Event] = []
        append = events.append
        pos, size = 0, len(buf)
        max_line = self.max_control_line
        find, startswith = buf.find, buf.startswith
        pending, self._pending = self._pending, None
        while True:
            if pending is None:
                if pos >= size:
                    break
                eol = find(_CRLF, pos + scan)
                scan = 0
                if eol < 0:
                    # The CR may be in already, the LF not yet.
                    self._check_line_length(buf, pos, size - 1)
                    self._scan = max(0, size - pos - 1)
                    break
                if eol - pos > max_line:
                    self._check_line_length(buf, pos, eol)
                # Messages first, their payload taken at once when it is here already.
                if startswith(b"HMSG ", pos):
                    pending = self._hmsg(buf[pos + 5 : eol])
                elif startswith(b"MSG ", pos):
                    pending = self._msg(buf[pos + 4 : eol])
                else:
                    op, _, rest = buf[pos:eol].partition(b" ")
                    name = op.upper()
                    if name == b"HMSG":
                        pending = self._hmsg(rest)
                    elif name == b"MSG":
                        pending = self._msg(rest)
                    else:
                        handler = self._ops.get(name)
                        if handler is None:
                            raise ProtocolError(f"unknown operation {buf[pos : pos + 32]!r}")
                        append(handler(rest))
                        pos = eol + 2
                        continue
                pos = eol + 2
            subject, sid, reply, header_size, total = pending
            end = pos + total
            if end + 2 > size:
                self._pending = pending
                self._need = total + 2
                break
            if buf[end] != 13 or buf[end + 1] != 10:
                raise ProtocolError("message payload not followed by CRLF")
            if header_size:
                split = pos + header_size
                status, description, headers = decode_headers(buf[pos:split])
                append(Msg(subject, sid, reply, buf[split:end], headers, status, description))
            else:
                append(Msg(subject, sid, reply, buf[pos:end]))
            pending = None
            pos = end + 2
        if pos >= size:
            self._rest = bytearray()
        else:
            self._rest = bytearray(memoryview(buf)[pos:])
        return events

    def _check_line_length(self, buf: bytes | bytearray, pos: int, end: int) -> None:
        """Raise if the line from ``pos`` to ``end`` is over its limit (INFO's is larger)."""
        limit = MAX_INFO_LINE if buf[pos : pos + 4].upper() == b"INFO" else self.max_control_line
        if end - pos > limit:
            raise ProtocolError(f"control line longer than {limit} bytes")

    def _msg(self, rest: bytes) -> tuple[str, int, str | None, int, int]:
        args = rest.split()
        if len(args) == 3:
            subject, sid, size = args
            reply = None
        elif len(args) == 4:
            subject, sid, reply_b, size = args
            reply = reply_b.decode("utf-8", "replace")
        else:
            raise ProtocolError(f"MSG with {len(args)} arguments")
        if not (sid + size).isdigit():
            raise ProtocolError(f"bad number in MSG {rest[:64]!r}")
        total = int(size)
        if total > self.max_payload + HEADER_SLACK:
            raise ProtocolError(f"message of {total} bytes exceeds max_payload {self.max_payload}")
        text = self._subjects.get(subject)
        if text is None:
            text = self._subject(subject)
        return (text, int(sid), reply, 0, total)

    def _hmsg(self, rest: bytes) -> tuple[str, int, str | None, int, int]:
        args = rest.split()
        if len(args) == 4:
            subject, sid, header_size, size = args
            reply = None
        elif len(args) == 5:
            subject, sid, reply_b, header_size, size = args
            reply = reply_b.decode("utf-8", "replace")
        else:
            raise ProtocolError(f"HMSG with {len(args)} arguments")
        if not (sid + header_size + size).isdigit():
            raise ProtocolError(f"bad number in HMSG {rest[:64]!r}")
        total, headers = int(size), int(header_size)
        if total > self.max_payload + HEADER_SLACK:
            raise ProtocolError(f"message of {total} bytes exceeds max_payload {self.max_payload}")
        if headers > total:
            raise ProtocolError("HMSG header size larger than its total size")
        text = self._subjects.get(subject)
        if text is None:
            text = self._subject(subject)
        return (text, int(sid), reply, headers, total)

    def _subject(self, subject: bytes) -> str:
        """``subject`` as text, kept for the next message on it."""
        text = subject.decode("utf-8", "replace")
        if len(self._subjects) >= 256:
            self._subjects.clear()  # many one-off subjects (inboxes): start again
        self._subjects[subject] = text
        return text

    def _info(self, rest: bytes) -> Info:
        try:
            options = json.loads(rest)
        except ValueError:
            raise ProtocolError("INFO is not JSON") from None
        if not isinstance(options, dict):
            raise ProtocolError("INFO is not a JSON object")
        info = Info(options)
        self.max_payload = info.max_payload
        return info


def _err(rest: bytes) -> Err:
    return Err(rest.decode("utf-8", "replace").strip().strip("'"))


# -- headers -------------------------------------------------------------------


def decode_headers(block: bytes | bytearray) -> tuple[int | None, str, dict[str, str]]:
    """(status, description, fields) of a header block.

    Lenient by design: the server passes on whatever a publisher wrote, and
    one publisher's odd header must not break a subscriber's connection, so
    lines without a colon are skipped rather than rejected. A repeated name
    keeps its last value.
    """
    text = block.decode("utf-8", "replace")
    status: int | None = None
    description = ""
    if text.startswith("NATS/1.0\r\n"):  # the usual block: no status
        text = text[10:]
        line, _, rest = text.partition("\r\n")
        if rest == "\r\n":  # one field, as a published message's id alone
            name, colon, value = line.partition(":")
            return None, "", {name.strip(): value.strip()} if colon and name else {}
    elif text.startswith("NATS/1.0"):
        first, _, text = text.partition("\r\n")
        code, _, rest = first[8:].strip().partition(" ")
        if len(code) == 3 and code.isdigit():
            status, description = int(code), rest.strip()
    fields: dict[str, str] = {}
    for line in text.split("\r\n"):
        if line:
            name, colon, value = line.partition(":")
            if colon and name:
                fields[name.strip()] = value.strip()
    return status, description, fields


_BAD_HEADER_NAME = re.compile(r"[\x00-\x20:\x7f]")
#: header names already checked (they repeat: Micro-Id, Content-Type, ...)
_GOOD_NAMES: set[str] = set()


def encode_headers(headers: Mapping[str, str], name: str | None = None, value: str = "") -> bytes:
    """The header block for ``headers``, and for one more field ``name: value`` if a
    name is given (a message's id, without copying the mapping to add it).

    ValueError for a name or value that breaks the block: an empty name, one with
    whitespace, a colon or a control character, a value with CR or LF.
    """
    if not headers and name is not None:
        # The usual block of a published message: its id alone.
        if name not in _GOOD_NAMES:
            _check_header_name(name)
        if "\r" in value or "\n" in value:
            raise ValueError(f"invalid value for NATS header {name!r}: CR or LF")
        return f"NATS/1.0\r\n{name}: {value}\r\n\r\n".encode()
    text = "NATS/1.0\r\n"
    for key, field_value in headers.items():
        if key not in _GOOD_NAMES:
            _check_header_name(key)
        if "\r" in field_value or "\n" in field_value:
            raise ValueError(f"invalid value for NATS header {key!r}: CR or LF")
        text += f"{key}: {field_value}\r\n"
    if name is not None:
        if name not in _GOOD_NAMES:
            _check_header_name(name)
        if "\r" in value or "\n" in value:
            raise ValueError(f"invalid value for NATS header {name!r}: CR or LF")
        text += f"{name}: {value}\r\n"
    return (text + "\r\n").encode()


def _check_header_name(name: str) -> None:
    if not name or _BAD_HEADER_NAME.search(name):
        raise ValueError(f"invalid NATS header name {name!r}")
    if len(_GOOD_NAMES) < 1024:
        _GOOD_NAMES.add(name)


# -- commands --------------------------------------------------------------------

_BAD_TOKEN = re.compile(r"\s")
#: subjects already checked (a service publishes to a few topics, over and over)
_GOOD_TOKENS: set[str] = set()


def _check(kind: str, value: str) -> str:
    if value in _GOOD_TOKENS:
        return value
    if not value or _BAD_TOKEN.search(value):
        raise ValueError(f"invalid NATS {kind} {value!r}: empty or contains whitespace")
    if len(_GOOD_TOKENS) < 4096 and not value.startswith("_INBOX."):
        _GOOD_TOKENS.add(value)
    return value


def connect(options: Mapping[str, Any]) -> bytes:
    """``CONNECT {json}``: the client's options, sent once after INFO."""
    return b"CONNECT " + json.dumps(dict(options), separators=(",", ":")).encode() + _CRLF


def pub(subject: str, payload: bytes, reply: str | None = None) -> bytes:
    """``PUB``: publish ``payload`` to ``subject``."""
    _check("subject", subject)
    if reply is None:
        return f"PUB {subject} {len(payload)}\r\n".encode() + payload + _CRLF
    _check("reply subject", reply)
    return f"PUB {subject} {reply} {len(payload)}\r\n".encode() + payload + _CRLF


def hpub(
    subject: str, payload: bytes, headers: Mapping[str, str] | bytes, reply: str | None = None
) -> bytes:
    """``HPUB``: publish with headers (a mapping, or an encoded header block)."""
    _check("subject", subject)
    block = headers if isinstance(headers, bytes) else encode_headers(headers)
    size = len(block)
    if reply is None:
        return b"HPUB %s %d %d\r\n%s%s\r\n" % (
            subject.encode(),
            size,
            size + len(payload),
            block,
            payload,
        )
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
        subject.encode(),
        _check("reply subject", reply).encode(),
        size,
        size + len(payload),
        block,
        payload,
    )


def sub(subject: str, sid: int, queue: str | None = None) -> bytes:
    """``SUB``: subscribe ``sid`` to ``subject``, in queue group ``queue`` if given."""
    _check("subject", subject)
    if queue is None:
        return f"SUB {subject} {sid}\r\n".encode()
    return f"SUB {subject} {_check('queue group', queue)} {sid}\r\n".encode()


def unsub(sid: int, max_msgs: int | None = None) -> bytes:
    """``UNSUB``: end subscription ``sid`` now, or after ``max_msgs`` more messages."""
    if max_msgs is None:
        return f"UNSUB {sid}\r\n".encode()
    return f"UNSUB {sid} {max_msgs}\r\n".encode()
