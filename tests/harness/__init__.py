"""Shared test harness: a private Docker engine, a running exporter, metric parsing."""
