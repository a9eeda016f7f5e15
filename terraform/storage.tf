# Data: raw/, quarantine/, cache/, processed/, models/, predictions/, reports/.
resource "google_storage_bucket" "data" {
  #checkov:skip=CKV_GCP_62:Access is audited by Cloud Audit Logs (data access logs) instead of a second log bucket.
  name                        = local.bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  # Models and processed data are written create-only; versioning also keeps a
  # replaced reports/latest.* and anything deleted by mistake for a while.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age            = var.retention_days.raw_to_coldline
      matches_prefix = ["raw/"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "COLDLINE"
    }
  }
  lifecycle_rule {
    condition {
      age            = var.retention_days.predictions
      matches_prefix = ["predictions/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      age            = var.retention_days.reports
      matches_prefix = ["reports/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      age            = var.retention_days.quarantine
      matches_prefix = ["quarantine/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.retention_days.noncurrent
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_project_service.apis]
}

# Function source bundles, named by content hash.
resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Build inputs only; Cloud Audit Logs record access.
  name                        = local.sources_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_object" "bundle" {
  for_each = local.functions
  # A code change changes the hash, hence the name, hence the function's source: it redeploys.
  name   = "bundles/${each.key}-${filesha256("${var.bundle_dir}/${each.key}.zip")}.zip"
  bucket = google_storage_bucket.sources.name
  source = "${var.bundle_dir}/${each.key}.zip"
}
