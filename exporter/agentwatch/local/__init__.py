"""Real servers on this machine, started and stopped by their owner: one way for everyone.

A private Docker engine (``dockerd``), Prometheus, Alertmanager, the exporter and the demo agent
server as managed processes on free loopback ports. The product (``agentwatch demo``), the tests
and the benchmark all start them from here, so that each cleans up the same way, also when its
owner is interrupted (``signals``) or killed (``watchdog``). Nothing here imports pytest.
"""
