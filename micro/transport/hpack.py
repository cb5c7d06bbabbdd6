"""HPACK (RFC 7541), sans-IO: a header block encoder and decoder for HTTP/2.

The encoder never inserts into the dynamic table: every field goes out as a
static-table index (name and value both in the table), or a literal that is
not indexed (name by static index where the table has it). The bytes of a
field, and of a whole block, are computed once and kept, so the fixed headers
micro sends on every call (``:status: 200``, ``content-type:
application/grpc``, ``grpc-status: 0``) cost a dictionary lookup per block.
Its dynamic table stays empty, whatever size the peer allows.

The decoder is complete: indexed fields, all literal kinds, the dynamic table
with eviction and size updates (bounded by our SETTINGS_HEADER_TABLE_SIZE),
Huffman-coded strings (with the padding and EOS rules), and a bound on the
decoded header list's size (name + value + 32 per field, as the RFC counts).
A block that neither reads nor changes the dynamic table decodes the same
every time, so the fields of recent ones are kept by their bytes: the blocks
a peer sends call after call (micro's, and most trailers) cost one lookup.
Names and values come out as ``str``: UTF-8, or Latin-1 for the rare value
that is not UTF-8 (so any octet a peer may send survives).

One module: the encoder and decoder are the two halves of one codec and
share its tables (the static table, the Huffman code), which split modules
would only import from each other.
"""

from __future__ import annotations

from collections import deque

__all__ = [
    "Decoder",
    "Encoder",
    "HPACKError",
    "OversizedHeaderListError",
    "STATIC_TABLE",
    "huffman_decode",
    "huffman_encode",
]


class HPACKError(Exception):
    """A header block that cannot be decoded (the connection's COMPRESSION_ERROR)."""


class OversizedHeaderListError(HPACKError):
    """A header block that decodes to more than the allowed header list size."""


#: RFC 7541 Appendix A.
STATIC_TABLE: tuple[tuple[str, str], ...] = (
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
)

#: RFC 7541 Appendix B: (code, bit length) for octets 0..255 and EOS (256).
_HUFFMAN: tuple[tuple[int, int], ...] = (
    (0x1FF8, 13),
    (0x7FFFD8, 23),
    (0xFFFFFE2, 28),
    (0xFFFFFE3, 28),
    (0xFFFFFE4, 28),
    (0xFFFFFE5, 28),
    (0xFFFFFE6, 28),
    (0xFFFFFE7, 28),
    (0xFFFFFE8, 28),
    (0xFFFFEA, 24),
    (0x3FFFFFFC, 30),
    (0xFFFFFE9, 28),
    (0xFFFFFEA, 28),
    (0x3FFFFFFD, 30),
    (0xFFFFFEB, 28),
    (0xFFFFFEC, 28),
    (0xFFFFFED, 28),
    (0xFFFFFEE, 28),
    (0xFFFFFEF, 28),
    (0xFFFFFF0, 28),
    (0xFFFFFF1, 28),
    (0xFFFFFF2, 28),
    (0x3FFFFFFE, 30),
    (0xFFFFFF3, 28),
    (0xFFFFFF4, 28),
    (0xFFFFFF5, 28),
    (0xFFFFFF6, 28),
    (0xFFFFFF7, 28),
    (0xFFFFFF8, 28),
    (0xFFFFFF9, 28),
    (0xFFFFFFA, 28),
    (0xFFFFFFB, 28),
    (0x14, 6),
    (0x3F8, 10),
    (0x3F9, 10),
    (0xFFA, 12),
    (0x1FF9, 13),
    (0x15, 6),
    (0xF8, 8),
    (0x7FA, 11),
    (0x3FA, 10),
    (0x3FB, 10),
    (0xF9, 8),
    (0x7FB, 11),
    (0xFA, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1A, 6),
    (0x1B, 6),
    (0x1C, 6),
    (0x1D, 6),
    (0x1E, 6),
    (0x1F, 6),
    (0x5C, 7),
    (0xFB, 8),
    (0x7FFC, 15),
    (0x20, 6),
    (0xFFB, 12),
    (0x3FC, 10),
    (0x1FFA, 13),
    (0x21, 6),
    (0x5D, 7),
    (0x5E, 7),
    (0x5F, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6A, 7),
    (0x6B, 7),
    (0x6C, 7),
    (0x6D, 7),
    (0x6E, 7),
    (0x6F, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xFC, 8),
    (0x73, 7),
    (0xFD, 8),
    (0x1FFB, 13),
    (0x7FFF0, 19),
    (0x1FFC, 13),
    (0x3FFC, 14),
    (0x22, 6),
    (0x7FFD, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2A, 6),
    (0x7, 5),
    (0x2B, 6),
    (0x76, 7),
    (0x2C, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2D, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7A, 7),
    (0x7B, 7),
    (0x7FFE, 15),
    (0x7FC, 11),
    (0x3FFD, 14),
    (0x1FFD, 13),
    (0xFFFFFFC, 28),
    (0xFFFE6, 20),
    (0x3FFFD2, 22),
    (0xFFFE7, 20),
    (0xFFFE8, 20),
    (0x3FFFD3, 22),
    (0x3FFFD4, 22),
    (0x3FFFD5, 22),
    (0x7FFFD9, 23),
    (0x3FFFD6, 22),
    (0x7FFFDA, 23),
    (0x7FFFDB, 23),
    (0x7FFFDC, 23),
    (0x7FFFDD, 23),
    (0x7FFFDE, 23),
    (0xFFFFEB, 24),
    (0x7FFFDF, 23),
    (0xFFFFEC, 24),
    (0xFFFFED, 24),
    (0x3FFFD7, 22),
    (0x7FFFE0, 23),
    (0xFFFFEE, 24),
    (0x7FFFE1, 23),
    (0x7FFFE2, 23),
    (0x7FFFE3, 23),
    (0x7FFFE4, 23),
    (0x1FFFDC, 21),
    (0x3FFFD8, 22),
    (0x7FFFE5, 23),
    (0x3FFFD9, 22),
    (0x7FFFE6, 23),
    (0x7FFFE7, 23),
    (0xFFFFEF, 24),
    (0x3FFFDA, 22),
    (0x1FFFDD, 21),
    (0xFFFE9, 20),
    (0x3FFFDB, 22),
    (0x3FFFDC, 22),
    (0x7FFFE8, 23),
    (0x7FFFE9, 23),
    (0x1FFFDE, 21),
    (0x7FFFEA, 23),
    (0x3FFFDD, 22),
    (0x3FFFDE, 22),
    (0xFFFFF0, 24),
    (0x1FFFDF, 21),
    (0x3FFFDF, 22),
    (0x7FFFEB, 23),
    (0x7FFFEC, 23),
    (0x1FFFE0, 21),
    (0x1FFFE1, 21),
    (0x3FFFE0, 22),
    (0x1FFFE2, 21),
    (0x7FFFED, 23),
    (0x3FFFE1, 22),
    (0x7FFFEE, 23),
    (0x7FFFEF, 23),
    (0xFFFEA, 20),
    (0x3FFFE2, 22),
    (0x3FFFE3, 22),
    (0x3FFFE4, 22),
    (0x7FFFF0, 23),
    (0x3FFFE5, 22),
    (0x3FFFE6, 22),
    (0x7FFFF1, 23),
    (0x3FFFFE0, 26),
    (0x3FFFFE1, 26),
    (0xFFFEB, 20),
    (0x7FFF1, 19),
    (0x3FFFE7, 22),
    (0x7FFFF2, 23),
    (0x3FFFE8, 22),
    (0x1FFFFEC, 25),
    (0x3FFFFE2, 26),
    (0x3FFFFE3, 26),
    (0x3FFFFE4, 26),
    (0x7FFFFDE, 27),
    (0x7FFFFDF, 27),
    (0x3FFFFE5, 26),
    (0xFFFFF1, 24),
    (0x1FFFFED, 25),
    (0x7FFF2, 19),
    (0x1FFFE3, 21),
    (0x3FFFFE6, 26),
    (0x7FFFFE0, 27),
    (0x7FFFFE1, 27),
    (0x3FFFFE7, 26),
    (0x7FFFFE2, 27),
    (0xFFFFF2, 24),
    (0x1FFFE4, 21),
    (0x1FFFE5, 21),
    (0x3FFFFE8, 26),
    (0x3FFFFE9, 26),
    (0xFFFFFFD, 28),
    (0x7FFFFE3, 27),
    (0x7FFFFE4, 27),
    (0x7FFFFE5, 27),
    (0xFFFEC, 20),
    (0xFFFFF3, 24),
    (0xFFFED, 20),
    (0x1FFFE6, 21),
    (0x3FFFE9, 22),
    (0x1FFFE7, 21),
    (0x1FFFE8, 21),
    (0x7FFFF3, 23),
    (0x3FFFEA, 22),
    (0x3FFFEB, 22),
    (0x1FFFFEE, 25),
    (0x1FFFFEF, 25),
    (0xFFFFF4, 24),
    (0xFFFFF5, 24),
    (0x3FFFFEA, 26),
    (0x7FFFF4, 23),
    (0x3FFFFEB, 26),
    (0x7FFFFE6, 27),
    (0x3FFFFEC, 26),
    (0x3FFFFED, 26),
    (0x7FFFFE7, 27),
    (0x7FFFFE8, 27),
    (0x7FFFFE9, 27),
    (0x7FFFFEA, 27),
    (0x7FFFFEB, 27),
    (0xFFFFFFE, 28),
    (0x7FFFFEC, 27),
    (0x7FFFFED, 27),
    (0x7FFFFEE, 27),
    (0x7FFFFEF, 27),
    (0x7FFFFF0, 27),
    (0x3FFFFEE, 26),
    (0x3FFFFFFF, 30),
)

_EOS = 256


def _build_huffman_fsm() -> tuple[list[int], list[bool]]:
    """A decoder that takes 4 bits at a time.

    States are the Huffman tree's inner nodes (0 is the root). Entry
    ``state * 16 + nibble`` is ``next_state | (symbol + 1) << 8``, or -1 when
    the bits reach EOS. ``accepting[state]``: a code may end there (the
    root, or a run of at most 7 one-bits from it, which is valid padding).
    """
    # The tree: inner nodes as [zero child, one child]; leaves as ~symbol.
    tree: list[list[int]] = [[0, 0]]
    for sym, (code, length) in enumerate(_HUFFMAN):
        node = 0
        for i in range(length - 1, -1, -1):
            bit = (code >> i) & 1
            if i == 0:
                tree[node][bit] = ~sym
            else:
                child = tree[node][bit]
                if child == 0:
                    tree.append([0, 0])
                    child = tree[node][bit] = len(tree) - 1
                node = child
    accepting = [False] * len(tree)
    node, depth = 0, 0
    while depth <= 7 and node >= 0:
        accepting[node] = True
        node = tree[node][1]
        depth += 1
    table = [-1] * (len(tree) * 16)
    for state in range(len(tree)):
        for nibble in range(16):
            node, emitted, ok = state, 0, True
            for i in (3, 2, 1, 0):
                child = tree[node][(nibble >> i) & 1]
                if child < 0:
                    sym = ~child
                    if sym == _EOS:
                        ok = False
                        break
                    emitted = sym + 1
                    node = 0
                else:
                    node = child
            if ok:
                table[state * 16 + nibble] = node | emitted << 8
    return table, accepting


_FSM, _ACCEPTING = _build_huffman_fsm()


def huffman_decode(data: bytes | memoryview) -> bytes:
    fsm = _FSM
    out = bytearray()
    state = 0
    for byte in data:
        entry = fsm[state << 4 | byte >> 4]
        if entry < 0:
            raise HPACKError("Huffman-coded string contains EOS")
        if entry > 0xFF:
            out.append((entry >> 8) - 1)
        entry = fsm[(entry & 0xFF) << 4 | byte & 0xF]
        if entry < 0:
            raise HPACKError("Huffman-coded string contains EOS")
        if entry > 0xFF:
            out.append((entry >> 8) - 1)
        state = entry & 0xFF
    if not _ACCEPTING[state]:
        raise HPACKError("Huffman-coded string has invalid padding")
    return bytes(out)


def huffman_encode(data: bytes) -> bytes:
    acc = 0
    bits = 0
    for byte in data:
        code, length = _HUFFMAN[byte]
        acc = acc << length | code
        bits += length
    pad = -bits % 8
    acc = acc << pad | (1 << pad) - 1
    return acc.to_bytes((bits + pad) // 8, "big")


def _encode_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _encode_int(len(raw), 7, 0) + raw


_STATIC_PAIRS: dict[tuple[str, str], int] = {}
_STATIC_NAMES: dict[str, int] = {}
for _i, _pair in enumerate(STATIC_TABLE, 1):
    _STATIC_PAIRS.setdefault(_pair, _i)
    _STATIC_NAMES.setdefault(_pair[0], _i)
del _i, _pair

#: Fields whose encodings are kept, at most (a bound on the memory a stream of
#: distinct values can make the cache take).
_CACHE_LIMIT = 2048


class Encoder:
    """Header blocks for what we send (see the module's notes)."""

    __slots__ = ("_cache", "_size_update")

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], bytes] = {}
        self._size_update = b""

    def peer_table_size(self, size: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE changed: say our table is empty.

        We never use the dynamic table, so we announce a size of 0, which every
        setting allows; decoders that expect an update after a change get one.
        """
        self._size_update = b"\x20"

    def encode(self, headers: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> bytes:
        key = tuple(headers)
        block = _ENCODED.get(key)
        if block is None:
            cache = self._cache
            parts = []
            for field in headers:
                part = cache.get(field)
                if part is None:
                    part = self._field(field)
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    cache[field] = part
                parts.append(part)
            block = b"".join(parts)
            if len(_ENCODED) >= _CACHE_LIMIT:
                _ENCODED.clear()
            _ENCODED[key] = block
        if self._size_update:
            block = self._size_update + block
            self._size_update = b""
        return block

    @staticmethod
    def _field(field: tuple[str, str]) -> bytes:
        index = _STATIC_PAIRS.get(field)
        if index is not None:
            return _encode_int(index, 7, 0x80)
        name, value = field
        index = _STATIC_NAMES.get(name)
        if index is not None:
            return _encode_int(index, 4, 0) + _encode_str(value)
        return b"\x00" + _encode_str(name) + _encode_str(value)


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class Decoder:
    """Header blocks from the peer, with a dynamic table of at most ``max_table_size``."""

    __slots__ = ("_entries", "_size", "max_header_list_size", "max_table_size", "table_size")

    def __init__(self, max_table_size: int = 4096, max_header_list_size: int = 65536) -> None:
        #: the largest table size the peer may choose (our SETTINGS_HEADER_TABLE_SIZE)
        self.max_table_size = max_table_size
        #: the size the peer chose (starts at the default, 4096)
        self.table_size = min(4096, max_table_size)
        self.max_header_list_size = max_header_list_size
        self._entries: deque[tuple[str, str, int]] = deque()
        self._size = 0

    def _add(self, name: str, value: str, size: int) -> None:
        entries = self._entries
        entries.appendleft((name, value, size))
        self._size += size
        self._evict()

    def _evict(self) -> None:
        entries = self._entries
        while self._size > self.table_size and entries:
            self._size -= entries.pop()[2]

    def _lookup(self, index: int) -> tuple[str, str]:
        if 0 < index <= 61:
            return STATIC_TABLE[index - 1]
        try:
            if index <= 0:
                raise IndexError
            name, value, _ = self._entries[index - 62]
        except IndexError:
            raise HPACKError(f"invalid table index {index}") from None
        return name, value

    def decode(self, data: bytes | memoryview) -> list[tuple[str, str]]:
        end = len(data)
        key = None
        if end <= _BLOCK_CACHE_MAX:
            key = bytes(data)
            known = _BLOCKS.get(key)
            if known is not None:
                fields, total = known
                if total > self.max_header_list_size:
                    limit = self.max_header_list_size
                    raise OversizedHeaderListError(
                        f"header list is over the limit of {limit} bytes"
                    )
                return list(fields)
        headers: list[tuple[str, str]] = []
        pos = 0
        total = 0
        limit = self.max_header_list_size
        # Whether the block neither reads nor changes the dynamic table: the same
        # bytes then always decode to the same fields, which _BLOCKS keeps.
        pure = True
        while pos < end:
            byte = data[pos]
            if byte & 0x80:  # indexed field
                index, pos = _decode_int(data, pos, 7)
                name, value = self._lookup(index)
                if index > 61:
                    pure = False
            elif byte & 0x40:  # literal with incremental indexing
                pure = False
                index, pos = _decode_int(data, pos, 6)
                if index:
                    name = self._lookup(index)[0]
                else:
                    name, pos = _decode_str(data, pos)
                value, pos = _decode_str(data, pos)
                self._add(name, value, len(name.encode()) + len(value.encode()) + 32)
            elif byte & 0x20:  # dynamic table size update
                if headers:
                    raise HPACKError("dynamic table size update after a header field")
                pure = False
                size, pos = _decode_int(data, pos, 5)
                if size > self.max_table_size:
                    limit = self.max_table_size
                    raise HPACKError(f"dynamic table size update to {size}, over {limit}")
                self.table_size = size
                self._evict()
                continue
            else:  # literal without indexing (0x00) or never indexed (0x10)
                index, pos = _decode_int(data, pos, 4)
                if index:
                    name = self._lookup(index)[0]
                    if index > 61:
                        pure = False
                else:
                    name, pos = _decode_str(data, pos)
                value, pos = _decode_str(data, pos)
            total += len(name) + len(value) + 32
            if total > limit:
                raise OversizedHeaderListError(f"header list is over the limit of {limit} bytes")
            headers.append((name, value))
        if pure and key is not None:
            if len(_BLOCKS) >= _CACHE_LIMIT:
                _BLOCKS.clear()
            _BLOCKS[key] = (tuple(headers), total)
        return headers


def _decode_int(data: bytes | memoryview, pos: int, prefix_bits: int) -> tuple[int, int]:
    mask = (1 << prefix_bits) - 1
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise HPACKError("truncated integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise HPACKError("integer is too large")


#: Header blocks encoded lately, by their fields: the encoder keeps no state that
#: would make the same fields encode differently, and a caller sends the same
#: headers call after call.
_ENCODED: dict[tuple[tuple[str, str], ...], bytes] = {}

#: Header blocks decoded lately that neither read nor change the dynamic table, by
#: their bytes: a peer that does not index (micro, most gRPC trailers) sends the
#: same block call after call, and it then decodes with one lookup.
_BLOCKS: dict[bytes, tuple[tuple[tuple[str, str], ...], int]] = {}
#: Blocks longer than this are decoded each time (and not kept).
_BLOCK_CACHE_MAX = 1024

#: Strings decoded lately, by their encoded form: peers send the same names and
#: values call after call, and Huffman decoding is the costly part of a block.
_STRINGS: dict[bytes, str] = {}


def _decode_str(data: bytes | memoryview, pos: int) -> tuple[str, int]:
    if pos >= len(data):
        raise HPACKError("truncated string")
    start = pos
    huffman = data[pos] & 0x80
    length, pos = _decode_int(data, pos, 7)
    end = pos + length
    if end > len(data):
        raise HPACKError("string runs past the end of the header block")
    key = bytes(data[start:end])
    text = _STRINGS.get(key)
    if text is None:
        raw = key[pos - start :]
        text = _text(huffman_decode(raw) if huffman else raw)
        if length <= 256:
            if len(_STRINGS) >= _CACHE_LIMIT:
                _STRINGS.clear()
            _STRINGS[key] = text
    return text, end
