"""Scraping a target the way Prometheus does, timed, and counting what it exports."""

from __future__ import annotations

import gzip
import http.client
import math
import statistics
import time
from dataclasses import dataclass

from agentwatch.local.scrape import Scrape

#: What Prometheus 2.42 sends: it prefers OpenMetrics and always accepts gzip.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
}
PLAIN_HEADERS = {"Accept": "text/plain;version=0.0.4"}


class ScrapeError(RuntimeError):
    """A target answered something other than 200 with a body."""


class Target:
    """One keep-alive HTTP connection to a metrics endpoint, like a Prometheus scrape loop."""

    def __init__(self, host: str, port: int, path: str = "/metrics", timeout: float = 60.0) -> None:
        self.host, self.port, self.path, self.timeout = host, port, path, timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, headers: dict[str, str]) -> tuple[bytes, float]:
        """The decoded body and the seconds from sending the request to the last body byte."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                start = time.perf_counter()
                self._conn.request("GET", self.path, headers=headers)
                resp = self._conn.getresponse()
                body = resp.read()
                elapsed = time.perf_counter() - start
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                continue
            if resp.status != 200 or not body:
                raise ScrapeError(f"{self.host}:{self.port}{self.path} answered {resp.status}: {body[:200]!r}")
            if resp.getheader("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            return body, elapsed
        raise AssertionError("unreachable")

    def text(self) -> str:
        """One untimed scrape in the classic text format (used for counting and reading values)."""
        return self.get(PLAIN_HEADERS)[0].decode()

    def read(self) -> Scrape:
        """One untimed scrape asked for as Prometheus asks (OpenMetrics, gzip), parsed: the bookkeeping
        scrapes around a measurement must not make the exporter render a second encoding."""
        return Scrape.parse(self.get(PROMETHEUS_HEADERS)[0].decode(), openmetrics=True)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def timed_scrapes(target: Target, count: int, pace: float = 0.0) -> tuple[list[float], list[bytes]]:
    """``count`` Prometheus-style scrapes, ``pace`` seconds apart (start to start); latencies and bodies."""
    latencies, bodies = [], []
    for _ in range(count):
        started = time.perf_counter()
        body, elapsed = target.get(PROMETHEUS_HEADERS)
        latencies.append(elapsed)
        bodies.append(body)
        rest = pace - (time.perf_counter() - started)
        if rest > 0:
            time.sleep(rest)
    return latencies, bodies


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): the p99 of 100 scrapes is the second slowest."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latency:
    median_s: float
    p99_s: float
    max_s: float
    count: int

    @classmethod
    def of(cls, values: list[float]) -> Latency:
        return cls(statistics.median(values), percentile(values, 99), max(values), len(values))


def count_series(text: str) -> int:
    """Samples in a text exposition: every non-comment, non-empty line is one series."""
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))
