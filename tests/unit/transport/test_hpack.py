"""micro.transport.hpack: RFC 7541's examples, and round trips with ``hpack`` both ways."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from micro.transport.hpack import (
    Decoder,
    Encoder,
    HPACKError,
    OversizedHeaderListError,
    huffman_decode,
    huffman_encode,
)

# RFC 7541 Appendix C: (header block, decoded list, dynamic table size after it).
C3_REQUESTS = [
    (
        "828684410f7777772e6578616d706c652e636f6d",
        [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ],
        57,
    ),
    (
        "828684be58086e6f2d6361636865",
        [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ],
        110,
    ),
    (
        "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
        [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ],
        164,
    ),
]
C4_HUFFMAN = [
    "828684418cf1e3c2e5f23a6ba0ab90f4ff",
    "828684be5886a8eb10649cbf",
    "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
]
_DATE1 = "Mon, 21 Oct 2013 20:13:21 GMT"
_DATE2 = "Mon, 21 Oct 2013 20:13:22 GMT"
_COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
C5_RESPONSES = [
    (
        "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a3231"
        "20474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
        [
            (":status", "302"),
            ("cache-control", "private"),
            ("date", _DATE1),
            ("location", "https://www.example.com"),
        ],
        222,
    ),
    (
        "4803333037c1c0bf",
        [
            (":status", "307"),
            ("cache-control", "private"),
            ("date", _DATE1),
            ("location", "https://www.example.com"),
        ],
        222,
    ),
    (
        "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a6970"
        "7738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d61"
        "67653d333630303b2076657273696f6e3d31",
        [
            (":status", "200"),
            ("cache-control", "private"),
            ("date", _DATE2),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            ("set-cookie", _COOKIE),
        ],
        215,
    ),
]
C6_HUFFMAN = [
    "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad17"
    "1863c78f0b97c8e9ae82ae43d3",
    "4883640effc1c0bf",
    "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6"
    "c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
]


def test_rfc7541_c3_requests_without_huffman() -> None:
    dec = Decoder()
    for block, headers, size in C3_REQUESTS:
        assert dec.decode(bytes.fromhex(block)) == headers
        assert dec._size == size


def test_rfc7541_c4_requests_with_huffman() -> None:
    dec = Decoder()
    for block, (_, headers, size) in zip(C4_HUFFMAN, C3_REQUESTS, strict=True):
        assert dec.decode(bytes.fromhex(block)) == headers
        assert dec._size == size


@pytest.mark.parametrize("blocks", [[b for b, _, _ in C5_RESPONSES], C6_HUFFMAN], ids=["C5", "C6"])
def test_rfc7541_responses_evict_from_a_256_byte_table(blocks: list[str]) -> None:
    dec = Decoder(max_table_size=256)
    dec.table_size = 256  # as the RFC's example starts
    for block, (_, headers, size) in zip(blocks, C5_RESPONSES, strict=True):
        assert dec.decode(bytes.fromhex(block)) == headers
        assert dec._size == size


def test_huffman_matches_the_rfc_examples() -> None:
    assert huffman_encode(b"www.example.com").hex() == "f1e3c2e5f23a6ba0ab90f4ff"
    assert huffman_encode(b"no-cache").hex() == "a8eb10649cbf"
    assert huffman_decode(bytes.fromhex("25a849e95ba97d7f")) == b"custom-key"


@given(st.binary(max_size=200))
def test_huffman_round_trips_and_agrees_with_hpack(data: bytes) -> None:
    encoded = huffman_encode(data)
    assert encoded == hpack.huffman.HuffmanEncoder(
        hpack.huffman_constants.REQUEST_CODES, hpack.huffman_constants.REQUEST_CODES_LENGTH
    ).encode(data)
    assert huffman_decode(encoded) == data


@pytest.mark.parametrize(
    "raw",
    [
        "ff",  # eight bits of padding
        "fffffffc",  # the EOS code itself (30 ones) and more
        "f1e3c2e5f23a6ba0ab90f4fe",  # padding that is not all ones
    ],
)
def test_huffman_padding_and_eos_are_checked(raw: str) -> None:
    with pytest.raises(HPACKError):
        huffman_decode(bytes.fromhex(raw))


_names = st.sampled_from(
    [":path", ":authority", "content-type", "x-a", "grpc-timeout", "cookie", "user-agent"]
) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=20)
_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60
) | st.sampled_from(["", "POST", "application/grpc", "200", "trailers", "gzip"])
_header_lists = st.lists(st.lists(st.tuples(_names, _values), max_size=12), max_size=8)


@settings(max_examples=150)
@given(_header_lists, st.sampled_from([0, 64, 256, 4096]))
def test_what_hpack_encodes_we_decode(lists: list[list[tuple[str, str]]], size: int) -> None:
    """With Huffman, indexing and eviction on the encoder's side."""
    enc = hpack.Encoder()
    enc.header_table_size = size
    dec = Decoder()
    for headers in lists:
        assert dec.decode(enc.encode(headers)) == headers


@settings(max_examples=150)
@given(_header_lists, st.sampled_from([None, 0, 100, 4096]))
def test_what_we_encode_hpack_decodes(
    lists: list[list[tuple[str, str]]], peer_size: int | None
) -> None:
    enc = Encoder()
    dec = hpack.Decoder()
    if peer_size is not None:
        dec.max_allowed_table_size = peer_size
        enc.peer_table_size(peer_size)
    for headers in lists:
        assert [(n.decode(), v.decode()) for n, v in dec.decode(enc.encode(headers), raw=True)] == (
            headers
        )
        assert dec.header_table._current_size == 0  # our blocks never index


def test_fixed_headers_are_static_indexes() -> None:
    enc = Encoder()
    assert enc.encode([(":status", "200")]) == b"\x88"
    assert enc.encode([(":method", "POST"), (":scheme", "http")]) == b"\x83\x86"


@pytest.mark.parametrize(
    ("block", "why"),
    [
        ("80", "index 0"),
        ("be", "index past the dynamic table"),
        ("ff", "truncated integer"),
        ("7fffffffffff0f", "integer too large"),
        ("4005", "truncated string"),
        ("400561", "string past the end"),
        ("8220", "size update after a field"),
        ("3fe21f", "size update over the limit"),
    ],
)
def test_bad_blocks_are_errors(block: str, why: str) -> None:
    with pytest.raises(HPACKError):
        Decoder().decode(bytes.fromhex(block))


def test_header_list_size_is_bounded() -> None:
    block = hpack.Encoder().encode([("x-big", "v" * 100)])
    with pytest.raises(OversizedHeaderListError):
        Decoder(max_header_list_size=100).decode(block)
    assert Decoder(max_header_list_size=200).decode(block) == [("x-big", "v" * 100)]


def test_a_non_utf8_value_survives_as_latin1() -> None:
    block = b"\x00\x03x-a\x02\xff\x41"
    assert Decoder().decode(block) == [("x-a", "\xffA")]


def test_a_block_decoded_again_gives_the_same_fields_and_honours_each_limit() -> None:
    block = Encoder().encode([("content-type", "application/grpc"), ("x-big", "v" * 100)])
    expected = [("content-type", "application/grpc"), ("x-big", "v" * 100)]
    first = Decoder().decode(block)
    again = Decoder().decode(block)  # now known: the same fields, a list of its own
    assert first == again == expected and again is not first
    again.append(("x-mine", "1"))
    assert Decoder().decode(block) == expected
    with pytest.raises(OversizedHeaderListError):
        Decoder(max_header_list_size=100).decode(block)


def test_blocks_that_use_the_dynamic_table_are_decoded_each_time() -> None:
    encoder = hpack.Encoder()
    add = encoder.encode([("x-token", "abc")])  # literal with incremental indexing
    use = encoder.encode([("x-token", "abc")])  # the same field by dynamic index
    decoder = Decoder()
    assert decoder.decode(add) == [("x-token", "abc")]
    assert decoder.decode(use) == [("x-token", "abc")]
    assert decoder.decode(add) == [("x-token", "abc")]  # added again: two entries
    assert decoder.decode(bytes([0x80 | 63])) == [("x-token", "abc")]
    with pytest.raises(HPACKError):
        Decoder().decode(use)  # a fresh table has no entry 62, known block or not
