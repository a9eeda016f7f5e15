"""Cloud Function ``collect_data``: collect new observations, validate, store once, announce.

HTTP, called by Cloud Scheduler (OIDC) or an operator. An empty body collects the
configured window from every configured source; ``{"source", "window", "start"}``
narrows it. See docs/collect.md.
"""

import functions_framework

from shared.platform import runtime
from shared.collect.service import Collector, parse_request
from shared.core.dataset_spec import load_spec
from shared.platform.http import http_entry, read_json_object
from shared.collect.sources import build_source, parse_sources

settings, backends = runtime.start()
spec = load_spec(settings.dataset_spec)
collector = Collector(settings, backends, spec, {
    config.name: build_source(config, spec, backends)
    for config in parse_sources(settings.collect_sources)})


@functions_framework.http
@http_entry("collect_data", methods=("POST",))
def collect_data(request):
    body = read_json_object(request, allow_empty=True)
    return collector.run(parse_request(body, settings, spec, list(collector.sources)))
