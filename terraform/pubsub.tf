resource "google_pubsub_topic" "topics" {
  #checkov:skip=CKV_GCP_83:Messages carry batch and model ids, no personal data; Google-managed encryption.
  for_each                   = local.topics
  name                       = each.value
  message_retention_duration = "604800s"
  depends_on                 = [terraform_data.apis_ready]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Same content as the source topics; Google-managed encryption.
  for_each                   = local.consumed_topics
  name                       = "${local.topics[each.key]}${local.dead_letter_suffix}"
  message_retention_duration = "604800s"
  depends_on                 = [terraform_data.apis_ready]
}

# Dead letters stay here until an operator lists and replays them (python -m shared.cli dead-letters).
resource "google_pubsub_subscription" "dead_letter_pull" {
  for_each                   = local.consumed_topics
  name                       = "${local.topics[each.key]}${local.dead_letter_suffix}-pull"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "push" {
  for_each             = local.push_subscriptions
  name                 = "${var.name_prefix}-${each.key}"
  topic                = google_pubsub_topic.topics[each.value.topic].id
  ack_deadline_seconds = each.value.ack_deadline

  push_config {
    # The path makes functions-framework's CloudEvent carry the topic as its source.
    push_endpoint = "${google_cloudfunctions2_function.functions[each.value.function].service_config[0].uri}/projects/${var.project_id}/topics/${local.topics[each.value.topic]}"
    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      audience              = google_cloudfunctions2_function.functions[each.value.function].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "${var.event_retry_backoff.min}s"
    maximum_backoff = "${var.event_retry_backoff.max}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.value.topic].id
    max_delivery_attempts = var.event_max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }
}

# The Pub/Sub service agent forwards undeliverable messages: it must publish to the
# dead-letter topic and acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.consumed_topics
  topic    = google_pubsub_topic.dead_letter[each.key].name
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = local.push_subscriptions
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
