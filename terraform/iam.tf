# One service account per function, holding only what its code does (README "Least privilege").
# Every service account waits for the IAM API (terraform_data.apis_ready).
resource "google_service_account" "functions" {
  for_each     = local.functions
  account_id   = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  display_name = "${each.key} function"
  depends_on   = [terraform_data.apis_ready]
}

resource "google_service_account" "scheduler" {
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "Cloud Scheduler jobs (OIDC invoker)"
  depends_on   = [terraform_data.apis_ready]
}

resource "google_service_account" "pubsub_push" {
  account_id   = "${var.name_prefix}-pubsub-push"
  display_name = "Pub/Sub push subscriptions (OIDC invoker)"
  depends_on   = [terraform_data.apis_ready]
}

resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "Cloud Build of the function bundles"
  depends_on   = [terraform_data.apis_ready]
}

locals {
  # The Pub/Sub service agent exists once the Pub/Sub API is on; grants to it wait for that.
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

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

# Each function reads only the secrets of its own environment (local.secret_env).
resource "google_secret_manager_secret_iam_member" "secret_env" {
  for_each  = local.secret_bindings
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.functions[each.value.fn].email}"
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

# The Pub/Sub service agent mints the push subscriptions' OIDC tokens. Projects created
# after 2021-04-08 grant it this already; older ones need it (docs/deploy.md). The Cloud
# Scheduler service agent's own role covers its tokens on current projects: no grant.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
  depends_on         = [terraform_data.apis_ready]
}

# Cloud Build of a function with its own build service account: Google's documented
# role for it is Cloud Run Builder (read the source from the bucket, push the image to
# Artifact Registry, write build logs).
resource "google_project_iam_member" "build" {
  project = var.project_id
  role    = "roles/run.builder"
  member  = "serviceAccount:${google_service_account.build.email}"
}
