"""The sans-IO NATS protocol: parsing at any chunk boundary, limits, commands; no sockets.

The server's side of the protocol (INFO, MSG, HMSG, ...) is written here by
hand, as nats-server writes it, and fed to the parser whole, byte by byte, and
cut at arbitrary points chosen by hypothesis.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import micro
from micro.nats import ServerAddress, parse_servers
from micro.nats.protocol import (
    DEFAULT_MAX_PAYLOAD,
    MAX_CONTROL_LINE,
    PING,
    PONG,
    Err,
    Event,
    Info,
    Msg,
    Ok,
    Parser,
    Ping,
    Pong,
    ProtocolError,
    connect,
    decode_headers,
    encode_headers,
    hpub,
    pub,
    sub,
    unsub,
)

# -- the server's side, written out --------------------------------------------


def server_bytes(event: Event) -> bytes:
    """``event`` as nats-server sends it."""
    if isinstance(event, Info):
        return b"INFO " + json.dumps(dict(event.options)).encode() + b"\r\n"
    if isinstance(event, Ping):
        return b"PING\r\n"
    if isinstance(event, Pong):
        return b"PONG\r\n"
    if isinstance(event, Ok):
        return b"+OK\r\n"
    if isinstance(event, Err):
        return f"-ERR '{event.message}'\r\n".encode()
    reply = f" {event.reply}" if event.reply else ""
    if not event.headers and event.status is None:
        head = f"MSG {event.subject} {event.sid}{reply} {len(event.payload)}\r\n"
        return head.encode() + event.payload + b"\r\n"
    status = f" {event.status}" if event.status is not None else ""
    description = f" {event.description}" if event.description else ""
    block = (f"NATS/1.0{status}{description}\r\n").encode()
    block += b"".join(f"{k}: {v}\r\n".encode() for k, v in event.headers.items()) + b"\r\n"
    total = len(block) + len(event.payload)
    head = f"HMSG {event.subject} {event.sid}{reply} {len(block)} {total}\r\n"
    return head.encode() + block + event.payload + b"\r\n"


def feed_all(parser: Parser, chunks: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


# -- strategies ------------------------------------------------------------------

token = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters=" \t\r\n.*>", min_codepoint=33),
    min_size=1,
    max_size=8,
)
subjects = st.lists(token, min_size=1, max_size=4).map(".".join)
header_names = st.text(
    alphabet=st.characters(
        codec="ascii", min_codepoint=33, max_codepoint=126, exclude_characters=":"
    ),
    min_size=1,
    max_size=12,
)
# Values keep no leading/trailing whitespace: the parser strips it, as NATS does.
header_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    max_size=16,
)
headers = st.dictionaries(header_names, header_values, max_size=4)
payloads = st.binary(max_size=300)


@st.composite
def messages(draw: st.DrawFn) -> Msg:
    with_headers = draw(st.booleans())
    return Msg(
        subject=draw(subjects),
        sid=draw(st.integers(1, 10**9)),
        reply=draw(st.none() | subjects),
        payload=draw(payloads),
        headers=draw(headers) if with_headers else {},
        status=draw(st.sampled_from([None, 503, 408])) if with_headers else None,
    )


events = st.one_of(
    messages(),
    st.just(Ping()),
    st.just(Pong()),
    st.just(Ok()),
    st.builds(Err, st.sampled_from(["Stale Connection", "Permissions Violation for Publish"])),
    st.builds(Info, st.fixed_dictionaries({"server_id": token, "max_payload": st.just(1 << 20)})),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# -- parsing ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=12), st.lists(st.integers(0, 10**6), max_size=20))
def test_events_survive_any_chunking(sent: list[Event], cuts: list[int]) -> None:
    data = b"".join(server_bytes(e) for e in sent)
    assert feed_all(Parser(), split(data, cuts)) == sent


@settings(max_examples=50, deadline=None)
@given(st.lists(events, min_size=1, max_size=6))
def test_events_survive_byte_by_byte(sent: list[Event]) -> None:
    data = b"".join(server_bytes(e) for e in sent)
    assert feed_all(Parser(), [data[i : i + 1] for i in range(len(data))]) == sent


def test_msg_fields() -> None:
    [msg] = Parser().feed(b"MSG foo.bar 9 _INBOX.x 5\r\nhello\r\n")
    assert msg == Msg("foo.bar", 9, "_INBOX.x", b"hello")


def test_hmsg_with_status_and_headers() -> None:
    block = b"NATS/1.0 503\r\n\r\n"
    data = b"HMSG _INBOX.a.1 3 %d %d\r\n%s\r\n" % (len(block), len(block), block)
    [msg] = Parser().feed(data)
    assert isinstance(msg, Msg) and msg.status == 503 and msg.payload == b"" and not msg.headers


def test_operations_are_case_insensitive() -> None:
    parser = Parser()
    assert parser.feed(b"ping\r\npong\r\n+ok\r\nmsg a 1 2\r\nhi\r\n") == [
        Ping(),
        Pong(),
        Ok(),
        Msg("a", 1, None, b"hi"),
    ]


def test_err_text_loses_its_quotes() -> None:
    assert Parser().feed(b"-ERR 'Authorization Violation'\r\n") == [Err("Authorization Violation")]


def test_info_sets_the_payload_limit() -> None:
    parser = Parser()
    [info] = parser.feed(b'INFO {"server_id":"x","max_payload":100,"headers":true}\r\n')
    assert isinstance(info, Info)
    assert (info.server_id, info.max_payload, info.headers) == ("x", 100, True)
    assert parser.max_payload == 100
    assert Info({}).max_payload == DEFAULT_MAX_PAYLOAD


def test_empty_payload_and_buffer_reuse() -> None:
    parser = Parser()
    assert parser.feed(b"MSG a 1 0\r\n\r\nMSG a 1 3\r\nab") == [Msg("a", 1, None, b"")]
    assert parser.feed(b"c\r\n") == [Msg("a", 1, None, b"abc")]
    assert parser.feed(b"") == []


# -- limits and broken streams ------------------------------------------------------


def test_unterminated_control_line_is_bounded() -> None:
    parser = Parser()
    parser.feed(b"MSG " + b"a" * (MAX_CONTROL_LINE - 10))
    with pytest.raises(ProtocolError, match="control line"):
        parser.feed(b"a" * 20)


def test_a_line_dripping_in_is_not_rescanned() -> None:
    parser = Parser()
    line = b"INFO " + json.dumps({"pad": "x" * 60_000}).encode() + b"\r\n"
    started = time.perf_counter()
    events = feed_all(parser, [line[i : i + 1] for i in range(len(line))])
    # ~0.06 s here; rescanning from the line's start each time took ~2 s.
    assert len(events) == 1 and time.perf_counter() - started < 1


def test_long_complete_control_line_is_refused() -> None:
    with pytest.raises(ProtocolError, match="control line"):
        Parser().feed(b"MSG " + b"a" * MAX_CONTROL_LINE + b" 1 0\r\n\r\n")


def test_info_may_be_longer_than_a_control_line() -> None:
    urls = [f"10.0.0.{i}:4222" for i in range(400)]
    line = b"INFO " + json.dumps({"connect_urls": urls}).encode() + b"\r\n"
    assert len(line) > MAX_CONTROL_LINE
    [info] = Parser().feed(line)
    assert isinstance(info, Info) and len(info.options["connect_urls"]) == 400


def test_message_above_max_payload_is_refused_before_buffering() -> None:
    parser = Parser(max_payload=1000)
    with pytest.raises(ProtocolError, match="max_payload"):
        parser.feed(b"MSG a 1 100000\r\n")
    with pytest.raises(ProtocolError, match="max_payload"):
        Parser(max_payload=1000).feed(b"HMSG a 1 10 100000\r\n")


@pytest.mark.parametrize(
    "data",
    [
        b"MSG a 1 3\r\nabcXY",  # payload not followed by CRLF
        b"HELLO\r\n",  # unknown operation
        b"MSG a b 3\r\n",  # sid not a number
        b"MSG a 1 -3\r\n",  # negative size
        b"MSG a 1\r\n",  # too few arguments
        b"MSG a 1 b c d 3\r\n",  # too many
        b"HMSG a 1 10 5\r\n",  # header larger than total
        b"HMSG a 1 x 5\r\n",
        b"INFO [1,2]\r\n",  # not an object
        b"INFO {nope\r\n",
    ],
)
def test_broken_streams_raise(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        Parser().feed(data)


# -- headers -------------------------------------------------------------------------


@given(headers)
def test_headers_round_trip(fields: dict[str, str]) -> None:
    assert decode_headers(encode_headers(fields)) == (None, "", fields)


def test_header_status_and_description() -> None:
    assert decode_headers(b"NATS/1.0 408 Request Timeout\r\nNats-Pending: 3\r\n\r\n") == (
        408,
        "Request Timeout",
        {"Nats-Pending": "3"},
    )


def test_header_decoding_is_lenient() -> None:
    block = b"NATS/1.0\r\nno colon here\r\nA: 1\r\nA: 2\r\nB:x:y\r\n\xff: v\r\n\r\n"
    status, _, fields = decode_headers(block)
    assert status is None
    assert fields == {"A": "2", "B": "x:y", "\ufffd": "v"}


@pytest.mark.parametrize(
    "fields",
    [
        {"": "v"},
        {"a b": "v"},
        {"a:b": "v"},
        {"a\r\nb": "v"},
        {"a": "v\r\nInjected: 1"},
        {"a": "\n"},
    ],
)
def test_headers_that_would_break_the_block_are_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        encode_headers(fields)


@given(headers, st.text(st.characters(blacklist_characters="\r\n"), max_size=40))
def test_one_more_field_is_added_last_without_copying(fields: dict[str, str], id: str) -> None:
    # How a message id joins a message's headers; it wins over a field of its name.
    block = encode_headers(fields, "Micro-Id", id)
    assert block.endswith(f"Micro-Id: {id}\r\n\r\n".encode())
    assert decode_headers(block) == (None, "", {**fields, "Micro-Id": id.strip()})
    assert encode_headers({}, "Nats-Msg-Id", "7") == b"NATS/1.0\r\nNats-Msg-Id: 7\r\n\r\n"


@pytest.mark.parametrize(
    ("name", "value"), [("", "v"), ("a b", "v"), ("a:b", "v"), ("a", "v\r\nX: 1")]
)
def test_a_bad_added_field_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        encode_headers({"ok": "1"}, name, value)


def test_hpub_counts_bytes_not_characters() -> None:
    data = hpub("a", "é".encode(), {"K": "ü"}, "r.1")
    assert data == b"HPUB a r.1 19 21\r\nNATS/1.0\r\nK: \xc3\xbc\r\n\r\n\xc3\xa9\r\n"


# -- commands -------------------------------------------------------------------------


def test_command_bytes() -> None:
    assert pub("a.b", b"hi") == b"PUB a.b 2\r\nhi\r\n"
    assert pub("a.b", b"", "r.1") == b"PUB a.b r.1 0\r\n\r\n"
    assert hpub("a", b"xy", {"K": "v"}) == b"HPUB a 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nxy\r\n"
    assert hpub("a", b"", b"NATS/1.0\r\n\r\n", "r") == b"HPUB a r 12 12\r\nNATS/1.0\r\n\r\n\r\n"
    assert sub("a.*", 7) == b"SUB a.* 7\r\n"
    assert sub("a.>", 7, "workers") == b"SUB a.> workers 7\r\n"
    assert unsub(7) == b"UNSUB 7\r\n"
    assert unsub(7, 10) == b"UNSUB 7 10\r\n"
    assert (PING, PONG) == (b"PING\r\n", b"PONG\r\n")
    line = connect({"verbose": False, "headers": True})
    assert line == b'CONNECT {"verbose":false,"headers":true}\r\n'


@pytest.mark.parametrize("subject", ["", "a b", "a\tb", "a\r\nPUB x 1", "a\n"])
def test_bad_subjects_are_refused(subject: str) -> None:
    with pytest.raises(ValueError):
        pub(subject, b"")
    with pytest.raises(ValueError):
        sub(subject, 1)
    with pytest.raises(ValueError):
        pub("ok", b"", reply=subject or " ")


def test_bad_queue_group_is_refused() -> None:
    with pytest.raises(ValueError):
        sub("a", 1, "two words")


@settings(max_examples=200, deadline=None)
@given(subjects, payloads, headers, st.none() | subjects, st.lists(st.integers(0, 10**4)))
def test_what_we_publish_is_what_a_subscriber_parses(
    subject: str, payload: bytes, fields: dict[str, str], reply: str | None, cuts: list[int]
) -> None:
    # The server forwards HPUB as HMSG with the subscription's sid inserted
    # after the subject; doing the same here must give back our message.
    data = hpub(subject, payload, fields, reply) if fields else pub(subject, payload, reply)
    op, _, rest = data.partition(b" ")
    subj, _, rest = rest.partition(b" ")
    forwarded = (b"HMSG " if op == b"HPUB" else b"MSG ") + subj + b" 42 " + rest
    [msg] = feed_all(Parser(), split(forwarded, cuts))
    assert msg == Msg(subject, 42, reply, payload, fields)


# -- server URLs ------------------------------------------------------------------------


def test_server_urls() -> None:
    assert parse_servers("nats://10.0.0.1:4333, 10.0.0.2") == [
        ServerAddress("10.0.0.1", 4333),
        ServerAddress("10.0.0.2", 4222),
    ]
    [with_user] = parse_servers(["nats://al%40ice:s3cret@h:1"])
    assert (with_user.user, with_user.password, with_user.token) == ("al@ice", "s3cret", None)
    assert with_user.url == "nats://h:1"  # no credentials in messages
    [with_token] = parse_servers("nats://tok@h")
    assert (with_token.user, with_token.token) == (None, "tok")
    for bad in ("", "http://h:1", "nats://:1"):
        with pytest.raises(ValueError):
            parse_servers(bad)


# -- sans-IO: no event loop, no socket ------------------------------------------------------

FORBIDDEN = {"anyio", "trio", "asyncio", "socket", "selectors", "ssl", "sniffio"}
PROTOCOL = Path(micro.__file__).parent / "nats" / "protocol.py"


def test_protocol_source_imports_no_event_loop_or_socket() -> None:
    tree = ast.parse(PROTOCOL.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "the protocol module imports nothing of micro"
            imported.add((node.module or "").split(".")[0])
    assert imported and not imported & FORBIDDEN


def test_protocol_loads_no_event_loop_or_socket_at_runtime() -> None:
    code = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('nats_protocol', sys.argv[1])\n"
        "module = sys.modules['nats_protocol'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "module.Parser().feed(b'PING\\r\\nMSG a 1 0\\r\\n\\r\\n')\n"
        "module.hpub('a', b'', {'k': 'v'})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(PROTOCOL)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert not set(json.loads(result.stdout)) & FORBIDDEN
