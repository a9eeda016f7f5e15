# One service account per function, holding only what its code does (README "Least privilege").
resource "google_service_account" "functions" {
  for_each     = local.functions
  account_id   = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  display_name = "${each.key} function"
}

resource "google_service_account" "scheduler" {
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "Cloud Scheduler jobs (OIDC invoker)"
}

resource "google_service_account" "pubsub_push" {
  account_id   = "${var.name_prefix}-pubsub-push"
  display_name = "Pub/Sub push subscriptions (OIDC invoker)"
}

resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "Cloud Build of the function bundles"
}

locals {
  pubsub_agent    = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  scheduler_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"

  # Object access per function: role -> object prefixes in the data bucket.
  storage_grants = {
    collect_data = {
      "roles/storage.objectCreator" = ["raw/", "quarantine/"]
      "roles/storage.objectViewer"  = ["raw/"] # plausibility reads the accepted history
      "roles/storage.objectUser"    = ["cache/"]
    }
    retrain = {
      "roles/storage.objectViewer"  = ["raw/", "processed/", "models/"]
      "roles/storage.objectCreator" = ["processed/", "models/"]
    }
    predict = {
      "roles/storage.objectViewer"  = ["raw/", "models/"]
      "roles/storage.objectCreator" = ["predictions/"]
    }
    monitor = {
      "roles/storage.objectViewer" = ["raw/", "models/", "predictions/"]
      "roles/storage.objectUser"   = ["reports/"]
    }
  }
  storage_bindings = {
    for b in flatten([
      for fn, grants in local.storage_grants : [
        for role, prefixes in grants : { key = "${fn}-${role}", fn = fn, role = role, prefixes = prefixes }
      ]
    ]) : b.key => b
  }

  topic_publishers = {
    collect_data = ["data_ready", "alerts"]
    retrain      = ["model_updated"]
    monitor      = concat(["alerts"], var.monitor_auto_retrain ? ["data_ready"] : [])
  }
  publisher_bindings = {
    for b in flatten([
      for fn, topics in local.topic_publishers : [for t in topics : { key = "${fn}-${t}", fn = fn, topic = t }]
    ]) : b.key => b
  }

  # Firestore IAM is project-wide; predict only reads.
  firestore_roles = {
    collect_data = "roles/datastore.user"
    retrain      = "roles/datastore.user"
    predict      = "roles/datastore.viewer"
    monitor      = "roles/datastore.user"
  }

  invokers = {
    scheduler-collect = { function = "collect_data", member = "serviceAccount:${google_service_account.scheduler.email}" }
    scheduler-monitor = { function = "monitor", member = "serviceAccount:${google_service_account.scheduler.email}" }
    push-retrain      = { function = "retrain", member = "serviceAccount:${google_service_account.pubsub_push.email}" }
    push-predict      = { function = "predict", member = "serviceAccount:${google_service_account.pubsub_push.email}" }
    push-monitor      = { function = "monitor", member = "serviceAccount:${google_service_account.pubsub_push.email}" }
  }
}

resource "google_storage_bucket_iam_member" "functions" {
  for_each = local.storage_bindings
  bucket   = google_storage_bucket.data.name
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.functions[each.value.fn].email}"
  condition {
    title       = "${each.value.fn}-${replace(each.value.role, "roles/storage.", "")}"
    description = "Objects under ${join(", ", each.value.prefixes)} (and listing the bucket)"
    expression = join(" || ", concat(
      ["resource.type == \"storage.googleapis.com/Bucket\""],
      [for p in each.value.prefixes : "resource.name.startsWith(\"projects/_/buckets/${local.bucket}/objects/${p}\")"]
    ))
  }
}

resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = local.publisher_bindings
  topic    = google_pubsub_topic.topics[each.value.topic].name
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.functions[each.value.fn].email}"
}

resource "google_project_iam_member" "firestore" {
  for_each = local.firestore_roles
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.functions[each.key].email}"
}

resource "google_secret_manager_secret_iam_member" "predict_api_key" {
  count     = var.predict_api_key_secret == null ? 0 : 1
  secret_id = var.predict_api_key_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.functions["predict"].email}"
}

resource "google_secret_manager_secret_iam_member" "alert_webhook" {
  count     = var.alert_webhook_secret == null ? 0 : 1
  secret_id = var.alert_webhook_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.functions["monitor"].email}"
}

# Invocation: no allUsers anywhere; schedulers and push subscriptions call with OIDC tokens.
resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = local.invokers
  location = var.region
  name     = google_cloudfunctions2_function.functions[each.value.function].name
  role     = "roles/run.invoker"
  member   = each.value.member
}

resource "google_cloud_run_v2_service_iam_member" "predict_callers" {
  for_each = toset(var.predict_invokers)
  location = var.region
  name     = google_cloudfunctions2_function.functions["predict"].name
  role     = "roles/run.invoker"
  member   = each.value
}

# The Pub/Sub and Cloud Scheduler service agents mint the OIDC tokens.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

resource "google_service_account_iam_member" "scheduler_token_creator" {
  service_account_id = google_service_account.scheduler.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.scheduler_agent
}

# Cloud Build reads the bundle, writes the image and its logs.
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.build.email}"
}

resource "google_storage_bucket_iam_member" "build_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}
