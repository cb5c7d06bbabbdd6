"""A raw MCP ``initialize`` request over Streamable HTTP, for tests of what the HTTP
endpoint lets through (auth, origins) without the SDK's client."""

from __future__ import annotations

from typing import Any

#: the JSON-RPC body of an ``initialize`` request
INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
#: the Accept header Streamable HTTP asks clients to send
ACCEPT = {"accept": "application/json, text/event-stream"}
