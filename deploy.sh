#!/usr/bin/env bash
# Deploy the forecasting system.
#
#   ./deploy.sh local [--emulators] [--once] [--reset] [...]   the whole system on this machine
#   ./deploy.sh test [pytest arguments]                        set up, then lint, type-check and test
#   ./deploy.sh build                                          build the function bundles into build/
#   ./deploy.sh gcp --project ID [--region R] [--auto-approve] [--var key=value ...]
#                                                              build, then terraform init/plan/apply
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
export CHECKPOINT_DISABLE=1  # no terraform version check over the network

usage() {
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  echo
  echo "./deploy.sh local --help lists the local stack's options."
}

die() {
  echo "deploy.sh: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed or not on PATH. $2"
}

python_bin() {
  # Run each candidate: a version manager's shim can exist without the version behind it.
  for candidate in python3.12 python3.11 python3; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
      echo "$candidate"
      return
    fi
  done
  die "Python 3.11 or newer is required (none of python3.12, python3.11, python3 is)."
}

ensure_venv() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "Creating $VENV and installing the pinned requirements (first run only)..."
    "$(python_bin)" -m venv "$VENV"
  fi
  # Reinstall whenever a requirements or project file changed since the last install.
  local wanted
  wanted="$(cat "$ROOT"/requirements.txt "$ROOT"/requirements-dev.txt "$ROOT"/constraints.txt \
    "$ROOT"/pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [[ "$(cat "$VENV/.installed" 2>/dev/null)" != "$wanted" ]]; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
      -r "$ROOT/requirements-dev.txt" -c "$ROOT/constraints.txt"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e "$ROOT"
    echo "$wanted" >"$VENV/.installed"
  fi
}

ensure_checkov() {
  # checkov lives in its own environment: it conflicts with python-hcl2.
  if [[ ! -x "$ROOT/.venv-checkov/bin/checkov" ]]; then
    "$(python_bin)" -m venv "$ROOT/.venv-checkov"
    "$ROOT/.venv-checkov/bin/pip" install --quiet --disable-pip-version-check \
      -r "$ROOT/requirements-checkov.txt"
  fi
}

run_tests() {
  ensure_venv
  ensure_checkov
  cd "$ROOT"
  echo "ruff check"
  "$VENV/bin/ruff" check .
  echo "mypy"
  "$VENV/bin/mypy"
  "$VENV/bin/python" -m pytest "$@"
}

build() {
  "$(python_bin)" -m tools.bundle --out "$ROOT/build"
}

gcp() {
  local project="" region="europe-west1" auto_approve="" extra_vars=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --project) project="${2:-}"; shift 2 ;;
      --region) region="${2:-}"; shift 2 ;;
      --auto-approve) auto_approve="-auto-approve"; shift ;;
      --var) extra_vars+=("-var" "${2:-}"); shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) die "unknown option for gcp: $1" ;;
    esac
  done
  [[ -n "$project" ]] || die "gcp needs --project ID"
  need gcloud "Install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install"
  need terraform "Install Terraform 1.5 or newer: https://developer.hashicorp.com/terraform/install"
  gcloud auth print-access-token >/dev/null 2>&1 \
    || die "gcloud is not authenticated: run 'gcloud auth login'."
  gcloud auth application-default print-access-token >/dev/null 2>&1 \
    || die "Terraform needs Application Default Credentials: run 'gcloud auth application-default login'."

  # Terraform itself needs these two to read the project and to enable the other APIs
  # (needs serviceusage.services.enable: roles/serviceusage.serviceUsageAdmin or Owner).
  echo "Enabling the Cloud Resource Manager and Service Usage APIs on $project..."
  gcloud services enable cloudresourcemanager.googleapis.com serviceusage.googleapis.com --project "$project" \
    || die "could not enable the Cloud Resource Manager and Service Usage APIs on $project (docs/deploy.md, step 2)."

  cd "$ROOT"
  local code_version
  code_version="$(build | awk '/^code_version/ {print $2}')"
  echo "Bundles built; code version $code_version"
  terraform -chdir=terraform init -input=false
  terraform -chdir=terraform plan -input=false -out=tfplan \
    -var "project_id=$project" -var "region=$region" -var "code_version=$code_version" "${extra_vars[@]}"
  terraform -chdir=terraform apply -input=false $auto_approve tfplan

  local url
  url="$(terraform -chdir=terraform output -raw predict_url)"
  cat <<EOF

Deployed. predict: $url
Try it (your account needs roles/run.invoker on predict, or pass --var 'predict_invokers=["user:you@example.com"]'):

  curl -X POST "$url/predict" \\
    -H "Authorization: Bearer \$(gcloud auth print-identity-token)" \\
    -H "Content-Type: application/json" \\
    -d '{"Temperature": 12.5, "Humidity": 65.3, "WindSpeed": 0.08, "GeneralDiffuseFlows": 180.5, "DiffuseFlows": 95.1, "Timestamp": "2017-02-04T14:30:00"}'

Models appear after the first collection and retrain (Cloud Scheduler runs collect daily;
to start now: curl -X POST "\$(terraform -chdir=terraform output -json function_urls | python3 -c 'import json,sys;print(json.load(sys.stdin)["collect_data"])')" -H "Authorization: Bearer \$(gcloud auth print-identity-token)" -H "Content-Type: application/json" -d '{"window": "P35D"}').
EOF
}

main() {
  local command="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$command" in
    local)
      ensure_venv
      cd "$ROOT"
      exec "$VENV/bin/python" -m tools.localstack "$@"
      ;;
    test) run_tests "$@" ;;
    build) cd "$ROOT" && build ;;
    gcp) gcp "$@" ;;
    -h|--help|help|"") usage ;;
    *) usage; die "unknown command: $command" ;;
  esac
}

main "$@"
