locals {
  scheduler_jobs = {
    collect = { function = "collect_data", schedule = var.collect_schedule, retries = 3, description = "Daily data collection" }
    monitor = { function = "monitor", schedule = var.monitor_schedule, retries = 1, description = "Monitoring every 6 hours" }
  }
}

resource "google_cloud_scheduler_job" "jobs" {
  for_each    = local.scheduler_jobs
  name        = "${var.name_prefix}-${each.key}"
  description = each.value.description
  schedule    = each.value.schedule
  time_zone   = var.scheduler_time_zone
  region      = var.region
  # Scheduler's default deadline is 180 s: a slower run would be retried while still
  # running. Wait for the function's own timeout, and a little more.
  attempt_deadline = "${local.functions[each.value.function].timeout + 30}s"

  retry_config {
    retry_count          = each.value.retries
    min_backoff_duration = "60s"
    max_backoff_duration = "600s"
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.functions[each.value.function].service_config[0].uri
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")
    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.functions[each.value.function].service_config[0].uri
    }
  }
  depends_on = [terraform_data.apis_ready]
}
