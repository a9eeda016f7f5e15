"""Cloud Function ``predict``: predictions from the hot-loaded production models.

HTTP. ``POST /`` or ``/predict`` (one observation or ``{"instances": [...]}``),
``GET /health``, ``GET /openapi.json``, ``GET /docs``; a model-updated push to
``/projects/<p>/topics/<t>`` reloads at once. Models load at import, before the
first request. See docs/predict.md.
"""

from typing import Any

import functions_framework

from shared.core.dataset_spec import load_spec
from shared.platform import runtime
from shared.platform.http import ANY_METHOD, http_entry
from shared.predict.api import PredictApi
from shared.predict.service import PredictService

settings, backends = runtime.start()
service = PredictService(settings, backends, load_spec(settings.dataset_spec))
service.check_now()
api = PredictApi(service, settings.predict_api_key)
runtime.loaded()


@functions_framework.http
@http_entry("predict", methods=ANY_METHOD, max_body_bytes=settings.max_request_bytes)
def predict(request: Any) -> tuple[Any, int, dict[str, str]]:
    """Route the request (predict, health, OpenAPI, docs, model-updated push)."""
    return api.handle(request)
