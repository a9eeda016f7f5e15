resource "google_cloudfunctions2_function" "functions" {
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
    environment_variables          = merge(local.common_env, local.function_env[each.key], { OMP_NUM_THREADS = local.threads[each.key] })

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

  lifecycle {
    precondition {
      condition     = tonumber(var.function_cpu[each.key]) >= 1 || each.value.concurrency == 1
      error_message = "${each.key}: Cloud Run serves more than one request at a time (concurrency ${each.value.concurrency}) only with at least 1 vCPU; raise function_cpu.${each.key} or lower its concurrency."
    }
    precondition {
      condition     = tonumber(var.function_cpu[each.key]) >= 1 || local.memory_gib[each.key] <= 1
      error_message = "${each.key}: Cloud Run allows more than 1Gi of memory only with at least 1 vCPU."
    }
    precondition {
      condition     = tonumber(var.function_cpu[each.key]) < 4 || local.memory_gib[each.key] >= 2
      error_message = "${each.key}: Cloud Run needs at least 2Gi of memory for 4 vCPU."
    }
  }

  # A function starts only once its build can read the source and it can read its secrets.
  depends_on = [
    terraform_data.apis_ready,
    google_project_iam_member.build,
    google_secret_manager_secret_iam_member.secret_env,
  ]
}
