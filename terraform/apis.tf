# Cloud Resource Manager and Service Usage must already be on before Terraform can read
# the project or enable anything: ./deploy.sh gcp enables them with gcloud first
# (docs/deploy.md "First apply, step by step"). Listing them here keeps them on.
resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "billingbudgets.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
  ])
  service            = each.value
  disable_on_destroy = false
}

# An API answers "has not been used in project ... or it is disabled" for a while after
# enablement reports done, and its service agent (Pub/Sub's, Cloud Scheduler's) appears
# with a delay. Everything that calls an enabled API depends on this wait, as Google's
# samples do with time_sleep; terraform_data is built in, so no extra provider is fetched.
resource "terraform_data" "apis_ready" {
  triggers_replace = sort(keys(google_project_service.apis))
  provisioner "local-exec" {
    command = "sleep ${var.api_enablement_wait_seconds}"
  }
  depends_on = [google_project_service.apis]
}

data "google_project" "this" {
  project_id = var.project_id
}
