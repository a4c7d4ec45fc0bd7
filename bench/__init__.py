"""Benchmarks of the agentwatch exporter against what users run instead.

``python -m bench`` starts a real workload (busybox containers on a private Docker engine and
agent-like processes), runs the real exporter and the peers on it in one run (Debian's
process-exporter, ``docker stats --no-stream``, a naive loop over the SDK's one-shot stats), and
writes the figures and their ratios to ``bench/results/`` as Markdown and JSON.
"""
