"""Cloud Function ``monitor``: drift, accuracy against actuals, operations; alerts and reports.

HTTP. Cloud Scheduler (every 6 h, OIDC) and operators ``POST /`` (optionally
``{"window": "P1D"}``); the model-updated push subscription posts to
``/projects/<p>/topics/<t>`` and triggers a run as well. See docs/monitor.md.
"""

from typing import Any

import functions_framework

from shared.core.dataset_spec import load_spec
from shared.monitor import api
from shared.monitor.service import Monitor
from shared.platform import runtime
from shared.platform.http import http_entry

settings, backends = runtime.start()
monitor_ = Monitor(settings, backends, load_spec(settings.dataset_spec))


@functions_framework.http
@http_entry("monitor", methods=("POST",), max_body_bytes=settings.max_request_bytes)
def monitor(request: Any) -> tuple[Any, int]:
    """Run the monitor on what the request asks for; answers the run's summary."""
    return api.handle(monitor_, request)
