"""Alertmanager's side of the pack: the config template, its notification templates and the renderer.

The template ships inside the package (``alertmanager/``) so that ``agentwatch render-alertmanager``
works from any directory after a plain ``pip install``; ``alert-rules/alertmanager`` in the repo is
a link to it, so there is one copy.
"""

from agentwatch.alerting.render import (
    CHANNELS,
    DEFAULT_TEMPLATE,
    TEMPLATE_DIR,
    RenderError,
    main,
    resolve,
    write_private,
)

__all__ = ["CHANNELS", "DEFAULT_TEMPLATE", "TEMPLATE_DIR", "RenderError", "main", "resolve", "write_private"]
