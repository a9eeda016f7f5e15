resource "google_monitoring_notification_channel" "email" {
  count        = var.alert_email == null ? 0 : 1
  display_name = "${var.name_prefix} operators"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }
  depends_on = [terraform_data.apis_ready]
}

locals {
  notification_channels = google_monitoring_notification_channel.email[*].id
}

resource "google_monitoring_alert_policy" "function_errors" {
  display_name          = "${var.name_prefix}: function 5xx responses"
  combiner              = "OR"
  notification_channels = local.notification_channels
  depends_on            = [terraform_data.apis_ready]
  conditions {
    display_name = "5xx responses of any function"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\" AND resource.labels.service_name = starts_with(\"${var.name_prefix}-\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }
  documentation {
    content = "A function answered 5xx. Logs: resource.type=cloud_run_revision severity>=ERROR. Dead letters: python -m shared.cli dead-letters."
  }
}

resource "google_monitoring_alert_policy" "alerts_topic" {
  display_name          = "${var.name_prefix}: messages on the alerts topic"
  combiner              = "OR"
  notification_channels = local.notification_channels
  depends_on            = [terraform_data.apis_ready]
  conditions {
    display_name = "a message was published on ${local.topics.alerts}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_topic\" AND metric.type = \"pubsub.googleapis.com/topic/send_message_operation_count\" AND resource.labels.topic_id = \"${local.topics.alerts}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }
  documentation {
    content = "The monitor raised or resolved an alert, or collection rejected a batch. Details: python -m shared.cli alerts, and reports/latest.html in the data bucket."
  }
}

resource "google_billing_budget" "monthly" {
  count           = var.billing_account == null ? 0 : 1
  billing_account = var.billing_account
  display_name    = "${var.name_prefix} monthly budget"

  budget_filter {
    projects = ["projects/${data.google_project.this.number}"]
  }
  amount {
    specified_amount {
      currency_code = var.budget_currency
      # Money is whole units plus nanos: 4.5 is units "4" and 500000000 nanos.
      units = tostring(floor(var.budget_amount))
      nanos = floor((var.budget_amount - floor(var.budget_amount)) * 100 + 0.5) * 10000000
    }
  }
  dynamic "threshold_rules" {
    for_each = [0.5, 0.8, 1.0]
    content {
      threshold_percent = threshold_rules.value
    }
  }
  all_updates_rule {
    monitoring_notification_channels = local.notification_channels
    disable_default_iam_recipients   = false
  }
  depends_on = [terraform_data.apis_ready]
}
