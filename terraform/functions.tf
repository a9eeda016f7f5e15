resource "google_cloudfunctions2_function" "functions" {
  #checkov:skip=CKV_GCP_124:Only predict may be ALLOW_ALL (var.predict_ingress), for callers outside the project; every call still needs roles/run.invoker and there is no allUsers binding. The other three are ALLOW_INTERNAL_ONLY.
  for_each    = local.functions
  name        = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  location    = var.region
  description = "${each.key} (functions/${each.key})"

  build_config {
    runtime         = "python312"
    entry_point     = each.key
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.bundle[each.key].name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.functions[each.key].email
    available_memory                 = var.function_memory[each.key]
    available_cpu                    = var.function_cpu[each.key]
    timeout_seconds                  = each.value.timeout
    min_instance_count               = 0
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    # Every call needs an identity token of an invoker (no allUsers binding exists).
    ingress_settings               = each.value.ingress
    all_traffic_on_latest_revision = true
    environment_variables          = merge(local.common_env, local.function_env[each.key])

    dynamic "secret_environment_variables" {
      for_each = lookup(local.secret_env, each.key, {})
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_sources,
  ]
}
