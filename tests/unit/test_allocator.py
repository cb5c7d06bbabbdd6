"""glibc malloc thresholds: set once per process when a client or service starts.

Each case runs in a fresh interpreter, since the setting is process-wide.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from micro.allocator import _glibc, tune_allocator

pytestmark = pytest.mark.skipif(
    not _glibc(), reason="micro tunes malloc only under glibc, and this C library is not glibc"
)

# A freed 8 MiB block: handed back to the kernel at once with glibc's defaults
# (it is over the 128 KiB mmap threshold), kept in the heap once tuned.
PROBE = textwrap.dedent(
    """
    import os, sys

    def resident():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def kept_after_free():
        before = resident()
        block = b"x" * (8 << 20)  # every page written
        del block
        return resident() - before
    """
)


def run(code: str, **env: str) -> str:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "MICRO_MALLOC"
    }
    environ.pop("GLIBC_TUNABLES", None)
    environ.update(env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE + textwrap.dedent(code)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_tuned_once_and_keeps_freed_large_blocks() -> None:
    out = run(
        """
        from micro.allocator import tune_allocator
        first = tune_allocator()
        again = tune_allocator()
        print(first, again, kept_after_free())
        """
    )
    first, again, kept = out.split()
    assert (first, again) == ("True", "False")
    assert int(kept) >= 7 << 20


def test_system_leaves_the_allocator_alone() -> None:
    out = run(
        """
        from micro.allocator import tune_allocator
        print(tune_allocator(), kept_after_free())
        """,
        MICRO_MALLOC="system",
    )
    tuned, kept = out.split()
    assert tuned == "False"
    assert int(kept) < 1 << 20


@pytest.mark.parametrize(
    "setting",
    [
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072"),
    ],
)
def test_own_malloc_settings_win(setting: tuple[str, str]) -> None:
    name, value = setting
    out = run(
        """
        from micro.allocator import tune_allocator
        print(tune_allocator())
        """,
        **{name: value},
    )
    assert out == "False"


def test_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="MICRO_MALLOC must be one of tuned, system"):
        tune_allocator({"MICRO_MALLOC": "jemalloc"})


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_client_starting_tunes_its_process(backend: str) -> None:
    out = run(
        f"""
        import anyio, micro
        from micro.allocator import tune_allocator

        async def main():
            async with micro.Client():
                print(tune_allocator(), kept_after_free())

        anyio.run(main, backend={backend!r})
        """
    )
    again, kept = out.split()
    assert again == "False"  # already decided when the client started
    assert int(kept) >= 7 << 20
