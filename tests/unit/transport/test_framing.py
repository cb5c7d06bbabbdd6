"""micro.transport.framing: gRPC length-prefixed messages in any chunking."""

import gzip
import itertools
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from micro.errors import NotImplementedByServer, PayloadTooLarge, UnsupportedMediaType
from micro.transport.framing import (
    PREFIX_SIZE,
    VIEW_MIN,
    MessageDecoder,
    detach,
    encode_message,
)

LIMIT = 1024


def prefix(length: int, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, length)


def feed_all(decoder: MessageDecoder, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def test_encode_message() -> None:
    assert PREFIX_SIZE == 5
    assert encode_message(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert encode_message(b"") == b"\x00\x00\x00\x00\x00"
    assert encode_message(b"x" * 256)[:5] == b"\x00\x00\x00\x01\x00"


def test_one_whole_message() -> None:
    decoder = MessageDecoder(LIMIT)
    assert decoder.feed(encode_message(b"hello")) == [b"hello"]
    assert decoder.pending == 0


def test_several_messages_in_one_chunk() -> None:
    messages = [b"a", b"", b"bcd", b"x" * 300]
    decoder = MessageDecoder(LIMIT)
    assert decoder.feed(b"".join(map(encode_message, messages))) == messages
    assert decoder.pending == 0


def test_nothing_in_nothing_out() -> None:
    decoder = MessageDecoder(LIMIT)
    assert decoder.feed(b"") == []
    assert decoder.pending == 0


MESSAGES = [b"first", b"", b"\x00\x00\x00\x00\x05", b"x" * 40, b""]
WIRE = b"".join(map(encode_message, MESSAGES))


@pytest.mark.parametrize("cut", range(len(WIRE) + 1))
def test_every_single_split(cut: int) -> None:
    decoder = MessageDecoder(LIMIT)
    assert feed_all(decoder, [WIRE[:cut], WIRE[cut:]]) == MESSAGES
    assert decoder.pending == 0


def test_every_pair_of_splits() -> None:
    for a, b in itertools.combinations_with_replacement(range(len(WIRE) + 1), 2):
        decoder = MessageDecoder(LIMIT)
        assert feed_all(decoder, split_at(WIRE, [a, b])) == MESSAGES, (a, b)
        assert decoder.pending == 0


def test_one_byte_at_a_time() -> None:
    decoder = MessageDecoder(LIMIT)
    out: list[bytes] = []
    for i in range(len(WIRE)):
        out.extend(decoder.feed(WIRE[i : i + 1]))
        assert decoder.pending == i + 1 - sum(len(m) + PREFIX_SIZE for m in out)
    assert out == MESSAGES
    assert decoder.pending == 0


@given(
    messages=st.lists(st.binary(max_size=200), max_size=8),
    data=st.data(),
)
def test_any_chunking_gives_the_same_messages(messages: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(map(encode_message, messages))
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    decoder = MessageDecoder(LIMIT)
    out = feed_all(decoder, split_at(wire, cuts))
    assert [bytes(m) for m in out] == messages
    # Zero-copy views of the buffer a message was assembled in, or bytes.
    assert all(isinstance(m, bytes | memoryview) for m in out)
    assert decoder.pending == 0


@given(messages=st.lists(st.binary(max_size=50), min_size=1, max_size=5), data=st.data())
def test_a_partial_message_stays_pending(messages: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(map(encode_message, messages))
    cut = data.draw(st.integers(0, len(wire) - 1))
    decoder = MessageDecoder(LIMIT)
    out = decoder.feed(wire[:cut])
    whole = sum(len(m) + PREFIX_SIZE for m in out)
    assert out == messages[: len(out)]
    assert decoder.pending == cut - whole
    assert out + decoder.feed(wire[cut:]) == messages


def test_empty_messages() -> None:
    decoder = MessageDecoder(LIMIT)
    assert decoder.feed(encode_message(b"")) == [b""]
    assert decoder.feed(encode_message(b"") * 3) == [b"", b"", b""]
    empty = encode_message(b"")
    assert decoder.feed(empty[:2]) == []
    assert decoder.feed(empty[2:] + empty) == [b"", b""]
    assert decoder.pending == 0


def test_empty_messages_with_a_zero_limit() -> None:
    decoder = MessageDecoder(0)
    assert decoder.feed(encode_message(b"") * 2) == [b"", b""]
    with pytest.raises(PayloadTooLarge):
        decoder.feed(prefix(1))


def test_a_message_at_the_limit_is_accepted() -> None:
    decoder = MessageDecoder(LIMIT)
    assert decoder.feed(encode_message(b"x" * LIMIT)) == [b"x" * LIMIT]
    payload = encode_message(b"y" * LIMIT)
    assert feed_all(decoder, [payload[:3], payload[3:700], payload[700:]]) == [b"y" * LIMIT]


def test_oversized_length_refused_from_the_prefix_alone() -> None:
    decoder = MessageDecoder(LIMIT)
    with pytest.raises(PayloadTooLarge) as info:
        decoder.feed(prefix(LIMIT + 1))
    assert info.value.code == 413
    assert str(LIMIT + 1) in info.value.detail
    assert str(LIMIT) in info.value.detail


def test_oversized_length_refused_when_the_fifth_prefix_byte_arrives() -> None:
    decoder = MessageDecoder(LIMIT)
    head = prefix(2**32 - 1)
    for i in range(PREFIX_SIZE - 1):
        assert decoder.feed(head[i : i + 1]) == []
    with pytest.raises(PayloadTooLarge):
        decoder.feed(head[-1:])


def test_oversized_length_after_a_good_message() -> None:
    decoder = MessageDecoder(LIMIT)
    assert decoder.feed(encode_message(b"ok")) == [b"ok"]
    with pytest.raises(PayloadTooLarge):
        decoder.feed(prefix(LIMIT + 1))


def test_oversized_length_split_across_chunks_after_a_message() -> None:
    decoder = MessageDecoder(LIMIT)
    wire = encode_message(b"ok") + prefix(LIMIT * 10)
    assert decoder.feed(wire[:9]) == [b"ok"]
    with pytest.raises(PayloadTooLarge):
        decoder.feed(wire[9:])


def test_compressed_flag_without_a_known_encoding_is_unimplemented() -> None:
    decoder = MessageDecoder(LIMIT)
    with pytest.raises(NotImplementedByServer, match="compressed") as info:
        decoder.feed(prefix(3, flag=1))
    assert info.value.grpc_status == 12


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_messages_are_inflated(encoding: str) -> None:
    payload = b"hello " * 1000
    packed = gzip.compress(payload) if encoding == "gzip" else zlib.compress(payload)
    decoder = MessageDecoder(LIMIT * 10, encoding)
    wire = prefix(len(packed), flag=1) + packed + encode_message(b"plain")
    assert decoder.feed(wire[:7]) == []
    assert decoder.feed(wire[7:]) == [payload, b"plain"]


def test_a_small_compressed_message_cannot_inflate_past_the_limit() -> None:
    packed = gzip.compress(b"\0" * (LIMIT * 100))
    assert len(packed) < LIMIT
    with pytest.raises(PayloadTooLarge, match="inflates"):
        MessageDecoder(LIMIT, "gzip").feed(prefix(len(packed), flag=1) + packed)


def test_corrupt_compressed_message() -> None:
    with pytest.raises(UnsupportedMediaType, match="corrupt gzip"):
        MessageDecoder(LIMIT, "gzip").feed(prefix(3, flag=1) + b"abc")


@pytest.mark.parametrize("flag", [2, 0x80, 0xFF])
def test_invalid_flag_refused(flag: int) -> None:
    decoder = MessageDecoder(LIMIT)
    with pytest.raises(UnsupportedMediaType, match="flag"):
        decoder.feed(prefix(0, flag=flag))


def test_a_small_message_in_a_large_read_is_copied_out_of_it() -> None:
    read = b"other streams' data" * 10_000 + encode_message(b"tiny")
    piece = memoryview(read)[-(PREFIX_SIZE + 4) :]  # as h2conn hands over a DATA payload
    (message,) = MessageDecoder(1 << 20).feed(piece)
    assert type(message) is bytes and message == b"tiny"  # does not keep `read` alive


def test_a_large_message_stays_a_view_of_the_read() -> None:
    read = encode_message(b"L" * VIEW_MIN)
    (message,) = MessageDecoder(1 << 20).feed(memoryview(read))
    assert isinstance(message, memoryview) and message.obj is read


def test_detach() -> None:
    big = b"x" * (VIEW_MIN * 2)
    assert detach(b"abc") == b"abc"
    small = detach(memoryview(big)[:10])
    assert type(small) is bytes and small == b"x" * 10
    view = memoryview(big)[:VIEW_MIN]
    assert detach(view) is view
