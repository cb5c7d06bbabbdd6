"""Health: the standard gRPC health service and readiness checks.

``grpc.health.v1.Health`` answers the probes of gRPC tooling; the listener
also answers ``GET /health`` (live) and ``GET /health/ready`` (ready, with the
result of each named check), and both report the same state.
"""

from .checks import Check, CheckResult, HealthChecks, Readiness
from .grpc import (
    HEALTH_SERVICE_NAME,
    HealthService,
    HealthStatus,
    ServingStatus,
    decode_request,
    decode_response,
    encode_response,
)

__all__ = [
    "HEALTH_SERVICE_NAME",
    "Check",
    "CheckResult",
    "HealthChecks",
    "HealthService",
    "HealthStatus",
    "Readiness",
    "ServingStatus",
    "decode_request",
    "decode_response",
    "encode_response",
]
