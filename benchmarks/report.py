"""Collect per-round figures, take medians and print the table and ratios."""

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from systems import REFERENCES, is_micro

# (key, column title)
METRICS: tuple[tuple[str, str], ...] = (
    ("seq_req_s", "1 caller req/s"),
    ("seq_p50_ms", "p50 ms"),
    ("seq_p99_ms", "p99 ms"),
    ("c64_req_s", "64 in flight req/s"),
    ("c64_p50_ms", "p50 ms"),
    ("c64_p99_ms", "p99 ms"),
    ("h2load1_req_s", "h2load -c1 -m1 req/s"),
    ("h2load64_req_s", "h2load -c1 -m64 req/s"),
    ("stream_msg_s", "stream msg/s"),
    ("large_mib_s", "1 MiB echo MiB/s"),
    ("large_p50_ms", "p50 ms"),
)


class Results:
    """``values[system][metric]`` is the list of that metric's per-round values."""

    def __init__(self, systems: list[str]) -> None:
        self.systems = systems
        self.values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.failures: list[str] = []

    def add(self, system: str, metric: str, value: float) -> None:
        self.values[system][metric].append(value)

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def median(self, system: str, metric: str) -> float:
        values = self.values[system][metric]
        return statistics.median(values) if values else math.nan

    def dump(self, path: Path) -> None:
        data = {
            "rounds": {s: dict(m) for s, m in self.values.items()},
            "medians": {s: {key: self.median(s, key) for key, _ in METRICS} for s in self.systems},
            "failures": self.failures,
        }
        path.write_text(json.dumps(data, indent=2) + "\n")


def _fmt(value: float, metric: str) -> str:
    if math.isnan(value):
        return "—"
    if metric.endswith("_ms"):
        return f"{value:.2f}"
    return f"{value:,.0f}"


def _ratio(value: float, reference: float) -> str:
    if math.isnan(value) or math.isnan(reference) or reference == 0:
        return "—"
    return f"{value / reference:.2f}x"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(results: Results) -> str:
    """Markdown table of medians, then micro's ratios to each reference from the same run."""
    metrics = [m for m in METRICS if any(results.values[s][m[0]] for s in results.systems)]
    header = ["system", *(title for _, title in metrics)]
    rows = [
        [system, *(_fmt(results.median(system, key), key) for key, _ in metrics)]
        for system in results.systems
    ]
    out = [_table(header, rows)]
    micro = [s for s in results.systems if is_micro(s)]
    ratio_rows = [
        [
            f"{system} / {reference}",
            *(
                _ratio(results.median(system, key), results.median(reference, key))
                for key, _ in metrics
            ),
        ]
        for reference in REFERENCES
        if reference in results.systems
        for system in micro
    ]
    if ratio_rows:
        out += [
            "",
            "Ratios (req/s, msg/s, MiB/s: above 1 means micro is faster;"
            " latency: below 1 means lower):",
            "",
            _table(["ratio", *(title for _, title in metrics)], ratio_rows),
        ]
    if results.failures:
        out += ["", "Failures:", *(f"- {f}" for f in results.failures)]
    return "\n".join(out)
