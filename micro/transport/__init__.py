"""The wire: gRPC framing and call shapes (sans-IO), and HTTP/2 and HTTP/1.1 drivers on AnyIO."""
