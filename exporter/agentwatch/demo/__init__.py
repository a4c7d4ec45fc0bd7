"""A realistic demo agent fleet: an aiohttp agent server whose agents are real child processes.

Used by the tests, the end-to-end loop and the demo (``agentwatch demo-agents``). See the README's
probe section for its endpoints. ``agentwatch demo`` (``loop.py``) runs the whole monitoring loop
around it on one machine and walks through a scripted incident.
"""
