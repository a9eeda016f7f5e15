"""Cloud Function ``monitor``: drift, accuracy against actuals, operations; alerts and reports.

HTTP. Cloud Scheduler (every 6 h, OIDC) and operators ``POST /`` (optionally
``{"window": "P1D"}``); the model-updated push subscription posts to
``/projects/<p>/topics/<t>`` and triggers a run as well. See docs/monitor.md.
"""

import functions_framework

from shared.platform import runtime
from shared.core.dataset_spec import load_spec
from shared.platform.durations import parse_duration
from shared.platform.http import ApiError, field_error, http_entry, read_json_object, unknown_fields
from shared.monitor.service import Monitor

settings, backends = runtime.start()
monitor_ = Monitor(settings, backends, load_spec(settings.dataset_spec))


@functions_framework.http
@http_entry("monitor", methods=("POST",))
def monitor(request):
    if request.path.startswith("/projects/") and "/topics/" in request.path:
        return monitor_.run(cause="model-updated"), 200
    body = read_json_object(request, allow_empty=True)
    errors = unknown_fields(body, ("window",))
    window = None
    if "window" in body:
        try:
            window = parse_duration(body["window"])
        except ValueError as exc:
            errors.append(field_error("window", str(exc)))
    if errors:
        raise ApiError(400, "invalid monitor request", errors)
    return monitor_.run(window, cause="request"), 200
