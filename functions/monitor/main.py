"""Cloud Function `monitor`: Evaluate drift, accuracy and operations; raise alerts."""

import functions_framework


@functions_framework.http
def monitor(request):
    return ({"error": "not implemented yet"}, 501)
