resource "google_firestore_database" "main" {
  name                              = "(default)"
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"
  depends_on                        = [terraform_data.apis_ready]
}

# Composite indexes of the queries the code makes: an equality filter plus an
# ordering on another field. The emulator does not enforce them; production does.
# tests/test_terraform.py derives the needed set from the code and compares.
locals {
  composite_indexes = {
    batches-accepted-by-end = { collection = "batches", fields = [["status", "ASCENDING"], ["end", "DESCENDING"]] }
    alerts-open-by-opened   = { collection = "alerts", fields = [["status", "ASCENDING"], ["opened_at", "DESCENDING"]] }
    models-target-by-time   = { collection = "models", fields = [["target", "ASCENDING"], ["created_at", "DESCENDING"]] }
    promotions-target-by-at = { collection = "promotions", fields = [["target", "ASCENDING"], ["at", "DESCENDING"]] }
  }
}

resource "google_firestore_index" "composite" {
  for_each   = local.composite_indexes
  database   = google_firestore_database.main.name
  collection = each.value.collection

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value[0]
      order      = fields.value[1]
    }
  }
}
