"""JSON codec (``application/json``, ``application/grpc+json``), on msgspec."""

from __future__ import annotations

import msgspec

from ._msgspec import MsgspecCodec


class JsonCodec(MsgspecCodec):
    name = "json"
    content_type = "application/json"
    label = "JSON"
    module = msgspec.json
