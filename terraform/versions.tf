# Provider versions are pinned exactly; upgrade deliberately (terraform init -upgrade)
# after reading the provider's changelog.
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "7.44.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
  # Quota and billing of API calls go to this project, not to the credentials' own: with
  # user credentials (gcloud auth application-default login) the Billing Budgets API
  # refuses the budget otherwise.
  billing_project       = var.project_id
  user_project_override = true
}
