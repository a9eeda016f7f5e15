"""Cloud Function `retrain`: Train, gate and promote models when data-ready arrives."""

import functions_framework


@functions_framework.cloud_event
def retrain(cloud_event):
    raise NotImplementedError("retrain is not implemented yet")
