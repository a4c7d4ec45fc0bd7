"""The exporter: collectors, the background collection loop and the HTTP app."""
