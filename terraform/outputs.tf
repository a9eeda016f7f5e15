output "predict_url" {
  description = "URL of the predict function (callers need roles/run.invoker and an identity token)."
  value       = google_cloudfunctions2_function.functions["predict"].service_config[0].uri
}

output "function_urls" {
  description = "URL of every function."
  value       = { for k, f in google_cloudfunctions2_function.functions : k => f.service_config[0].uri }
}

output "bucket" {
  description = "The data bucket (raw, processed, models, predictions, reports)."
  value       = google_storage_bucket.data.name
}

output "topics" {
  description = "Pub/Sub topics by role."
  value       = { for k, t in google_pubsub_topic.topics : k => t.name }
}

output "dead_letter_subscriptions" {
  description = "Pull subscriptions holding dead letters, by topic."
  value       = { for k, s in google_pubsub_subscription.dead_letter_pull : k => s.name }
}
