import os

import pytest

# mDNS in tests stays on loopback: nothing may go out on other interfaces.
# Subprocesses started by tests inherit this.
os.environ["MICRO_MDNS_INTERFACES"] = "127.0.0.1"
# Services in tests keep their default store in memory, not in the user's data directory.
os.environ.setdefault("MICRO_STORE", "memory")

pytest_plugins = [
    "tests.servers",
    "tests.servers_redis",
    "tests.servers_nats",
    "tests.servers_postgres",
    "tests.servers_s3",
]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
