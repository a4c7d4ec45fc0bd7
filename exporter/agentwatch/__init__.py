"""agentwatch: monitoring and self-healing for fleets of AI agents in Docker containers."""

__version__ = "0.1.0"
