resource "google_cloud_scheduler_job" "collect" {
  name        = "${var.name_prefix}-collect-daily"
  description = "Daily data collection"
  schedule    = var.collect_schedule
  time_zone   = var.scheduler_time_zone
  region      = var.region

  retry_config {
    retry_count          = 3
    min_backoff_duration = "60s"
    max_backoff_duration = "600s"
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.functions["collect_data"].service_config[0].uri
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")
    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.functions["collect_data"].service_config[0].uri
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_cloud_scheduler_job" "monitor" {
  name        = "${var.name_prefix}-monitor"
  description = "Monitoring every 6 hours"
  schedule    = var.monitor_schedule
  time_zone   = var.scheduler_time_zone
  region      = var.region

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.functions["monitor"].service_config[0].uri
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")
    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.functions["monitor"].service_config[0].uri
    }
  }
  depends_on = [google_project_service.apis]
}
