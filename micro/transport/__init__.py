"""The wire: gRPC framing and call shapes (sans-IO), and HTTP/2 and HTTP/1.1 drivers on AnyIO."""

from importlib.machinery import EXTENSION_SUFFIXES

from . import hpack, http2

#: True when the sans-IO HTTP/2 core (``hpack``, ``http2``) is the optional compiled build
#: (mypyc, see docs/performance.md) rather than the pure-Python modules, the default.
compiled: bool = all(
    (module.__file__ or "").endswith(tuple(EXTENSION_SUFFIXES)) for module in (hpack, http2)
)
