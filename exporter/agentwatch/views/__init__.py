"""Insights where people look: the ``crashes``/``health``/``top`` commands and the exporter's fleet page.

Both read the JSON of ``GET /api/crashes`` and ``GET /api/health`` (docs/insights.md) through the
typed models of :mod:`agentwatch.views.model`; neither imports the insights engine, so the page
renders exactly what the API answers and the CLI can read any exporter.
"""
