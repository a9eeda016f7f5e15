"""Cloud Function ``collect_data``: collect new observations, validate, store once, announce.

HTTP, called by Cloud Scheduler (OIDC) or an operator. An empty body collects the
configured window from every configured source; ``{"source", "window", "start"}``
narrows it. See docs/collect.md.
"""

from typing import Any

import functions_framework

from shared.collect import api
from shared.collect.service import Collector
from shared.collect.sources import build_sources
from shared.core.dataset_spec import load_spec
from shared.platform import runtime
from shared.platform.http import http_entry

settings, backends = runtime.start()
spec = load_spec(settings.dataset_spec)
collector = Collector(settings, backends, spec, build_sources(settings.collect_sources, spec, backends))


@functions_framework.http
@http_entry("collect_data", methods=("POST",), max_body_bytes=settings.max_request_bytes)
def collect_data(request: Any) -> tuple[Any, int]:
    """Collect what the request asks for; 200, or 502 when a source failed outright."""
    parsed = api.read_request(request, spec, collector.source_names, settings.collect_window)
    return api.respond(collector.run(parsed))
