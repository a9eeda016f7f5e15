"""Terraform and bundles, checked offline.

The hashicorp/google provider cannot be downloaded here, so ``terraform validate``
and ``plan`` cannot run. Instead: ``terraform fmt``, checkov (its own virtual
environment: it conflicts with python-hcl2), a parse of every .tf file, and
consistency tests between the Terraform and the code: functions, topics,
environment variables, roles, Firestore indexes. Each bundle is installed in a
clean virtual environment from its own requirements.txt and must import.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hcl2
import pandas as pd
import pytest
import sqlglot
from sqlglot.optimizer.qualify import qualify

from shared.core.dataset_spec import load_spec
from shared.core.frames import to_canonical_csv
from shared.platform import names
from shared.platform.settings import VARIABLES, Settings, attribute_name
from tests.conftest import require
from tools.bigquery_schema import prediction_log_schema
from tools.bundle import FUNCTIONS, PACKAGES, build
from tools.localstack import SUBSCRIPTIONS as LOCAL_SUBSCRIPTIONS
from tools.terraform_schema import cache_dir
from tools.terraform_schema.check import check as schema_check
from tools.terraform_schema.check import declared, pinned_version
from tools.terraform_schema.extract import load as load_schema

ROOT = Path(__file__).resolve().parent.parent
TF = ROOT / "terraform"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


def parse(name: str) -> dict:
    with open(TF / name, encoding="utf-8") as fh:
        return hcl2.load(fh, serialization_options=OPTIONS)


@pytest.fixture(scope="module")
def tf() -> dict[str, dict]:
    return {path.name: parse(path.name) for path in sorted(TF.glob("*.tf"))}


def resources(tf: dict, kind: str) -> dict[str, dict]:
    return {name: body for doc in tf.values() for block in doc.get("resource", [])
            for name, body in block.get(kind, {}).items()}


def tf_locals(tf: dict) -> dict:
    merged: dict = {}
    for doc in tf.values():
        for block in doc.get("locals", []):
            merged.update(block)
    return merged


def test_terraform_fmt_is_clean():
    if not shutil.which("terraform"):
        require("terraform is not installed")
    result = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff", str(TF)],
                            capture_output=True, text=True, env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    assert result.returncode == 0, result.stdout


# Findings the project accepts, per resource instance: an inline skip would cover every
# instance of a for_each, so a regression on the other functions would pass unseen.
ACCEPTED_CHECKOV_FINDINGS = {
    ("CKV_GCP_124", 'google_cloudfunctions2_function.functions["predict"]'):
        "predict_ingress defaults to ALLOW_ALL for callers outside the project; every call still needs "
        "roles/run.invoker (no allUsers binding) and the other three functions are ALLOW_INTERNAL_ONLY",
}


def test_checkov_finds_nothing_that_is_not_skipped_with_a_reason():
    if not CHECKOV.exists():
        require("checkov is not installed in .venv-checkov (.ci/run installs it)")
    result = subprocess.run([str(CHECKOV), "-d", str(TF), "--framework", "terraform", "--skip-download",
                             "-o", "json"], capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    results = report["results"]
    failed = {(c["check_id"], c["resource"]) for c in results["failed_checks"]}
    assert failed == set(ACCEPTED_CHECKOV_FINDINGS) and report["summary"]["parsing_errors"] == 0
    ingress_passed = {c["resource"] for c in results["passed_checks"] if c["check_id"] == "CKV_GCP_124"}
    assert ingress_passed == {f'google_cloudfunctions2_function.functions["{f}"]'
                              for f in ("collect_data", "retrain", "monitor")}
    assert report["summary"]["passed"] > 30
    for skipped in results["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, (skipped["check_id"], skipped["resource"], "needs a written reason")


@pytest.fixture(scope="module")
def provider_schema() -> dict:
    """The pinned provider's schema, rebuilt from PyPI's cdktn-provider-google (cached outside the repo)."""
    try:
        return load_schema(pinned_version(TF), cache_dir())
    except (OSError, subprocess.CalledProcessError) as exc:
        require(f"cannot fetch cdktn-provider-google for the provider schema: {exc}")
        raise


def test_terraform_matches_the_pinned_provider_schema(provider_schema):
    assert provider_schema["provider_version"] == pinned_version(TF) == "7.44.0"
    # The rebuilt schema is the provider's, not a sample of it.
    assert len(provider_schema["resource"]) > 1000 and len(provider_schema["data"]) > 300
    findings = schema_check(TF, provider_schema)
    assert findings == [], "\n".join(map(str, findings))


# Each seed is one mistake a person could make: (file, text replaced, replacement, the error expected).
SEEDED_ERRORS = {
    "unknown resource type": (
        "pubsub.tf", 'resource "google_pubsub_topic" "dead_letter"',
        'resource "google_pubsub_topics" "dead_letter"',
        "unknown resource type google_pubsub_topics"),
    "unknown argument": (
        "scheduler.tf", "time_zone   = var",
        "timezone    = var",
        'unknown argument or block "timezone"'),
    "unknown block": (
        "pubsub.tf", "retry_policy {",
        "retry_polcy {",
        'unknown argument or block "retry_polcy"'),
    "computed-only argument set": (
        "storage.tf", "force_destroy               = true",
        'force_destroy = true\n  self_link = "x"',
        '"self_link" is computed'),
    "missing required argument": (
        "firestore.tf", "location_id                       = var.firestore_location",
        "",
        'missing required argument "location_id"'),
    "missing required nested argument": (
        "scheduler.tf", "service_account_email = google_service_account.scheduler.email",
        "",
        'google_cloud_scheduler_job.jobs.http_target.oidc_token: missing required argument "service_account_email"'),
    "block written as an argument": (
        "storage.tf", "versioning {\n    enabled = true",
        "versioning = {\n    enabled = true",
        '"versioning" is a block'),
    "argument written as a block": (
        "pubsub.tf", 'message_retention_duration = "604800s"\n  depends_on',
        'message_retention_duration = "604800s"\n  labels {\n    a = "b"\n  }\n  depends_on',
        '"labels" is an argument'),
    "two single blocks": (
        "storage.tf", "versioning {\n    enabled = true\n  }",
        "versioning {\n    enabled = true\n  }\n  versioning {\n    enabled = false\n  }",
        'at most one "versioning" block'),
    "enum literal": (
        "firestore.tf", '"FIRESTORE_NATIVE"',
        '"NATIVE"',
        '"type" = "NATIVE" is not one of'),
    "reference to an attribute not exported": (
        "outputs.tf", 'functions["predict"].service_config[0].uri',
        'functions["predict"].service_config[0].url',
        '"url" is not an attribute of google_cloudfunctions2_function'),
    "reference behind a for_each key": (
        "scheduler.tf", "functions[each.value.function].service_config[0].uri\n    headers",
        "functions[each.value.function].service_config[0].urls\n    headers",
        '"urls" is not an attribute'),
    "for_each resource referenced without a key": (
        "outputs.tf", 'functions["predict"].service_config[0].uri',
        "functions.service_config[0].uri",
        "needs an instance key"),
    "reference to an undeclared resource": (
        "iam.tf", 'google_service_account.build.email}"\n}',
        'google_service_account.builder.email}"\n}',
        "referenced but not declared"),
    "data source argument unknown": (
        "apis.tf", "project_id = var.project_id",
        "project_id = var.project_id\n  numbr      = 1",
        'unknown argument or block "numbr"'),
    "data source attribute not exported": (
        "iam.tf", "data.google_project.this.number}@gcp-sa-pubsub",
        "data.google_project.this.numbr}@gcp-sa-pubsub",
        '"numbr" is not an attribute of google_project'),
    "provider argument misspelt": (
        "versions.tf", "region  = var.region",
        "region  = var.region\n  regoin  = var.region",
        'provider.google: unknown argument or block "regoin"'),
}


@pytest.mark.parametrize("seed", sorted(SEEDED_ERRORS))
def test_the_schema_check_catches_a_seeded_error(provider_schema, tmp_path, seed):
    file, old, new, expected = SEEDED_ERRORS[seed]
    for path in TF.glob("*.tf"):
        shutil.copy(path, tmp_path / path.name)
    text = (tmp_path / file).read_text()
    assert old in text, f"the seed no longer applies to {file}: {old!r}"
    (tmp_path / file).write_text(text.replace(old, new, 1))
    messages = [str(f) for f in schema_check(tmp_path, provider_schema)]
    assert any(expected in m for m in messages), messages
    assert all(m.startswith(f"{file}:") for m in messages), messages  # each error is located in the seeded file


def test_every_tf_file_parses_and_variables_are_described_typed_and_validated(tf):
    assert {"versions.tf", "variables.tf", "outputs.tf", "apis.tf", "storage.tf", "pubsub.tf",
            "functions.tf", "iam.tf", "scheduler.tf", "firestore.tf", "monitoring.tf"} <= set(tf)
    variables = {k: v for block in tf["variables.tf"]["variable"] for k, v in block.items()}
    for name, body in variables.items():
        assert body.get("description") and body.get("type"), name
    validated = [n for n, b in variables.items() if "validation" in b]
    assert len(validated) >= 12
    provider = tf["versions.tf"]["terraform"][0]["required_providers"][0]["google"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", provider["version"]), "provider version is pinned exactly"


def test_each_function_folder_has_exactly_one_function_resource(tf):
    functions = resources(tf, "google_cloudfunctions2_function")
    assert list(functions) == ["functions"]
    body = functions["functions"]
    assert body["for_each"] == "${local.functions}"
    build_config = body["build_config"][0]
    assert build_config["runtime"] == "python312"
    assert build_config["entry_point"] == "${each.key}"
    assert "bundle[each.key]" in build_config["source"][0]["storage_source"][0]["object"]
    folders = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "main.py").exists())
    assert sorted(tf_locals(tf)["functions"]) == folders == sorted(FUNCTIONS)
    for folder in folders:  # the entry point named after the folder exists in its main.py
        tree = ast.parse((ROOT / "functions" / folder / "main.py").read_text())
        assert folder in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    bundle = resources(tf, "google_storage_bucket_object")["bundle"]
    assert "filesha256" in bundle["name"], "bundles are named by content hash"


def test_no_public_invoker_anywhere(tf):
    members = [body["member"] for doc in tf.values() for block in doc.get("resource", [])
               for kind, items in block.items() if kind.endswith("_iam_member") for body in items.values()]
    assert members and not any(m in ("allUsers", "allAuthenticatedUsers") for m in members)
    variables = {k: v for block in tf["variables.tf"]["variable"] for k, v in block.items()}
    rule = variables["predict_invokers"]["validation"][0]["condition"]
    assert "allUsers" in rule and "allAuthenticatedUsers" in rule  # the only open door is refused


def test_buckets_are_private_versioned_and_have_lifecycle_rules(tf):
    buckets = resources(tf, "google_storage_bucket")
    data = buckets["data"]
    assert data["uniform_bucket_level_access"] is True and data["public_access_prevention"] == "enforced"
    assert data["versioning"][0]["enabled"] is True
    prefixes = {p for rule in data["lifecycle_rule"] for p in rule["condition"][0].get("matches_prefix", [])}
    assert {"raw/", "predictions/", "reports/"} <= prefixes


def test_topics_the_code_uses_exist_with_dead_letter_subscriptions(tf):
    local = tf_locals(tf)
    defaults = Settings.from_env({})
    # Every TOPIC_* setting is a Terraform topic named prefix-<the setting's default>, passed back in.
    topic_settings = {a.removeprefix("topic_"): v for a, v in SETTINGS_ATTRS.items() if a.startswith("topic_")}
    assert topic_settings and local["topics"] == {
        key: f"${{var.name_prefix}}-{getattr(defaults, f'topic_{key}')}" for key in topic_settings}
    assert {local["common_env"][v] for v in topic_settings.values()} == {
        f"${{local.topics.{key}}}" for key in topic_settings}
    assert local["dead_letter_suffix"] == defaults.dead_letter_suffix
    push = resources(tf, "google_pubsub_subscription")["push"]
    assert push["dead_letter_policy"][0]["max_delivery_attempts"] == "${var.event_max_delivery_attempts}"
    assert "retry_policy" in push and "oidc_token" in push["push_config"][0]
    # The same consumers as the local stack wires (tools/localstack.SUBSCRIPTIONS).
    subscriptions = local["push_subscriptions"]
    assert {(s["function"], s["topic"]) for s in subscriptions.values()} == set(LOCAL_SUBSCRIPTIONS)
    for function, topic in LOCAL_SUBSCRIPTIONS:  # each consumer's code handles a push on that topic
        source = (ROOT / "functions" / function / "main.py").read_text()
        assert "@functions_framework.cloud_event" in source or "/topics/" in source, (function, topic)
    assert "dead_letter_pull" in resources(tf, "google_pubsub_subscription")
    assert "dead_letter_publisher" in resources(tf, "google_pubsub_topic_iam_member")


# -- what the code reads and does ---------------------------------------------------------

SETTINGS_ATTRS = {attribute_name(v.name): v.name for v in VARIABLES}
# Read only by the embedded backend or by emulator administration; in GCP the push
# subscriptions' retry policy is Terraform's (pubsub.tf), not these variables.
NOT_IN_GCP = {"state_dir", "event_max_delivery_attempts", "event_min_backoff_seconds",
              "event_max_backoff_seconds", "event_ack_deadline_seconds"}


def module_path(module: str) -> Path | None:
    path = ROOT / Path(*module.split("."))
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    return None


def imported_shared_modules(start: Path) -> set[Path]:
    """Every module of shared/ reachable from ``start`` through imports, lazy ones included."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            candidates = []
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shared"):
                candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in candidates:
                if name.startswith("shared") and (found := module_path(name)):
                    todo.append(found)
    return seen


def settings_read(paths: set[Path]) -> dict[str, set[str]]:
    """Settings attribute -> modules reading it (``settings.x`` / ``self.settings.x``)."""
    reads: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in SETTINGS_ATTRS:
                owner = ast.unparse(node.value)
                if owner.endswith("settings") or owner == "s":
                    reads.setdefault(node.attr, set()).add(path.relative_to(ROOT).as_posix())
    return reads


def function_modules(name: str) -> set[Path]:
    return imported_shared_modules(ROOT / "functions" / name / "main.py")


def env_keys(tf: dict, function: str) -> set[str]:
    local = tf_locals(tf)
    keys = set(local["common_env"]) | set(local["function_env"][function])
    secret = local["secret_env"].get(function, "")
    keys |= set(re.findall(r"\{(\w+) = ", secret))
    return keys


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_variable_the_code_reads_is_set_on_its_function(tf, function):
    read = settings_read(function_modules(function))
    needed = {SETTINGS_ATTRS[a] for a in read if a not in NOT_IN_GCP}
    missing = needed - env_keys(tf, function)
    assert not missing, f"{function} reads {sorted(missing)} but Terraform does not set them"
    assert "BACKEND" in env_keys(tf, function) and tf_locals(tf)["common_env"]["BACKEND"] == "gcp"


def test_secrets_come_from_secret_manager_not_plain_environment(tf):
    local = tf_locals(tf)
    secrets = {v.name for v in VARIABLES if v.secret}
    plain = set(local["common_env"]).union(*(set(e) for e in local["function_env"].values()))
    assert secrets and not secrets & plain
    readers = {f: {SETTINGS_ATTRS[a] for a in settings_read(function_modules(f))} & secrets for f in FUNCTIONS}
    assert any(readers.values())
    for function, needed in readers.items():  # each function's secrets come from Secret Manager
        assert needed <= set(re.findall(r"\{(\w+) = ", local["secret_env"].get(function, ""))), function


def published_topics(function: str) -> set[str]:
    """Topic settings the function's own logic uses (the backends only declare topics)."""
    read = settings_read(function_modules(function))
    return {a.removeprefix("topic_") for a, modules in read.items() if a.startswith("topic_")
            and any(not m.startswith(("shared/platform/backends", "shared/settings", "shared/cli")) for m in modules)}


# The least-privilege table: what each function's code does with each store.
EXPECTED_STORAGE = {
    "collect_data": {"roles/storage.objectCreator": ["raw/", "quarantine/"],
                     "roles/storage.objectViewer": ["raw/"],
                     "roles/storage.objectUser": ["cache/"]},
    "retrain": {"roles/storage.objectViewer": ["raw/", "processed/", "models/"],
                "roles/storage.objectCreator": ["processed/", "models/"]},
    "predict": {"roles/storage.objectViewer": ["raw/", "models/"],
                "roles/storage.objectCreator": ["predictions/"]},
    "monitor": {"roles/storage.objectViewer": ["raw/", "models/", "predictions/"],
                "roles/storage.objectUser": ["reports/"]},
}
EXPECTED_FIRESTORE = {"collect_data": "roles/datastore.user", "retrain": "roles/datastore.user",
                      "predict": "roles/datastore.viewer", "monitor": "roles/datastore.user"}


def test_each_service_account_holds_exactly_its_roles(tf):
    local = tf_locals(tf)
    assert local["storage_grants"] == EXPECTED_STORAGE
    assert local["firestore_roles"] == EXPECTED_FIRESTORE
    publishers = local["topic_publishers"]
    # No grant on a topic the function's code never names, and a grant on every topic its own
    # package (shared/<package>) publishes on; monitor's data_ready only with the closed loop on.
    monitor_rule = '${concat(["alerts"], var.monitor_auto_retrain ? ["data_ready"] : [])}'
    assert publishers["monitor"] == monitor_rule
    granted = {f: set(re.findall(r'"(\w+)"', g)) if isinstance(g, str) else set(g) for f, g in publishers.items()}
    for function in FUNCTIONS:
        own = {a.removeprefix("topic_") for a, modules in settings_read(function_modules(function)).items()
               if a.startswith("topic_") and any(m.startswith(f"shared/{PACKAGES[function]}/") for m in modules)}
        assert own <= granted.get(function, set()) <= published_topics(function), function
    assert set(granted) == {"collect_data", "retrain", "monitor"}  # predict publishes nothing
    storage_prefixes = {p for grants in EXPECTED_STORAGE.values() for ps in grants.values() for p in ps}
    assert storage_prefixes == {names.RAW, names.QUARANTINE, names.CACHE, names.PROCESSED,
                                names.MODEL_ARTIFACTS, names.PREDICTIONS, names.REPORTS}
    service_accounts = resources(tf, "google_service_account")
    assert service_accounts["functions"]["for_each"] == "${local.functions}"
    bindings = resources(tf, "google_project_iam_member")
    analysts = bindings.pop("analysts_jobs")  # people, not service accounts: they run queries
    assert analysts["role"] == "roles/bigquery.jobUser" and analysts["for_each"] == "${toset(var.analysts)}"
    assert {b.get("role") for b in bindings.values()} <= {"${each.value}", "roles/run.builder"}
    # The build's service account holds the role Google documents for building functions, nothing more.
    assert bindings["build"]["role"] == "roles/run.builder"
    assert "google_service_account.build" in bindings["build"]["member"]
    assert "roles/owner" not in json.dumps(tf) and "roles/editor" not in json.dumps(tf)


REFERENCE = re.compile(r"(?<![\w.])((?:data\.)?(?:google|terraform)_\w+\.[\w-]+)")


def dependency_graph(tf: dict) -> dict[str, set[str]]:
    """Every resource and data source -> the ones it references or depends on."""
    graph = {}
    for (kind, tf_type, name), body in declared(tf).items():
        address = f"{'data.' if kind == 'data' else ''}{tf_type}.{name}"
        graph[address] = set(REFERENCE.findall(json.dumps(body))) - {address}
    return graph


def test_everything_that_calls_a_google_api_waits_for_its_enablement(tf):
    graph = dependency_graph(tf)
    assert graph["terraform_data.apis_ready"] == {"google_project_service.apis"}
    after = {"terraform_data.apis_ready"}
    changed = True
    while changed:  # every resource ordered (transitively) after the wait
        changed = False
        for address, needs in graph.items():
            if address not in after and needs & after:
                after.add(address)
                changed = True
    # Only the enablement itself and the project lookup (Cloud Resource Manager, which
    # ./deploy.sh gcp enables with gcloud before Terraform runs) may go first.
    assert set(graph) - after == {"google_project_service.apis", "data.google_project.this"}
    apis = resources(tf, "google_project_service")["apis"]["for_each"]
    assert "cloudresourcemanager.googleapis.com" in apis and "serviceusage.googleapis.com" in apis
    deploy = (ROOT / "deploy.sh").read_text()
    assert re.search(r"gcloud services enable .*cloudresourcemanager\.googleapis\.com.*serviceusage", deploy)


def test_functions_start_after_their_build_and_secret_grants_and_reject_what_cloud_run_refuses(tf):
    function = resources(tf, "google_cloudfunctions2_function")["functions"]
    assert {"google_project_iam_member.build", "google_secret_manager_secret_iam_member.secret_env"} \
        <= set(REFERENCE.findall(json.dumps(function["depends_on"])))
    conditions = " ".join(p["condition"] for p in function["lifecycle"][0]["precondition"])
    assert "concurrency" in conditions and "function_cpu" in conditions and "memory_gib" in conditions
    local = tf_locals(tf)
    assert set(local["secret_env"]) == {"collect_data", "predict", "monitor"}
    assert local["functions"]["monitor"]["concurrency"] >= 2  # a push during a run is not refused


def test_scheduler_waits_for_the_function_and_bundles_in_use_are_never_deleted(tf):
    job = resources(tf, "google_cloud_scheduler_job")["jobs"]
    assert job["attempt_deadline"] == "${local.functions[each.value.function].timeout + 30}s"
    sources = resources(tf, "google_storage_bucket")["sources"]
    for rule in sources["lifecycle_rule"]:
        condition = rule["condition"][0]
        assert condition.get("with_state") == "ARCHIVED" and "days_since_noncurrent_time" in condition
    assert sources["versioning"][0]["enabled"] is True


def test_budget_and_provider_bill_the_project(tf):
    provider = tf["versions.tf"]["provider"][0]["google"]
    assert provider["billing_project"] == "${var.project_id}" and provider["user_project_override"] is True
    amount = resources(tf, "google_billing_budget")["monthly"]["amount"][0]["specified_amount"][0]
    assert amount["currency_code"] == "${var.budget_currency}" and "nanos" in amount


def code_queries() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """(collection, ((field, order), ...)) for every query needing a composite index."""
    collections = {k: v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    needed = set()
    for path in (ROOT / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "where"):
                continue
            collection = collections[node.args[0].attr]
            filters = [a for a in node.args[1:] if isinstance(a, ast.Tuple)]
            assert len(filters) == len(node.args) - 1, f"{path}: a query's filters must be literal"
            keywords = {k.arg: k.value for k in node.keywords}
            order = keywords.get("order_by")
            equality = [f.elts[0].value for f in filters if f.elts[1].value == "=="]
            ranges = [f.elts[0].value for f in filters if f.elts[1].value != "=="]
            if order is not None and (equality or any(r != order.value for r in ranges)):
                descending = isinstance(keywords.get("descending"), ast.Constant) and keywords["descending"].value
                direction = "DESCENDING" if descending else "ASCENDING"
                fields = (*tuple((f, "ASCENDING") for f in equality), (order.value, direction))
                needed.add((collection, fields))
    return needed


def test_every_firestore_query_has_its_composite_index(tf):
    declared = {(i["collection"], tuple(tuple(f) for f in i["fields"]))
                for i in tf_locals(tf)["composite_indexes"].values()}
    needed = code_queries()
    assert needed and needed <= declared, sorted(needed - declared)
    assert declared == needed, f"unused indexes: {sorted(declared - needed)}"


def test_scheduler_jobs_use_oidc_and_a_time_zone_variable(tf):
    job = resources(tf, "google_cloud_scheduler_job")["jobs"]
    assert job["time_zone"] == "${var.scheduler_time_zone}" and "oidc_token" in job["http_target"][0]
    schedules = tf_locals(tf)["scheduler_jobs"]
    variables = {k for block in tf["variables.tf"]["variable"] for k in block}
    assert {v["function"] for v in schedules.values()} == {"collect_data", "monitor"}  # the periodic ones
    for job in schedules.values():  # an HTTP function (a scheduler POSTs), on an operator-set schedule
        assert job["function"] in FUNCTIONS
        assert "@functions_framework.http" in (ROOT / "functions" / job["function"] / "main.py").read_text()
        assert re.fullmatch(r"\$\{var\.(\w+)\}", job["schedule"])[1] in variables
    policies = resources(tf, "google_monitoring_alert_policy")
    assert set(policies) == {"function_errors", "alerts_topic"}
    budget = resources(tf, "google_billing_budget")["monthly"]
    assert "[0.5, 0.8, 1.0]" in json.dumps(budget["dynamic"])


# -- bundles ---------------------------------------------------------------------------

PORTS = {  # the Google Cloud adapters each function's code path uses
    "collect_data": ["gcs_blobs", "firestore_documents", "pubsub_events"],
    "retrain": ["gcs_blobs", "firestore_documents", "pubsub_events"],
    "predict": ["gcs_blobs", "firestore_documents"],
    "monitor": ["gcs_blobs", "firestore_documents", "pubsub_events"],
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles")
    first = build(out)
    assert build(tmp_path_factory.mktemp("again")) == first, "bundles are reproducible"
    return out


def test_bundles_hold_main_requirements_and_shared(bundles):
    for name in FUNCTIONS:
        listing = zipfile.ZipFile(bundles / f"{name}.zip").namelist()
        assert {"main.py", "requirements.txt", "shared/__init__.py",
                "shared/core/specs/tetouan_power.json"} <= set(listing)
        assert not any("__pycache__" in n or n.startswith(("tests/", "functions/")) for n in listing)
    assert "data/tetouan_power_2017.csv" in zipfile.ZipFile(bundles / "collect_data.zip").namelist()


def _install_and_import(bundles: Path, name: str, workdir: Path) -> tuple[str, int, str]:
    root = workdir / name
    zipfile.ZipFile(bundles / f"{name}.zip").extractall(root)
    venv = workdir / f"venv-{name}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                          "-r", str(root / "requirements.txt"), "-c", str(ROOT / "constraints.txt")],
                         capture_output=True, text=True)
    if pip.returncode:
        return name, pip.returncode, pip.stderr[-2000:]
    imports = "; ".join([f"import main; assert callable(main.{name})"] +
                        [f"import shared.platform.backends.{port}" for port in PORTS[name]])
    env = {"PATH": os.environ["PATH"], "HOME": str(workdir), "BACKEND": "embedded",
           "STATE_DIR": str(workdir / f"state-{name}"), "LOG_LEVEL": "WARNING"}
    run = subprocess.run([str(venv / "bin" / "python"), "-c", imports], cwd=root, env=env,
                         capture_output=True, text=True, timeout=300)
    return name, run.returncode, run.stderr[-2000:]


def test_each_bundle_installs_from_its_own_requirements_and_imports(bundles, tmp_path):
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda n: _install_and_import(bundles, n, tmp_path), FUNCTIONS))
    for name, code, err in results:
        assert code == 0, f"{name}: {err}"


def test_predict_bundle_does_not_need_scikit_learn_or_pandas():
    requirements = (ROOT / "functions" / "predict" / "requirements.txt").read_text()
    assert "scikit-learn" not in requirements and "pandas" not in requirements


# -- BigQuery: the external tables' schemas and the views' SQL --------------------------------

BIGQUERY = TF / "bigquery"
SPEC = load_spec("tetouan_power")
TABLES = "the-project.forecast_analytics"


def terraform_eval(expression: str):
    """An expression evaluated by Terraform itself, in an empty folder (no provider needed)."""
    if not shutil.which("terraform"):
        require("terraform is not installed")
    with tempfile.TemporaryDirectory() as empty:
        result = subprocess.run(["terraform", "console"], input=f"jsonencode({expression})\n", cwd=empty,
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": "/dev/null"})
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout))


def rendered_view(template: str, sources: list[str]) -> str:
    variables = json.dumps({"tables": TABLES, "targets": SPEC.target_names, "sources": sources})
    return terraform_eval(f'templatefile("{BIGQUERY / template}", jsondecode({json.dumps(variables)}))')


def sql_type(field: dict) -> str:
    kind = {"FLOAT64": "FLOAT64", "INT64": "INT64", "STRING": "STRING", "RECORD": "STRUCT"}[field["type"]]
    if kind == "STRUCT":
        members = ", ".join(f"{f['name']} {sql_type(f)}" for f in field["fields"])
        kind = f"STRUCT<{members}>"
    return f"ARRAY<{kind}>" if field["mode"] == "REPEATED" else kind


def declared_columns(path: Path) -> dict[str, str]:
    return {f["name"]: sql_type(f) for f in json.loads(path.read_text())}


def missing_struct_fields(sql: str, fields: list[dict]) -> list[str]:
    """``alias.record.field...`` paths in ``sql`` that the declared RECORD columns do not have
    (the column check stops at a column; this follows the path into it)."""
    records = {f["name"]: f for f in fields if f["type"] == "RECORD"}
    missing = []
    for record, path in re.findall(rf"\b\w+\.({'|'.join(records)})((?:\.\w+)+)", sql):
        node = records[record]
        for step in path.strip(".").split("."):
            node = next((f for f in node.get("fields", []) if f["name"] == step), None)
            if node is None:
                missing.append(f"{record}{path}")
                break
    return missing


def test_bigquery_schemas_are_current_for_every_spec():
    for path in sorted((ROOT / "shared" / "core" / "specs").glob("*.json")):
        spec = load_spec(path.stem)
        declared = json.loads((BIGQUERY / spec.name / "prediction_log.json").read_text())
        assert declared == prediction_log_schema(spec), "run: python -m tools.bigquery_schema"


def test_views_are_bigquery_sql_over_columns_the_tables_have(tf):
    local = tf_locals(tf)
    views = local["bq_views"]
    assert list(views) == ["actuals", "predictions_vs_reality", "metrics_daily"]  # each reads the ones before
    sources = ["replay", "weather_api"]
    # The columns of a collected batch: the canonical CSV collect writes (external tables autodetect them).
    frame = pd.DataFrame({"timestamp": pd.to_datetime(["2017-02-01"]),
                          **{c: [1.0] for c in SPEC.feature_names + SPEC.target_names}})
    header = to_canonical_csv(frame, SPEC).decode().splitlines()[0].split(",")
    batch = {c: "DATETIME" if c == "timestamp" else "FLOAT64" for c in header} | {"date": "DATE"}
    schema = {f"batches_{s}": batch for s in sources}
    schema["prediction_log"] = declared_columns(BIGQUERY / SPEC.name / "prediction_log.json") | {"date": "DATE"}
    schema["model_registry"] = declared_columns(BIGQUERY / "model_registry.json")
    project, dataset = TABLES.split(".")
    for name, view in views.items():
        sql = rendered_view(view["sql"], sources)
        tree = sqlglot.parse_one(sql, dialect="bigquery")
        # Qualifying fails on any column no table (or earlier view) has.
        qualified = qualify(tree, schema={project: {dataset: schema}}, dialect="bigquery",
                            validate_qualify_columns=True)
        schema[name] = {column: "STRING" for column in qualified.named_selects}
        log_fields = json.loads((BIGQUERY / SPEC.name / "prediction_log.json").read_text())
        registry_fields = json.loads((BIGQUERY / "model_registry.json").read_text())
        assert missing_struct_fields(sql, log_fields + registry_fields) == [], name
    assert set(schema["predictions_vs_reality"]) >= {"timestamp", "target", "model_version", "predicted", "lower",
                                                     "upper", "actual", "variant", "requested_at"}
    assert set(schema["metrics_daily"]) == {"day", "target", "model_version", "pairs", "mape", "rmse",
                                            "interval_coverage", "holdout_mape"}
    # The Terraform reads the spec's targets and the configured sources, as rendered here.
    assert local["targets"] == "${[for t in local.spec.targets : t.name]}"
    assert local["sources"] == "${[for s in jsondecode(var.collect_sources) : s.name]}"


def test_a_broken_view_fails_the_column_check():
    log_fields = json.loads((BIGQUERY / SPEC.name / "prediction_log.json").read_text())
    sql = rendered_view("predictions_vs_reality.sql.tftpl", ["replay"])
    assert missing_struct_fields(sql, log_fields) == []
    for good, bad in [("r.versions.zone1", "versions.zone9"), ("r.intervals.zone1.lower", "intervals.zone1.lowr"),
                      ("s.inputs.Timestamp", "inputs.Stamp")]:
        assert missing_struct_fields(sql.replace(good, "r." + bad, 1), log_fields) == [bad]
    sql = rendered_view("actuals.sql.tftpl", ["replay"]).replace(SPEC.target_names[0], "zone9", 1)
    tree = sqlglot.parse_one(sql, dialect="bigquery")
    batch = {"timestamp": "DATETIME", "date": "DATE", **{t: "FLOAT64" for t in SPEC.target_names}}
    project, dataset = TABLES.split(".")
    with pytest.raises(sqlglot.errors.OptimizeError, match="zone9"):
        qualify(tree, schema={project: {dataset: {"batches_replay": batch}}}, dialect="bigquery",
                validate_qualify_columns=True)
