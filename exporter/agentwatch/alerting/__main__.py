"""``python -m agentwatch.alerting``: the same as ``agentwatch render-alertmanager``."""

import sys

from agentwatch.alerting.render import main

sys.exit(main())
