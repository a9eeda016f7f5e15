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
}
