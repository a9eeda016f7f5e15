# The operators' dashboard: system state, live MAPE per target, predict's latency, request and
# error rates, daily cost, open alerts. Cloud Run's own metrics give traffic and latency; the
# rest are log-based metrics over the monitor's structured log entries ("monitor run
# finished", "accuracy measured": shared/monitor/service.py; tests/test_terraform.py checks
# the fields read here are the ones the code writes).
locals {
  monitor_log = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name_prefix}-monitor\""
  log_metrics = {
    monitor_runs = {
      description = "Monitor runs, by the status of the system after the run (green, yellow, red)."
      filter      = "${local.monitor_log} AND jsonPayload.message=\"monitor run finished\""
      value       = null
      unit        = "1"
      labels      = ["status"]
    }
    open_alerts = {
      description = "Alerts open after each monitor run."
      filter      = "${local.monitor_log} AND jsonPayload.message=\"monitor run finished\""
      value       = "EXTRACT(jsonPayload.open_alerts)"
      unit        = "1"
      labels      = []
    }
    daily_cost = {
      description = "predict's daily cost at the measured traffic, estimated by the monitor (USD)."
      filter      = "${local.monitor_log} AND jsonPayload.message=\"monitor run finished\" AND jsonPayload.cost_daily_usd>=0"
      value       = "EXTRACT(jsonPayload.cost_daily_usd)"
      unit        = "USD"
      labels      = []
    }
    model_mape = {
      description = "Live MAPE (%) per target of the versions that served, measured by the monitor once actuals arrive."
      filter      = "${local.monitor_log} AND jsonPayload.message=\"accuracy measured\""
      value       = "EXTRACT(jsonPayload.mape)"
      unit        = "%"
      labels      = ["target"]
    }
  }
  run_filter     = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=starts_with(\"${var.name_prefix}-\")"
  predict_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name_prefix}-predict\""
  user_metric    = { for k in keys(local.log_metrics) : k => "metric.type=\"logging.googleapis.com/user/${var.name_prefix}_${k}\"" }
}

resource "google_logging_metric" "dashboard" {
  for_each    = local.log_metrics
  name        = "${var.name_prefix}_${each.key}"
  description = each.value.description
  filter      = each.value.filter
  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = each.value.value == null ? "INT64" : "DISTRIBUTION"
    unit         = each.value.unit
    display_name = "${var.name_prefix} ${replace(each.key, "_", " ")}"
    dynamic "labels" {
      for_each = toset(each.value.labels)
      content {
        key        = labels.value
        value_type = "STRING"
      }
    }
  }
  value_extractor  = each.value.value
  label_extractors = { for l in each.value.labels : l => "EXTRACT(jsonPayload.${l})" }
  dynamic "bucket_options" {
    for_each = each.value.value == null ? [] : [1]
    content {
      exponential_buckets {
        num_finite_buckets = 32
        growth_factor      = 1.4
        scale              = 0.01
      }
    }
  }
  depends_on = [terraform_data.apis_ready]
}

locals {
  # One line chart: title, filter, how each series is aligned, and the labels it is grouped by.
  dashboard_charts = [
    { title = "System state after each monitor run (runs by status)", filter = "${local.user_metric.monitor_runs} AND resource.type=\"cloud_run_revision\"", aligner = "ALIGN_SUM", group = ["metric.label.status"], period = "21600s" },
    { title = "Live MAPE of the models that served, % (per target)", filter = "${local.user_metric.model_mape} AND resource.type=\"cloud_run_revision\"", aligner = "ALIGN_PERCENTILE_50", group = ["metric.label.target"], period = "21600s" },
    { title = "predict latency, ms (p50, p99)", filter = "${local.predict_filter} AND metric.type=\"run.googleapis.com/request_latencies\"", aligner = "ALIGN_PERCENTILE_99", group = [], period = "300s" },
    { title = "Requests per second, by function and response class", filter = "${local.run_filter} AND metric.type=\"run.googleapis.com/request_count\"", aligner = "ALIGN_RATE", group = ["resource.label.service_name", "metric.label.response_code_class"], period = "300s" },
    { title = "5xx responses per second, by function", filter = "${local.run_filter} AND metric.type=\"run.googleapis.com/request_count\" AND metric.label.response_code_class=\"5xx\"", aligner = "ALIGN_RATE", group = ["resource.label.service_name"], period = "300s" },
    { title = "Estimated daily cost of predict, USD", filter = "${local.user_metric.daily_cost} AND resource.type=\"cloud_run_revision\"", aligner = "ALIGN_PERCENTILE_50", group = [], period = "21600s" },
    { title = "Open alerts after each monitor run", filter = "${local.user_metric.open_alerts} AND resource.type=\"cloud_run_revision\"", aligner = "ALIGN_PERCENTILE_99", group = [], period = "21600s" },
  ]
  dashboard = {
    displayName = "${var.name_prefix}: forecasting system"
    mosaicLayout = {
      columns = 12
      tiles = concat(
        [for i, c in local.dashboard_charts : {
          xPos   = (i % 2) * 6
          yPos   = floor(i / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = c.title
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = c.filter
                    aggregation = {
                      alignmentPeriod    = c.period
                      perSeriesAligner   = c.aligner
                      crossSeriesReducer = length(c.group) == 0 ? "REDUCE_NONE" : (c.aligner == "ALIGN_RATE" || c.aligner == "ALIGN_SUM" ? "REDUCE_SUM" : "REDUCE_MEAN")
                      groupByFields      = c.group
                    }
                  }
                }
              }]
            }
          }
        }],
        [for i, p in [google_monitoring_alert_policy.function_errors, google_monitoring_alert_policy.alerts_topic] : {
          xPos   = 6 + (i % 2) * 3
          yPos   = floor(length(local.dashboard_charts) / 2) * 4
          width  = 3
          height = 4
          widget = {
            title      = p.display_name
            alertChart = { name = p.name }
          }
        }]
      )
    }
  }
}

resource "google_monitoring_dashboard" "main" {
  dashboard_json = jsonencode(local.dashboard)
  depends_on     = [google_logging_metric.dashboard]
}
