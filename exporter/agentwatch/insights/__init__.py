"""Insights: memory trends, crash classification and advice, health scores, and their storage.

Pure modules (``memory``, ``crashes``, ``health``) under a small service (``service``) that the
insights collector drives each cycle; ``store`` keeps the verdicts in SQLite and ``api`` shapes the
JSON of /api/crashes and /api/health. See docs/insights.md.
"""
