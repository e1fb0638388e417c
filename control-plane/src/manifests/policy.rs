//! The security policy of edited manifests, the same rules the API applies to a container spec:
//! pods meet the restricted Pod Security Standard (no privileges, host namespaces, host paths or
//! extra capabilities; non-root; the runtime's seccomp profile), models borrow no service
//! account and get no Kubernetes API token, Services stay inside the cluster, and the
//! environment keeps the platform's `AIP_*` contract and sets nothing that changes how programs
//! are loaded (`LD_PRELOAD` and the like).

use k8s_openapi::api::core::v1::{Container, EnvFromSource, PodSpec, SecurityContext, ServiceSpec};
use serde_json::Value;

use super::contract::is_contract_variable;
use super::deployed_model::Rendered;
use super::parse::{Object, Problem};

/// The only capability a container may add: binding ports below 1024.
pub const ALLOWED_CAPABILITY: &str = "NET_BIND_SERVICE";

/// Where the restricted Pod Security Standard is cited in messages.
const RESTRICTED: &str = "the restricted Pod Security Standard";

/// Volume types the restricted Pod Security Standard allows.
const ALLOWED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// SELinux types the restricted Pod Security Standard allows.
const ALLOWED_SELINUX_TYPES: [&str; 4] =
    ["container_t", "container_init_t", "container_kvm_t", "container_engine_t"];

/// Variables of the dynamic loader and the C library that change how every program is loaded or
/// which files it reads: what glibc itself ignores for setuid programs.
const LOADER_VARIABLES: [&str; 9] = [
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCPATH",
    "MALLOC_TRACE",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
];

/// Prefix of the runtime's fetch-policy variables (`PLATFORM_ARTIFACT_ALLOW_HTTP`, ...): a user
/// who could set them could point a model URL at the cluster's own network.
const ARTIFACT_POLICY_PREFIX: &str = "PLATFORM_ARTIFACT_";

/// Whether `name` changes how programs are loaded: `LD_*`, `DYLD_*` and glibc's other
/// loader variables.
pub fn is_loader_variable(name: &str) -> bool {
    name.starts_with("LD_") || name.starts_with("DYLD_") || LOADER_VARIABLES.contains(&name)
}

/// Why a user may not set the environment variable `name`, if they may not: the `AIP_*`
/// contract is the platform's, and loader variables would change how the runtime (or any
/// program) is loaded. The API's container-spec check and the manifests policy both use it.
pub fn env_name_problem(name: &str) -> Option<String> {
    if is_contract_variable(name) {
        Some(format!(
            "{name} is the platform's: the AIP_* variables of the serving contract are set by the platform"
        ))
    } else if is_loader_variable(name) {
        Some(format!("{name} changes how programs are loaded and may not be set"))
    } else if name.starts_with(ARTIFACT_POLICY_PREFIX) {
        Some(format!(
            "{name} is the operator's: where the runtime may fetch models from is set by the platform's --artifact-allow-* flags"
        ))
    } else {
        None
    }
}

/// The policy problems of an edited object of a deployed model.
pub fn check_deployed_model_object(object: &Object, rendered: &Rendered, problems: &mut Vec<Problem>) {
    match object {
        Object::Deployment(d) => {
            let Some(spec) = &d.spec else { return };
            match &spec.template.spec {
                Some(pod) => {
                    let rendered_pod =
                        rendered.deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref());
                    check_pod(pod, rendered_pod, "Deployment/spec/template/spec", problems)
                }
                None => problems.push(Problem::new("Deployment/spec/template/spec", "missing")),
            }
        }
        Object::Service(s) => check_service(s.spec.as_ref(), problems),
        _ => {}
    }
}

/// Models are reached through the gateway: a deployed model's Service stays inside the cluster.
fn check_service(spec: Option<&ServiceSpec>, problems: &mut Vec<Problem>) {
    let service_type = spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP");
    if service_type != "ClusterIP" {
        problems.push(Problem::new(
            "Service/spec/type",
            format!("{service_type} is not allowed: models are reached through the gateway (ClusterIP only)"),
        ));
    }
    if spec.and_then(|s| s.external_ips.as_ref()).is_some_and(|ips| !ips.is_empty()) {
        problems.push(Problem::new("Service/spec/externalIPs", "not allowed"));
    }
}

/// Every problem of a pod against the policy; `rendered` is what the platform rendered for it
/// (its service account and environment are the reference). A rendered pod checked against
/// itself has none: the platform's own pods and the models' meet the policy as rendered.
pub fn pod_problems(pod: &PodSpec, rendered: Option<&PodSpec>) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_pod(pod, rendered, "spec", &mut problems);
    problems
}

/// The security policy of a pod template.
fn check_pod(pod: &PodSpec, rendered: Option<&PodSpec>, path: &str, problems: &mut Vec<Problem>) {
    let mut deny =
        |field: &str, message: &str| problems.push(Problem::new(format!("{path}/{field}"), message));
    for (field, value) in
        [("hostNetwork", pod.host_network), ("hostPID", pod.host_pid), ("hostIPC", pod.host_ipc)]
    {
        if value == Some(true) {
            deny(field, "not allowed");
        }
    }
    for (i, volume) in pod.volumes.iter().flatten().enumerate() {
        let Ok(Value::Object(fields)) = serde_json::to_value(volume) else { continue };
        for kind in fields.keys().filter(|k| *k != "name" && !ALLOWED_VOLUMES.contains(&k.as_str())) {
            deny(&format!("volumes/{i}/{kind}"), "not allowed");
        }
    }
    // The pod's service account decides what the pod may do in the cluster: only the rendered
    // one (the namespace default, or the deployed model's `serviceAccount`), without a token.
    let rendered_account = rendered.and_then(|r| r.service_account_name.clone());
    if pod.service_account_name.is_some() && pod.service_account_name != rendered_account {
        deny("serviceAccountName", "not allowed: models run without the platform's service accounts");
    }
    if pod.service_account.is_some() && pod.service_account != rendered_account {
        deny("serviceAccount", "not allowed: models run without the platform's service accounts");
    }
    if pod.automount_service_account_token == Some(true) {
        deny("automountServiceAccountToken", "not allowed: models get no Kubernetes API token");
    }
    let pod_sc = pod.security_context.as_ref();
    if pod_sc.is_some_and(|s| s.run_as_non_root == Some(false)) {
        deny("securityContext/runAsNonRoot", "must not be false");
    }
    if pod_sc.is_some_and(|s| s.run_as_user == Some(0)) {
        deny("securityContext/runAsUser", &format!("must not be 0 (root): {RESTRICTED}"));
    }
    let pod_seccomp = pod_sc.and_then(|s| s.seccomp_profile.as_ref()).map(|p| p.type_.as_str());
    if pod_seccomp == Some("Unconfined") {
        deny("securityContext/seccompProfile/type", &format!("Unconfined is not allowed: {RESTRICTED}"));
    }
    if let Some(options) = pod_sc.and_then(|s| s.se_linux_options.as_ref()) {
        check_selinux(options, &format!("{path}/securityContext/seLinuxOptions"), problems);
    }
    let mut deny =
        |field: &str, message: &str| problems.push(Problem::new(format!("{path}/{field}"), message));
    for (i, _) in pod_sc.and_then(|s| s.sysctls.as_ref()).into_iter().flatten().enumerate() {
        deny(&format!("securityContext/sysctls/{i}"), "not allowed");
    }
    let inherited = Inherited {
        run_as_non_root: pod_sc.and_then(|s| s.run_as_non_root) == Some(true),
        seccomp: matches!(pod_seccomp, Some("RuntimeDefault" | "Localhost")),
    };
    let rendered_containers = rendered.map(|r| r.containers.as_slice()).unwrap_or_default();
    for (list, containers) in
        [("containers", Some(&pod.containers)), ("initContainers", pod.init_containers.as_ref())]
    {
        for (i, c) in containers.into_iter().flatten().enumerate() {
            let at = format!("{path}/{list}/{i}");
            check_container(c, inherited, &at, problems);
            let reference = rendered_containers.iter().find(|r| r.name == c.name && list == "containers");
            check_env(c, reference, &at, problems);
        }
    }
    if pod.ephemeral_containers.as_ref().is_some_and(|e| !e.is_empty()) {
        problems.push(Problem::new(format!("{path}/ephemeralContainers"), "not allowed"));
    }
}

/// What a container inherits from its pod's security context.
#[derive(Clone, Copy)]
struct Inherited {
    run_as_non_root: bool,
    seccomp: bool,
}

fn check_container(c: &Container, pod: Inherited, path: &str, problems: &mut Vec<Problem>) {
    let mut deny =
        |field: String, message: String| problems.push(Problem::new(format!("{path}/{field}"), message));
    let default = SecurityContext::default();
    let sc = c.security_context.as_ref().unwrap_or(&default);
    if sc.privileged == Some(true) {
        deny("securityContext/privileged".into(), "not allowed".into());
    }
    match sc.allow_privilege_escalation {
        Some(true) => deny("securityContext/allowPrivilegeEscalation".into(), "not allowed".into()),
        None => {
            deny("securityContext/allowPrivilegeEscalation".into(), format!("must be false: {RESTRICTED}"))
        }
        Some(false) => {}
    }
    match sc.run_as_non_root {
        Some(false) => deny("securityContext/runAsNonRoot".into(), "must not be false".into()),
        None if !pod.run_as_non_root => deny(
            "securityContext/runAsNonRoot".into(),
            format!("must be true here or in the pod's securityContext: {RESTRICTED}"),
        ),
        _ => {}
    }
    if sc.run_as_user == Some(0) {
        deny("securityContext/runAsUser".into(), format!("must not be 0 (root): {RESTRICTED}"));
    }
    match sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()) {
        Some("Unconfined") => deny(
            "securityContext/seccompProfile/type".into(),
            format!("Unconfined is not allowed: {RESTRICTED}"),
        ),
        None if !pod.seccomp => deny(
            "securityContext/seccompProfile".into(),
            format!("must be RuntimeDefault or Localhost here or in the pod's securityContext: {RESTRICTED}"),
        ),
        _ => {}
    }
    if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        deny("securityContext/procMount".into(), format!("must be Default: {RESTRICTED}"));
    }
    let caps = sc.capabilities.as_ref();
    if !caps.and_then(|c| c.drop.as_ref()).is_some_and(|d| d.iter().any(|c| c == "ALL")) {
        deny("securityContext/capabilities/drop".into(), format!("must include ALL: {RESTRICTED}"));
    }
    for (i, cap) in caps.and_then(|c| c.add.as_ref()).into_iter().flatten().enumerate() {
        let bare = cap.trim_start_matches("CAP_");
        if bare != ALLOWED_CAPABILITY {
            deny(
                format!("securityContext/capabilities/add/{i}"),
                format!("{cap} is not allowed (only {ALLOWED_CAPABILITY} may be added)"),
            );
        }
    }
    for (i, port) in c.ports.iter().flatten().enumerate() {
        if port.host_port.is_some_and(|p| p != 0) {
            deny(format!("ports/{i}/hostPort"), "not allowed".into());
        }
    }
    if let Some(options) = &sc.se_linux_options {
        check_selinux(options, &format!("{path}/securityContext/seLinuxOptions"), problems);
    }
}

fn check_selinux(
    options: &k8s_openapi::api::core::v1::SELinuxOptions,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    if options.user.is_some() {
        problems.push(Problem::new(format!("{path}/user"), format!("not allowed: {RESTRICTED}")));
    }
    if options.role.is_some() {
        problems.push(Problem::new(format!("{path}/role"), format!("not allowed: {RESTRICTED}")));
    }
    if let Some(t) = options.type_.as_deref()
        && !ALLOWED_SELINUX_TYPES.contains(&t)
    {
        problems.push(Problem::new(
            format!("{path}/type"),
            format!("{t} is not allowed (only {}): {RESTRICTED}", ALLOWED_SELINUX_TYPES.join(", ")),
        ));
    }
}

/// The environment keeps the platform's contract as rendered and adds nothing that changes how
/// programs are loaded; `envFrom` may only name what the platform rendered (a Secret or
/// ConfigMap could set any variable).
fn check_env(c: &Container, rendered: Option<&Container>, path: &str, problems: &mut Vec<Problem>) {
    let rendered_env = rendered.and_then(|r| r.env.as_deref()).unwrap_or_default();
    let env = c.env.as_deref().unwrap_or_default();
    for (i, var) in env.iter().enumerate() {
        if rendered_env.contains(var) {
            continue;
        }
        if let Some(why) = env_name_problem(&var.name) {
            let what =
                if is_contract_variable(&var.name) { "cannot be set or changed" } else { "cannot be set" };
            problems
                .push(Problem::new(format!("{path}/env/{i}"), format!("{why}; it {what} in the manifests")));
        }
    }
    for var in rendered_env.iter().filter(|v| is_contract_variable(&v.name)) {
        if !env.iter().any(|e| e.name == var.name) {
            problems.push(Problem::new(
                format!("{path}/env"),
                format!("must keep {} (the platform sets it)", var.name),
            ));
        }
    }
    let rendered_from: &[EnvFromSource] = rendered.and_then(|r| r.env_from.as_deref()).unwrap_or_default();
    for (i, from) in c.env_from.iter().flatten().enumerate() {
        if !rendered_from.contains(from) {
            problems.push(Problem::new(
                format!("{path}/envFrom/{i}"),
                "not allowed: it could set any variable, the platform's AIP_* and the loader's included; list variables under env",
            ));
        }
    }
}
