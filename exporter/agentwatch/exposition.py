"""How every agentwatch ``/metrics`` answers: one format choice, made once, for the exporter, the
scaler and instrumented agent servers alike.

The default is the classic text format, labelled ``version=0.0.4`` on purpose: it is the version
every Prometheus 2.x (and 3.x) knows by name. prometheus_client >= 0.22 labels the same bytes
``version=1.0.0`` (its ``CONTENT_TYPE_LATEST``), a label Prometheus 2.x does not know; agentwatch
emits no UTF-8 metric names, so 0.0.4 describes the body exactly. A scraper that asks for
OpenMetrics (``Accept: application/openmetrics-text``, as Prometheus does) gets OpenMetrics 1.0.0.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.exposition import generate_latest as _text
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as _OPENMETRICS_1_0_0
from prometheus_client.openmetrics.exposition import generate_latest as _openmetrics
from prometheus_client.registry import Collector

#: The classic text format, named by the version Prometheus 2.x knows.
TEXT_CONTENT_TYPE: str = CONTENT_TYPE_PLAIN_0_0_4
#: OpenMetrics 1.0.0, for scrapers that ask for it.
OPENMETRICS_CONTENT_TYPE: str = _OPENMETRICS_1_0_0


class Families(Collector):
    """Adapter so prometheus_client's encoders can render a plain list of families."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def wants_openmetrics(accept: str) -> bool:
    """True if the ``Accept`` header names OpenMetrics (any version, any position)."""
    return any(part.split(";")[0].strip() == "application/openmetrics-text" for part in accept.split(","))


def content_type(openmetrics: bool) -> str:
    return OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE


def encode(source: Collector, openmetrics: bool) -> bytes:
    """``source``'s families in the chosen format."""
    return _openmetrics(source) if openmetrics else _text(source)


#: The line that ends an OpenMetrics body.
_EOF = b"# EOF\n"


def family_chunks(families: Iterable[Metric], openmetrics: bool) -> Iterator[bytes]:
    """The bytes of ``encode``, one family at a time (the OpenMetrics end line last).

    prometheus_client renders a whole body as one list of lines, then one string, then bytes: at
    100 containers and 1,000 processes (a 0.9 MB body) that was 2.7 MB of transient allocations,
    which the exporter's peak resident memory kept (issue 14). A family at a time, the largest
    transient is one family's text.
    """
    for family in families:
        text = encode(Families((family,)), openmetrics)
        yield text.removesuffix(_EOF) if openmetrics else text
    if openmetrics:
        yield _EOF


def encode_gzipped(families: Iterable[Metric], openmetrics: bool, level: int) -> bytes:
    """``encode``'s bytes gzipped as they are rendered: the uncompressed body never exists at once."""
    z = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: a gzip member, as gzip.compress makes
    return b"".join([*(z.compress(chunk) for chunk in family_chunks(families, openmetrics)), z.flush()])


def gunzipped_size(body: bytes) -> int:
    """The unzipped size of a gzip member, from its trailer (modulo 4 GiB, as gzip keeps it)."""
    return int.from_bytes(body[-4:], "little") if len(body) >= 18 else 0


def gunzip_pieces(body: bytes, piece: int = 256 * 1024) -> Iterator[bytes]:
    """A body made by ``encode_gzipped``, unzipped at most ``piece`` bytes at a time (never empty)."""
    unzip = zlib.decompressobj(31)
    data = body
    while data:
        out = unzip.decompress(data, piece)
        data = unzip.unconsumed_tail
        if out:
            yield out
    rest = unzip.flush()
    if rest:
        yield rest


def negotiate(source: Collector, accept: str) -> tuple[bytes, str]:
    """(body, content type) for a request with this ``Accept`` header."""
    openmetrics = wants_openmetrics(accept)
    return encode(source, openmetrics), content_type(openmetrics)
