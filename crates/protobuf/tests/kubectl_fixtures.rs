//! Bodies captured from the real kubectl 1.33 (see fixtures/README.md): each `.pb` must decode
//! to its `.json`, what kubectl would have sent as JSON (mostly its own `--dry-run=client -o
//! json` output for the same command).

use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn decoded(name: &str) -> kate_protobuf::Decoded {
    kate_protobuf::decode(&fixture(&format!("{name}.pb"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn assert_matches_json(name: &str, api_version: &str, kind: &str) {
    let got = decoded(name);
    let want: Value = serde_json::from_slice(&fixture(&format!("{name}.json"))).unwrap_or_default();
    assert_eq!(
        (got.api_version.as_str(), got.kind.as_str()),
        (api_version, kind),
        "{name}"
    );
    assert_eq!(
        got.object,
        want,
        "{name}:\n got {}\nwant {}",
        serde_json::to_string_pretty(&got.object).unwrap_or_default(),
        serde_json::to_string_pretty(&want).unwrap_or_default()
    );
}

#[test]
fn namespace() {
    assert_matches_json("namespace", "v1", "Namespace");
    assert_eq!(decoded("namespace").object["metadata"]["name"], "team-a");
}

#[test]
fn configmap() {
    assert_matches_json("configmap", "v1", "ConfigMap");
}

#[test]
fn secret_with_binary_data() {
    assert_matches_json("secret", "v1", "Secret");
    assert_eq!(decoded("secret").object["data"]["blob"], "AAEC/w==");
}

#[test]
fn deployment() {
    assert_matches_json("deployment", "apps/v1", "Deployment");
}

#[test]
fn service_clusterip() {
    assert_matches_json("service", "v1", "Service");
}

#[test]
fn serviceaccount() {
    assert_matches_json("serviceaccount", "v1", "ServiceAccount");
}

#[test]
fn job_and_cronjob() {
    assert_matches_json("job", "batch/v1", "Job");
    assert_matches_json("cronjob", "batch/v1", "CronJob");
}

#[test]
fn rbac() {
    assert_matches_json("role", "rbac.authorization.k8s.io/v1", "Role");
    assert_matches_json("clusterrole", "rbac.authorization.k8s.io/v1", "ClusterRole");
    assert_matches_json("rolebinding", "rbac.authorization.k8s.io/v1", "RoleBinding");
    assert_matches_json(
        "clusterrolebinding",
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
    );
}

#[test]
fn priorityclass_pdb_quota() {
    assert_matches_json("priorityclass", "scheduling.k8s.io/v1", "PriorityClass");
    assert_matches_json("poddisruptionbudget", "policy/v1", "PodDisruptionBudget");
    assert_matches_json("resourcequota", "v1", "ResourceQuota");
}

#[test]
fn auth_can_i_and_create_token() {
    assert_matches_json(
        "selfsubjectaccessreview",
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
    );
    assert_matches_json("tokenrequest", "authentication.k8s.io/v1", "TokenRequest");
}
