variable "project_id" {
  description = "Google Cloud project that holds every resource."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid project id (6-30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of the functions, the bucket and the scheduler jobs."
  type        = string
  default     = "europe-west1"
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must look like europe-west1."
  }
}

variable "firestore_location" {
  description = "Location of the Firestore database (a region or a multi-region such as eur3)."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions, service accounts, topics, bucket)."
  type        = string
  default     = "forecast"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name_prefix))
    error_message = "name_prefix must be 2-15 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "bundle_dir" {
  description = "Directory holding the function bundles built by ./deploy.sh build (<function>.zip)."
  type        = string
  default     = "../build"
}

variable "code_version" {
  description = "Content hash of the code, recorded in model metadata (./deploy.sh sets it)."
  type        = string
  default     = "dev"
}

variable "dataset_spec" {
  description = "Dataset spec the functions serve (a name in shared/core/specs/)."
  type        = string
  default     = "tetouan_power"
}

variable "scheduler_time_zone" {
  description = "IANA time zone of the Cloud Scheduler jobs."
  type        = string
  default     = "Africa/Casablanca"
  validation {
    condition     = can(regex("^[A-Za-z_]+(/[A-Za-z_+-]+)*$", var.scheduler_time_zone))
    error_message = "scheduler_time_zone must be an IANA time zone name such as Europe/Madrid or UTC."
  }
}

variable "collect_schedule" {
  description = "Cron schedule of the daily collection."
  type        = string
  default     = "0 2 * * *"
}

variable "monitor_schedule" {
  description = "Cron schedule of the monitor (every 6 hours by default)."
  type        = string
  default     = "0 */6 * * *"
}

variable "collect_sources" {
  description = "COLLECT_SOURCES for collect_data: JSON list of sources (see docs/collect.md)."
  type        = string
  default     = "[{\"name\": \"replay\", \"type\": \"replay\"}]"
  validation {
    condition     = can(jsondecode(var.collect_sources)) && can(length(jsondecode(var.collect_sources)))
    error_message = "collect_sources must be a JSON list."
  }
}

variable "collect_window" {
  description = "COLLECT_WINDOW: the window one collection takes (ISO 8601 duration)."
  type        = string
  default     = "P1D"
}

variable "max_request_bytes" {
  description = "MAX_REQUEST_BYTES: the largest request body an HTTP function reads (413 beyond, before reading). Cloud Run refuses HTTP/1 requests over 32 MiB itself."
  type        = number
  default     = 8388608
  validation {
    condition     = var.max_request_bytes >= 65536 && var.max_request_bytes <= 33554432 && floor(var.max_request_bytes) == var.max_request_bytes
    error_message = "max_request_bytes must be a whole number of bytes between 64 KiB and 32 MiB."
  }
}

variable "api_enablement_wait_seconds" {
  description = "Seconds to wait after enabling the project's APIs before using them (an API and its service agent become usable a little after enablement reports done)."
  type        = number
  default     = 60
  validation {
    condition     = var.api_enablement_wait_seconds >= 0 && var.api_enablement_wait_seconds <= 600 && floor(var.api_enablement_wait_seconds) == var.api_enablement_wait_seconds
    error_message = "api_enablement_wait_seconds must be a whole number of seconds from 0 to 600."
  }
}

variable "function_memory" {
  description = "Memory of each function, in Mi or Gi (Cloud Run: 4 vCPU need at least 2Gi; below 1 vCPU at most 1Gi)."
  type        = map(string)
  default = {
    collect_data = "1Gi"
    retrain      = "2Gi"
    predict      = "1Gi"
    monitor      = "1Gi"
  }
  validation {
    condition     = alltrue([for k in ["collect_data", "retrain", "predict", "monitor"] : contains(keys(var.function_memory), k)])
    error_message = "function_memory needs an entry for collect_data, retrain, predict and monitor."
  }
  validation {
    condition     = alltrue([for v in values(var.function_memory) : can(regex("^[1-9][0-9]*(Mi|Gi)$", v))])
    error_message = "function_memory values must be a whole number of Mi or Gi, such as 512Mi or 2Gi."
  }
}

variable "function_cpu" {
  description = "vCPUs of each function; predict runs one gunicorn worker per vCPU."
  type        = map(string)
  default = {
    collect_data = "1"
    retrain      = "1"
    predict      = "1"
    monitor      = "1"
  }
  validation {
    condition     = alltrue([for v in values(var.function_cpu) : contains(["0.5", "1", "2", "4"], v)])
    error_message = "function_cpu values must be one of 0.5, 1, 2, 4."
  }
  validation {
    condition     = alltrue([for k in ["collect_data", "retrain", "predict", "monitor"] : contains(keys(var.function_cpu), k)])
    error_message = "function_cpu needs an entry for collect_data, retrain, predict and monitor."
  }
}

variable "predict_concurrency" {
  description = "Requests one predict instance serves at a time (Cloud Run allows more than 1 only with at least 1 vCPU: set 1 with function_cpu.predict = \"0.5\")."
  type        = number
  default     = 8
  validation {
    condition     = var.predict_concurrency >= 1 && var.predict_concurrency <= 1000 && floor(var.predict_concurrency) == var.predict_concurrency
    error_message = "predict_concurrency must be a whole number from 1 to 1000."
  }
}

variable "predict_max_instances" {
  description = "Upper bound on predict instances (caps cost under load)."
  type        = number
  default     = 5
  validation {
    condition     = var.predict_max_instances >= 1 && var.predict_max_instances <= 100
    error_message = "predict_max_instances must be between 1 and 100."
  }
}

variable "predict_invokers" {
  description = "Principals allowed to call predict (e.g. serviceAccount:app@p.iam.gserviceaccount.com). Public access is refused."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for m in var.predict_invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "predict is private: allUsers and allAuthenticatedUsers are not allowed."
  }
}

variable "predict_ingress" {
  description = "Ingress of predict: ALLOW_ALL (callers outside the project, with IAM), ALLOW_INTERNAL_AND_GCLB (behind a load balancer) or ALLOW_INTERNAL_ONLY."
  type        = string
  default     = "ALLOW_ALL"
  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_AND_GCLB", "ALLOW_INTERNAL_ONLY"], var.predict_ingress)
    error_message = "predict_ingress must be ALLOW_ALL, ALLOW_INTERNAL_AND_GCLB or ALLOW_INTERNAL_ONLY."
  }
}

variable "predict_api_key_secret" {
  description = "Optional Secret Manager secret id holding PREDICT_API_KEY (null: no key required)."
  type        = string
  default     = null
}

variable "collect_secrets" {
  description = "Secret Manager secrets collect_data reads as environment variables: variable name -> secret id. Name here each api_key_env of COLLECT_SOURCES' http sources."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k in keys(var.collect_secrets) : can(regex("^[A-Z][A-Z0-9_]*$", k))])
    error_message = "collect_secrets keys must be environment variable names (uppercase letters, digits, underscores)."
  }
}

variable "alert_webhook_secret" {
  description = "Optional Secret Manager secret id holding ALERT_WEBHOOK_URL for monitor (null: no webhook)."
  type        = string
  default     = null
}

variable "monitor_auto_retrain" {
  description = "MONITOR_AUTO_RETRAIN: a new high drift or accuracy alert requests a retrain (off by default)."
  type        = bool
  default     = false
}

variable "event_max_delivery_attempts" {
  description = "Push deliveries of one message before it goes to the dead-letter topic. With event_retry_backoff the retries must span twice retrain's claim lease (120 s), or retrain refuses to start (docs/retrain.md): the defaults wait 10+20+40+80+160+320+600+600+600 = 2430 s."
  type        = number
  default     = 10
  validation {
    condition     = var.event_max_delivery_attempts >= 5 && var.event_max_delivery_attempts <= 100
    error_message = "Pub/Sub allows 5 to 100 delivery attempts."
  }
}

variable "event_retry_backoff" {
  description = "Retry backoff of push subscriptions, in seconds: first delay (min, doubling on each retry) and ceiling (max), each above 0 and at most 600. Passed to retrain too, which checks them against its claim lease at start-up."
  type = object({
    min = number
    max = number
  })
  default = { min = 10, max = 600 }
  validation {
    condition = alltrue([
      for v in values(var.event_retry_backoff) : v > 0 && v <= 600
    ]) && var.event_retry_backoff.min <= var.event_retry_backoff.max
    error_message = "event_retry_backoff.min and .max must be above 0 and at most 600 seconds, min no larger than max (a zero backoff never outlasts retrain's claim lease)."
  }
}

variable "retention_days" {
  description = "Days before objects are deleted, per prefix (raw data moves to Coldline instead)."
  type = object({
    raw_to_coldline = number
    predictions     = number
    reports         = number
    quarantine      = number
    noncurrent      = number
  })
  default = {
    raw_to_coldline = 90
    predictions     = 90
    reports         = 180
    quarantine      = 90
    noncurrent      = 30
  }
  validation {
    condition     = alltrue([for v in values(var.retention_days) : v >= 1])
    error_message = "retention_days values must be at least 1."
  }
}

variable "storage_data_access_logs" {
  description = "Turn on Cloud Audit Logs data-access logs (DATA_READ, DATA_WRITE) for Cloud Storage in the project. Authoritative for that service: turn off when the project's audit configuration is managed elsewhere."
  type        = bool
  default     = true
}

variable "analysts" {
  description = "Principals who query the predictions-vs-reality dataset (e.g. group:analysts@example.com): dataset reader, query jobs, and read access to predictions/, raw/ and models/ that the external tables read."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for m in var.analysts : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "analysts cannot be allUsers or allAuthenticatedUsers."
  }
}

variable "alert_email" {
  description = "Email address of the Cloud Monitoring notification channel (null: no channel)."
  type        = string
  default     = null
  validation {
    condition     = var.alert_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be an email address."
  }
}

variable "billing_account" {
  description = "Billing account id for the optional budget (null: no budget)."
  type        = string
  default     = null
}

variable "budget_amount" {
  description = "Monthly budget, in budget_currency (the steel document's target: under 5 USD). Fractions are kept to the cent."
  type        = number
  default     = 5
  validation {
    condition     = var.budget_amount > 0
    error_message = "budget_amount must be positive."
  }
}

variable "budget_currency" {
  description = "ISO 4217 code of the budget amount; it must be the billing account's own currency, or the API refuses the budget."
  type        = string
  default     = "USD"
  validation {
    condition     = can(regex("^[A-Z]{3}$", var.budget_currency))
    error_message = "budget_currency must be a three-letter ISO 4217 code such as USD or EUR."
  }
}
