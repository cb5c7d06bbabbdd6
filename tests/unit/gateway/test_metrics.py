"""The dashboard's live metrics: a node's Prometheus text read into per-endpoint
totals, and rates and latency quantiles from consecutive readings."""

from __future__ import annotations

import math

import pytest

from micro.gateway.metrics import MetricsHistory, parse_node_metrics, quantile

BOUNDS = (0.001, 0.01, 0.1, math.inf)


def exposition(service: str, endpoint: str, ok: int, failed: int, buckets: list[int]) -> str:
    """Prometheus text as prometheus_client writes it, for one endpoint."""
    lines = [
        "# HELP micro_server_requests_total Calls handled.",
        "# TYPE micro_server_requests_total counter",
        f'micro_server_requests_total{{code="OK",endpoint="{endpoint}",service="{service}"}} {ok}',
        f'micro_server_requests_total{{code="INTERNAL",endpoint="{endpoint}",service="{service}"}}'
        f" {failed}",
        "# HELP micro_server_request_duration_seconds Time to handle a call.",
        "# TYPE micro_server_request_duration_seconds histogram",
    ]
    for bound, count in zip(BOUNDS, buckets, strict=True):
        le = "+Inf" if math.isinf(bound) else repr(bound)
        lines.append(
            "micro_server_request_duration_seconds_bucket"
            f'{{endpoint="{endpoint}",le="{le}",service="{service}"}} {count}'
        )
    lines.append(
        "micro_server_request_duration_seconds_count"
        f'{{endpoint="{endpoint}",service="{service}"}} {buckets[-1]}'
    )
    return "\n".join(lines) + "\n"


def test_a_node_reading_keeps_only_its_service() -> None:
    text = exposition("shop", "Cart.Add", 8, 2, [1, 6, 10, 10]) + exposition(
        "other", "X.Y", 5, 0, [5, 5, 5, 5]
    ).replace("# HELP", "# IGNORED").replace("# TYPE", "# IGNORED")
    reading = parse_node_metrics(text, "shop")
    assert list(reading) == ["Cart.Add"]
    totals = reading["Cart.Add"]
    assert (totals.requests, totals.errors) == (10.0, 2.0)
    assert totals.buckets == [(0.001, 1.0), (0.01, 6.0), (0.1, 10.0), (math.inf, 10.0)]


def test_text_that_is_not_prometheus_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_node_metrics('micro_server_requests_total{code="OK" 1\n', "shop")


def test_quantiles_interpolate_within_their_bucket() -> None:
    buckets = [(0.001, 0.0), (0.01, 50.0), (0.1, 100.0), (math.inf, 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.25, buckets) == pytest.approx(0.001 + 0.009 * 0.5)
    assert quantile(0.99, buckets) == pytest.approx(0.01 + 0.09 * 49 / 50)
    # Past the last finite bound, that bound is all that is known.
    assert quantile(0.99, [(0.1, 1.0), (math.inf, 100.0)]) == pytest.approx(0.1)
    assert quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert quantile(0.5, []) is None


def test_rates_and_quantiles_come_from_consecutive_readings() -> None:
    history = MetricsHistory()
    read = parse_node_metrics
    history.add("shop", {"n1": read(exposition("shop", "A.B", 10, 0, [10, 10, 10, 10]), "shop")}, 0)
    history.add(
        "shop",
        {
            "n1": read(exposition("shop", "A.B", 30, 10, [10, 30, 40, 40]), "shop"),
            "n2": read(exposition("shop", "A.B", 100, 0, [100, 100, 100, 100]), "shop"),
        },
        2,
    )
    history.add(
        "shop",
        {
            "n1": read(exposition("shop", "A.B", 30, 10, [10, 30, 40, 40]), "shop"),
            # n2 restarted: its counters start again from zero.
            "n2": read(exposition("shop", "A.B", 4, 0, [4, 4, 4, 4]), "shop"),
        },
        4,
    )
    series = history.series("shop")
    assert series["samples"] == 3
    points = series["endpoints"]["A.B"]["points"]
    assert [p["t"] for p in points] == [-2.0, 0.0]
    # First interval: n1 handled 30 calls (10 failed) in 2 s; n2 was new, so not counted.
    first = points[0]
    assert first["rate"] == pytest.approx(15.0)
    assert first["error_rate"] == pytest.approx(5.0)
    assert first["p50"] == pytest.approx(0.001 + 0.009 * 15 / 20)
    assert first["p99"] == pytest.approx(0.01 + 0.09 * 9.7 / 10)
    # Second interval: n1 idle, n2's 4 calls since its restart.
    second = points[1]
    assert second["rate"] == pytest.approx(2.0)
    assert second["error_rate"] == 0
    assert second["p50"] is not None and second["p50"] <= 0.001
    assert series["endpoints"]["A.B"]["requests"] == 44
    assert series["endpoints"]["A.B"]["errors"] == 10
    # One node's own series.
    only_n1 = history.series("shop", node="n1")["endpoints"]["A.B"]["points"]
    assert [p["rate"] for p in only_n1] == [15.0, 0.0]
    assert only_n1[1]["p50"] is None


def test_readings_are_kept_in_a_bounded_ring() -> None:
    history = MetricsHistory(history=3, max_services=2)
    for i in range(10):
        history.add("a", {}, float(i))
    assert history.series("a")["samples"] == 3
    assert history.due("a", now=9.5) is False
    assert history.due("a", now=10.0) is True
    history.add("b", {}, 0.0)
    history.add("c", {}, 0.0)
    # The least recently read service was dropped.
    assert history.series("a")["samples"] == 0
    assert history.due("a") is True
    assert history.series("c")["samples"] == 1
