"""Cloud Function `predict`: Serve predictions from the production models."""

import functions_framework


@functions_framework.http
def predict(request):
    return ({"error": "not implemented yet"}, 501)
