"""Codecs by content type: JSON, msgpack, protobuf and raw bytes."""

from .base import Codec, content_types, for_content_type, get, parse_content_type, register

__all__ = ["Codec", "content_types", "for_content_type", "get", "parse_content_type", "register"]
