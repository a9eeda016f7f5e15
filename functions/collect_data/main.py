"""Cloud Function `collect_data`: Collect new observations, validate them and announce accepted batches."""

import functions_framework


@functions_framework.http
def collect_data(request):
    return ({"error": "not implemented yet"}, 501)
