"""The client: calls and streams to services by name, over a pool of HTTP/2 connections."""
