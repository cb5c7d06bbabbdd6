"""The mDNS registry's TXT record: one node's ServiceRecord in DNS-SD TXT strings.

The record's JSON (the shape the etcd registry stores) is zlib-compressed and
cut into numbered strings, because one TXT string holds at most 255 bytes:
``micro=1``, ``n=<count>``, ``0=<bytes>``, ``1=<bytes>``, ... (RFC 6763 allows
binary values). Decoding refuses a record that inflates past
``MAX_RECORD_BYTES``, a guard against zlib bombs from the network.
"""

from __future__ import annotations

import json
import zlib

from .base import Node, ServiceRecord
from .record import record_from_json, record_json

__all__ = ["MAX_RECORD_BYTES", "TXT_FORMAT", "decode_txt", "encode_txt", "txt_strings"]

#: a decoded record larger than this is refused (a guard against zlib bombs)
MAX_RECORD_BYTES = 4 * 1024 * 1024
#: TXT format version, the value of the ``micro`` key
TXT_FORMAT = b"1"
#: the longest TXT string (its length is one byte)
_TXT_STRING = 255


def encode_txt(service: ServiceRecord, node: Node) -> bytes:
    """The TXT rdata: ``micro=1``, ``n=<count>``, then numbered zlib chunks."""
    record = record_json(service, node)
    data = json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    packed = zlib.compress(data.encode(), 9)
    strings = [b"micro=" + TXT_FORMAT]
    chunks: list[bytes] = []
    position = 0
    while position < len(packed):
        prefix = f"{len(chunks)}=".encode()
        size = _TXT_STRING - len(prefix)
        chunks.append(prefix + packed[position : position + size])
        position += size
    strings.append(f"n={len(chunks)}".encode())
    strings.extend(chunks)
    return b"".join(bytes((len(s),)) + s for s in strings)


def txt_strings(text: bytes) -> dict[bytes, bytes]:
    """The ``key=value`` strings of TXT rdata; the first of a repeated key wins."""
    out: dict[bytes, bytes] = {}
    position = 0
    while position < len(text):
        length = text[position]
        item = text[position + 1 : position + 1 + length]
        position += 1 + length
        key, _, value = item.partition(b"=")
        out.setdefault(key, value)
    return out


def decode_txt(text: bytes) -> ServiceRecord | None:
    """The one-node record in TXT rdata; None if it is not a micro record.

    Raises ValueError, TypeError, KeyError, AttributeError or zlib.error when it
    claims to be one but is unreadable (truncated, too large, malformed).
    """
    strings = txt_strings(text)
    if strings.get(b"micro") != TXT_FORMAT:
        return None
    count = int(strings[b"n"])
    packed = b"".join(strings[str(i).encode()] for i in range(count))
    inflate = zlib.decompressobj()
    data = inflate.decompress(packed, MAX_RECORD_BYTES)
    if inflate.unconsumed_tail or not inflate.eof:
        raise ValueError("record too large or truncated")
    record = record_from_json(json.loads(data))
    if len(record.nodes) != 1:
        raise ValueError("a TXT record holds exactly one node")
    return record
