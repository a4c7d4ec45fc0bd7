"""agentwatch's Grafana dashboards, built with grafana-foundation-sdk's Python builders.

One module per dashboard (fleet, agents, server, scaler, insights); ``panels`` holds the few
helpers they share (selectors, thresholds, links, panel shapes). ``dashboards/build.py`` writes
the JSON Grafana loads; the tests lint that JSON and run every query against a real Prometheus.
"""
