//! Validation of edited manifests. Users may change what runs (image, env, resources, probes,
//! replicas, ...), but an edit must stay inside what the platform renders for that deployed
//! model or endpoint (same kinds, names, namespace, ownership labels and selectors) and inside
//! the security policy (no privileged containers, host paths, host namespaces or extra
//! capabilities). Pure: text in, typed objects or every problem with its path out.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Container, PodSpec, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Deserialize;
use serde_json::Value;

use super::{Rendered, RenderedEndpoint};

/// The only capability a container may add: binding ports below 1024.
pub const ALLOWED_CAPABILITY: &str = "NET_BIND_SERVICE";

/// One thing wrong with an edited manifest, at a path like
/// `Deployment/spec/template/spec/containers/0/securityContext/privileged`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem of an edited manifest, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_problems(.0))]
pub struct Problems(pub Vec<Problem>);

fn display_problems(problems: &[Problem]) -> String {
    problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n")
}

/// One typed object of the kinds the platform renders.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Deployment(Box<Deployment>),
    Service(Box<Service>),
    HorizontalPodAutoscaler(Box<HorizontalPodAutoscaler>),
    PodDisruptionBudget(Box<PodDisruptionBudget>),
    Ingress(Box<Ingress>),
    NetworkPolicy(Box<NetworkPolicy>),
}

/// `(apiVersion, kind)` of every kind the platform renders.
const KINDS: [(&str, &str); 6] = [
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
];
const DEPLOYED_MODEL_KINDS: [&str; 4] =
    ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"];
const ENDPOINT_KINDS: [&str; 2] = ["Ingress", "NetworkPolicy"];

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Deployment(_) => "Deployment",
            Object::Service(_) => "Service",
            Object::HorizontalPodAutoscaler(_) => "HorizontalPodAutoscaler",
            Object::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Object::Ingress(_) => "Ingress",
            Object::NetworkPolicy(_) => "NetworkPolicy",
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Deployment(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::HorizontalPodAutoscaler(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
            Object::Ingress(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
        }
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Deployment(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::HorizontalPodAutoscaler(o) => &mut o.metadata,
            Object::PodDisruptionBudget(o) => &mut o.metadata,
            Object::Ingress(o) => &mut o.metadata,
            Object::NetworkPolicy(o) => &mut o.metadata,
        }
    }

    fn from_value(kind: &str, value: Value) -> Result<Object, serde_json::Error> {
        Ok(match kind {
            "Deployment" => Object::Deployment(Box::new(serde_json::from_value(value)?)),
            "Service" => Object::Service(Box::new(serde_json::from_value(value)?)),
            "HorizontalPodAutoscaler" => {
                Object::HorizontalPodAutoscaler(Box::new(serde_json::from_value(value)?))
            }
            "PodDisruptionBudget" => Object::PodDisruptionBudget(Box::new(serde_json::from_value(value)?)),
            "Ingress" => Object::Ingress(Box::new(serde_json::from_value(value)?)),
            _ => Object::NetworkPolicy(Box::new(serde_json::from_value(value)?)),
        })
    }

    fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self {
            Object::Deployment(o) => serde_json::to_value(o),
            Object::Service(o) => serde_json::to_value(o),
            Object::HorizontalPodAutoscaler(o) => serde_json::to_value(o),
            Object::PodDisruptionBudget(o) => serde_json::to_value(o),
            Object::Ingress(o) => serde_json::to_value(o),
            Object::NetworkPolicy(o) => serde_json::to_value(o),
        }
    }
}

impl Rendered {
    /// The objects, in the order of [`Rendered::to_yaml`].
    pub fn objects(&self) -> Vec<Object> {
        let mut objects = vec![
            Object::Deployment(Box::new(self.deployment.clone())),
            Object::Service(Box::new(self.service.clone())),
        ];
        objects.extend(self.hpa.clone().map(|o| Object::HorizontalPodAutoscaler(Box::new(o))));
        objects.extend(self.pdb.clone().map(|o| Object::PodDisruptionBudget(Box::new(o))));
        objects
    }
}

impl RenderedEndpoint {
    /// The objects, in the order of [`RenderedEndpoint::to_yaml`].
    pub fn objects(&self) -> Vec<Object> {
        let mut objects = Vec::new();
        objects.extend(self.ingress.clone().map(|o| Object::Ingress(Box::new(o))));
        objects.extend(self.network_policy.clone().map(|o| Object::NetworkPolicy(Box::new(o))));
        objects
    }
}

/// Parses multi-document YAML into typed objects of the platform's kinds. Fields the types do
/// not know are problems too: silently dropping a misspelt field would lose the user's edit.
pub fn parse(yaml: &str) -> Result<Vec<Object>, Problems> {
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (i, document) in serde_norway::Deserializer::from_str(yaml).enumerate() {
        let at = format!("document {}", i + 1);
        let value = match Value::deserialize(document) {
            Ok(Value::Null) => continue,
            Ok(value) => value,
            Err(e) => {
                problems.push(Problem { path: at, message: format!("not valid YAML: {e}") });
                // The YAML parser cannot resynchronise after a syntax error.
                break;
            }
        };
        let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some((expected_version, kind)) = KINDS.iter().find(|(_, k)| *k == kind) else {
            let message = if kind.is_empty() {
                "has no kind".to_string()
            } else {
                format!(
                    "kind {kind} is not one the platform manages (allowed: {})",
                    kind_list(&KINDS.map(|k| k.1))
                )
            };
            problems.push(Problem { path: format!("{at}/kind"), message });
            continue;
        };
        if api_version != *expected_version {
            problems.push(Problem {
                path: format!("{kind}/apiVersion"),
                message: format!("must be {expected_version}, not `{api_version}`"),
            });
            continue;
        }
        match Object::from_value(kind, value.clone()) {
            Ok(object) => {
                if let Ok(typed) = object.to_value() {
                    unknown_fields(&value, &typed, kind, &mut problems);
                }
                objects.push(object);
            }
            Err(e) => problems.push(Problem { path: kind.to_string(), message: e.to_string() }),
        }
    }
    if problems.is_empty() { Ok(objects) } else { Err(Problems(problems)) }
}

fn kind_list(kinds: &[&str]) -> String {
    kinds.join(", ")
}

/// Reports keys of `input` that did not survive the typed round trip.
fn unknown_fields(input: &Value, typed: &Value, path: &str, problems: &mut Vec<Problem>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}/{key}");
                match b.get(key) {
                    Some(t) => unknown_fields(value, t, &here, problems),
                    None if value.is_null() => {}
                    None => problems.push(Problem { path: here, message: "unknown field".into() }),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, &format!("{path}/{i}"), problems);
            }
        }
        _ => {}
    }
}

/// Validates an edited manifest of a deployed model against what the platform rendered for it.
/// The Deployment and Service are required; the HPA and PDB may be added or removed.
pub fn validate_deployed_model(edited: &str, rendered: &Rendered) -> Result<Rendered, Problems> {
    let objects = parse(edited)?;
    let mut problems = Vec::new();
    let reference = rendered.objects();
    let objects = check_set(objects, &reference, &DEPLOYED_MODEL_KINDS, &mut problems);
    let mut deployment = None;
    let mut service = None;
    let mut hpa = None;
    let mut pdb = None;
    for object in objects {
        check_object(&object, rendered, &mut problems);
        match object {
            Object::Deployment(o) => deployment = Some(*o),
            Object::Service(o) => service = Some(*o),
            Object::HorizontalPodAutoscaler(o) => hpa = Some(*o),
            Object::PodDisruptionBudget(o) => pdb = Some(*o),
            Object::Ingress(_) | Object::NetworkPolicy(_) => {}
        }
    }
    for (kind, missing) in [("Deployment", deployment.is_none()), ("Service", service.is_none())] {
        if missing {
            problems.push(Problem {
                path: kind.into(),
                message: "missing: a deployed model's manifests keep their Deployment and Service".into(),
            });
        }
    }
    match (deployment, service) {
        (Some(deployment), Some(service)) if problems.is_empty() => {
            Ok(Rendered { deployment, service, hpa, pdb })
        }
        _ => Err(Problems(problems)),
    }
}

/// Validates an edited manifest of an endpoint against what the platform rendered for it.
pub fn validate_endpoint(edited: &str, rendered: &RenderedEndpoint) -> Result<RenderedEndpoint, Problems> {
    let objects = parse(edited)?;
    let mut problems = Vec::new();
    let reference = rendered.objects();
    // A private endpoint has no Ingress and a public one no NetworkPolicy: no kind may be added.
    let allowed: Vec<&str> =
        ENDPOINT_KINDS.into_iter().filter(|k| reference.iter().any(|r| r.kind() == *k)).collect();
    let objects = check_set(objects, &reference, &allowed, &mut problems);
    let mut out = RenderedEndpoint { ingress: None, network_policy: None };
    for object in objects {
        check_endpoint_object(&object, rendered, &mut problems);
        match object {
            Object::Ingress(o) => out.ingress = Some(*o),
            Object::NetworkPolicy(o) => out.network_policy = Some(*o),
            _ => {}
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(Problems(problems)) }
}

/// Kinds, duplicates, names and namespaces: what makes an object belong to the owner.
fn check_set(
    objects: Vec<Object>,
    reference: &[Object],
    allowed: &[&str],
    problems: &mut Vec<Problem>,
) -> Vec<Object> {
    let Some(owner) = reference.first().map(Object::metadata) else {
        return objects;
    };
    let mut seen = Vec::new();
    let mut kept = Vec::new();
    for mut object in objects {
        let kind = object.kind();
        if !allowed.contains(&kind) {
            problems.push(Problem {
                path: format!("{kind}/kind"),
                message: format!("not part of these manifests (allowed: {})", kind_list(allowed)),
            });
            continue;
        }
        if seen.contains(&kind) {
            problems.push(Problem { path: kind.into(), message: format!("more than one {kind}") });
            continue;
        }
        seen.push(kind);
        let meta = object.metadata();
        if meta.name != owner.name {
            problems.push(Problem {
                path: format!("{kind}/metadata/name"),
                message: format!("must stay `{}`", owner.name.as_deref().unwrap_or_default()),
            });
        }
        let namespace =
            reference.iter().find(|r| r.kind() == kind).map_or(owner, Object::metadata).namespace.clone();
        if meta.namespace.is_some() && meta.namespace != namespace {
            problems.push(Problem {
                path: format!("{kind}/metadata/namespace"),
                message: format!("must stay `{}`", namespace.as_deref().unwrap_or_default()),
            });
        }
        check_labels(
            meta.labels.as_ref(),
            &ownership_labels(owner),
            &format!("{kind}/metadata/labels"),
            problems,
        );
        // Omitting the namespace means "where it was rendered", never the backend's default.
        object.metadata_mut().namespace = namespace;
        kept.push(object);
    }
    kept
}

/// The labels that tie an object to its owner: the platform's own and `managed-by`.
fn ownership_labels(owner: &ObjectMeta) -> BTreeMap<String, String> {
    let Some(labels) = &owner.labels else {
        return BTreeMap::new();
    };
    let prefixes: Vec<&str> = labels
        .keys()
        .filter(|k| k.ends_with("/endpoint"))
        .filter_map(|k| k.strip_suffix("endpoint"))
        .collect();
    labels
        .iter()
        .filter(|(k, _)| {
            // The kubernetes backend finds (and deletes) a deployed model's objects by these.
            matches!(k.as_str(), "app.kubernetes.io/managed-by" | "app.kubernetes.io/instance")
                || (prefixes.iter().any(|p| k.starts_with(p))
                    && (k.ends_with("/endpoint") || k.ends_with("/deployed-model")))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn check_labels(
    labels: Option<&BTreeMap<String, String>>,
    required: &BTreeMap<String, String>,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    for (key, value) in required {
        let actual = labels.and_then(|l| l.get(key));
        if actual != Some(value) {
            let message = match actual {
                None => format!("must keep `{value}` (it marks what the platform owns)"),
                Some(_) => format!("must stay `{value}` (it marks what the platform owns)"),
            };
            problems.push(Problem { path: format!("{path}/{key}"), message });
        }
    }
}

fn check_selector(
    actual: Option<&LabelSelector>,
    expected: &BTreeMap<String, String>,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    let ok = actual.is_some_and(|s| {
        s.match_labels.as_ref() == Some(expected) && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
    });
    if !ok {
        problems.push(Problem {
            path: path.into(),
            message: format!("must stay {} (selecting other pods is not allowed)", show_labels(expected)),
        });
    }
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("`{}`", pairs.join(","))
}

fn check_object(object: &Object, rendered: &Rendered, problems: &mut Vec<Problem>) {
    let selector =
        rendered.deployment.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    match object {
        Object::Deployment(d) => {
            let Some(spec) = &d.spec else {
                problems.push(Problem { path: "Deployment/spec".into(), message: "missing".into() });
                return;
            };
            check_selector(Some(&spec.selector), &selector, "Deployment/spec/selector", problems);
            let template_labels = spec.template.metadata.as_ref().and_then(|m| m.labels.as_ref());
            check_labels(template_labels, &selector, "Deployment/spec/template/metadata/labels", problems);
            match &spec.template.spec {
                Some(pod) => {
                    let rendered_pod =
                        rendered.deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref());
                    check_pod(pod, rendered_pod, "Deployment/spec/template/spec", problems)
                }
                None => problems.push(Problem {
                    path: "Deployment/spec/template/spec".into(),
                    message: "missing".into(),
                }),
            }
        }
        Object::Service(s) => {
            let spec = s.spec.as_ref();
            if spec.and_then(|s| s.selector.as_ref()) != Some(&selector) {
                problems.push(Problem {
                    path: "Service/spec/selector".into(),
                    message: format!(
                        "must stay {} (selecting other pods is not allowed)",
                        show_labels(&selector)
                    ),
                });
            }
            let service_type = spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP");
            if service_type != "ClusterIP" {
                problems.push(Problem {
                    path: "Service/spec/type".into(),
                    message: format!("{service_type} is not allowed: models are reached through the gateway (ClusterIP only)"),
                });
            }
            if spec.and_then(|s| s.external_ips.as_ref()).is_some_and(|ips| !ips.is_empty()) {
                problems
                    .push(Problem { path: "Service/spec/externalIPs".into(), message: "not allowed".into() });
            }
        }
        Object::HorizontalPodAutoscaler(h) => {
            let target = h.spec.as_ref().map(|s| &s.scale_target_ref);
            let name = rendered.deployment.metadata.name.as_deref().unwrap_or_default();
            if !target.is_some_and(|t| t.kind == "Deployment" && t.name == name) {
                problems.push(Problem {
                    path: "HorizontalPodAutoscaler/spec/scaleTargetRef".into(),
                    message: format!("must stay the Deployment `{name}`"),
                });
            }
        }
        Object::PodDisruptionBudget(p) => {
            let actual = p.spec.as_ref().and_then(|s| s.selector.as_ref());
            check_selector(actual, &selector, "PodDisruptionBudget/spec/selector", problems);
        }
        Object::Ingress(_) | Object::NetworkPolicy(_) => {}
    }
}

fn check_endpoint_object(object: &Object, rendered: &RenderedEndpoint, problems: &mut Vec<Problem>) {
    match object {
        Object::Ingress(i) => {
            // Any other backend would publish a Service of the namespace without the gateway's
            // authentication.
            let backend = rendered
                .ingress
                .as_ref()
                .and_then(|i| i.spec.as_ref())
                .and_then(|s| s.rules.as_ref())
                .and_then(|r| r.first())
                .and_then(|r| r.http.as_ref())
                .and_then(|h| h.paths.first())
                .and_then(|p| p.backend.service.as_ref())
                .map(|s| s.name.clone());
            let Some(spec) = &i.spec else { return };
            if spec.default_backend.is_some() {
                problems.push(Problem {
                    path: "Ingress/spec/defaultBackend".into(),
                    message: "not allowed".into(),
                });
            }
            for (r, rule) in spec.rules.iter().flatten().enumerate() {
                for (p, path) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
                    let service = path.backend.service.as_ref().map(|s| s.name.clone());
                    if service.is_none() || service != backend {
                        problems.push(Problem {
                            path: format!("Ingress/spec/rules/{r}/http/paths/{p}/backend"),
                            message: format!(
                                "must stay the gateway Service `{}`",
                                backend.as_deref().unwrap_or_default()
                            ),
                        });
                    }
                }
            }
        }
        Object::NetworkPolicy(n) => {
            let expected = rendered
                .network_policy
                .as_ref()
                .and_then(|n| n.spec.as_ref())
                .and_then(|s| s.pod_selector.as_ref())
                .and_then(|s| s.match_labels.clone())
                .unwrap_or_default();
            let actual = n.spec.as_ref().and_then(|s| s.pod_selector.as_ref());
            check_selector(actual, &expected, "NetworkPolicy/spec/podSelector", problems);
        }
        _ => {}
    }
}

/// The security policy of a pod template.
fn check_pod(pod: &PodSpec, rendered: Option<&PodSpec>, path: &str, problems: &mut Vec<Problem>) {
    let mut deny = |field: &str, message: &str| {
        problems.push(Problem { path: format!("{path}/{field}"), message: message.into() })
    };
    for (field, value) in
        [("hostNetwork", pod.host_network), ("hostPID", pod.host_pid), ("hostIPC", pod.host_ipc)]
    {
        if value == Some(true) {
            deny(field, "not allowed");
        }
    }
    for (i, volume) in pod.volumes.iter().flatten().enumerate() {
        if volume.host_path.is_some() {
            deny(&format!("volumes/{i}/hostPath"), "not allowed");
        }
    }
    // The pod's service account decides what the pod may do in the cluster: only the rendered
    // one (the namespace default, without a token).
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
    if pod.security_context.as_ref().is_some_and(|s| s.run_as_non_root == Some(false)) {
        deny("securityContext/runAsNonRoot", "must not be false");
    }
    for (list, containers) in
        [("containers", Some(&pod.containers)), ("initContainers", pod.init_containers.as_ref())]
    {
        for (i, c) in containers.into_iter().flatten().enumerate() {
            check_container(c, &format!("{path}/{list}/{i}"), problems);
        }
    }
    if pod.ephemeral_containers.as_ref().is_some_and(|e| !e.is_empty()) {
        problems.push(Problem { path: format!("{path}/ephemeralContainers"), message: "not allowed".into() });
    }
}

fn check_container(c: &Container, path: &str, problems: &mut Vec<Problem>) {
    let mut deny =
        |field: String, message: String| problems.push(Problem { path: format!("{path}/{field}"), message });
    if let Some(sc) = &c.security_context {
        if sc.privileged == Some(true) {
            deny("securityContext/privileged".into(), "not allowed".into());
        }
        if sc.allow_privilege_escalation == Some(true) {
            deny("securityContext/allowPrivilegeEscalation".into(), "not allowed".into());
        }
        if sc.run_as_non_root == Some(false) {
            deny("securityContext/runAsNonRoot".into(), "must not be false".into());
        }
        let added = sc.capabilities.as_ref().and_then(|c| c.add.as_ref());
        for (i, cap) in added.into_iter().flatten().enumerate() {
            let bare = cap.trim_start_matches("CAP_");
            if bare != ALLOWED_CAPABILITY {
                deny(
                    format!("securityContext/capabilities/add/{i}"),
                    format!("{cap} is not allowed (only {ALLOWED_CAPABILITY} may be added)"),
                );
            }
        }
    }
    for (i, port) in c.ports.iter().flatten().enumerate() {
        if port.host_port.is_some_and(|p| p != 0) {
            deny(format!("ports/{i}/hostPort"), "not allowed".into());
        }
    }
}

/// A unified diff of two manifests (for `?dryRun=true`): what applying `edited` would change.
pub fn diff(current: &str, edited: &str) -> String {
    similar::TextDiff::from_lines(current, edited)
        .unified_diff()
        .context_radius(3)
        .header("current", "edited")
        .to_string()
}

#[cfg(test)]
mod tests {
    use api::{Access, AutoscalingMetricSpec, METRIC_CPU};

    use super::*;
    use crate::machine::Catalog;
    use crate::manifests::{
        EndpointInput, ModelContainerSpec, RenderConfig, RenderInput, render, render_endpoint,
    };

    fn rendered() -> Rendered {
        let input = RenderInput {
            project: "p".into(),
            location: "l".into(),
            endpoint_id: "fraud".into(),
            deployed_model_id: "42".into(),
            model_id: "mlp".into(),
            model_version_id: "1".into(),
            display_name: "mlp".into(),
            container: ModelContainerSpec::default(),
            artifact_uri: None,
            machine: Catalog::builtin().get("e2-small").unwrap().clone(),
            min_replicas: 2,
            max_replicas: 4,
            autoscaling: vec![AutoscalingMetricSpec { metric_name: METRIC_CPU.into(), target: 60 }],
        };
        render(&input, &RenderConfig { namespace: "models".into(), ..RenderConfig::default() })
    }

    /// The rendered YAML with `from` replaced by `to` (exactly once).
    fn edit(from: &str, to: &str) -> String {
        let yaml = rendered().to_yaml().unwrap();
        assert_eq!(yaml.matches(from).count(), 1, "`{from}` must occur once in:\n{yaml}");
        yaml.replacen(from, to, 1)
    }

    fn problems(yaml: &str) -> Vec<String> {
        match validate_deployed_model(yaml, &rendered()) {
            Ok(_) => vec![],
            Err(p) => p.0.iter().map(Problem::to_string).collect(),
        }
    }

    fn assert_rejected(yaml: &str, expected: &str) {
        let found = problems(yaml);
        assert!(found.iter().any(|p| p == expected), "expected `{expected}` among {found:#?}");
    }

    #[test]
    fn the_rendered_manifest_round_trips() {
        let r = rendered();
        assert_eq!(validate_deployed_model(&r.to_yaml().unwrap(), &r).unwrap(), r);
    }

    #[test]
    fn allowed_edits_are_kept() {
        let yaml =
            edit("replicas: 2\n", "replicas: 3\n").replace("image: platform-runtime", "image: my/runtime");
        let out = validate_deployed_model(&yaml, &rendered()).unwrap();
        assert_eq!(out.deployment.spec.as_ref().unwrap().replicas, Some(3));
        let image = out.deployment.spec.unwrap().template.spec.unwrap().containers[0].image.clone().unwrap();
        assert!(image.starts_with("my/runtime"), "{image}");
        // Without the HPA and PDB documents, those objects go.
        let r = rendered();
        let yaml = crate::manifests::to_yaml(&[&r.deployment, &r.service]).unwrap();
        let out = validate_deployed_model(&yaml, &r).unwrap();
        assert!(out.hpa.is_none() && out.pdb.is_none());
        // An omitted namespace is the rendered one.
        let out = validate_deployed_model(&edit("  namespace: models\nspec:\n  ports", "spec:\n  ports"), &r)
            .unwrap();
        assert_eq!(out.service.metadata.namespace.as_deref(), Some("models"));
    }

    #[test]
    fn privileged_containers_are_rejected() {
        assert_rejected(
            &edit(
                "          allowPrivilegeEscalation: false\n",
                "          allowPrivilegeEscalation: false\n          privileged: true\n",
            ),
            "Deployment/spec/template/spec/containers/0/securityContext/privileged: not allowed",
        );
        assert_rejected(
            &edit("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"),
            "Deployment/spec/template/spec/containers/0/securityContext/allowPrivilegeEscalation: not allowed",
        );
    }

    #[test]
    fn host_paths_are_rejected() {
        let yaml = edit(
            "      terminationGracePeriodSeconds: 30\n",
            "      terminationGracePeriodSeconds: 30\n      volumes:\n      - name: root\n        hostPath:\n          path: /\n",
        );
        assert_rejected(&yaml, "Deployment/spec/template/spec/volumes/0/hostPath: not allowed");
    }

    #[test]
    fn host_namespaces_are_rejected() {
        let yaml = edit(
            "      enableServiceLinks: false\n",
            "      enableServiceLinks: false\n      hostNetwork: true\n      hostPID: true\n      hostIPC: true\n",
        );
        let found = problems(&yaml);
        for field in ["hostNetwork", "hostPID", "hostIPC"] {
            let expected = format!("Deployment/spec/template/spec/{field}: not allowed");
            assert!(found.contains(&expected), "{expected} in {found:#?}");
        }
    }

    #[test]
    fn only_net_bind_service_may_be_added() {
        let yaml = edit(
            "            - ALL\n",
            "            - ALL\n            add:\n            - NET_BIND_SERVICE\n            - SYS_ADMIN\n",
        );
        assert_eq!(
            problems(&yaml),
            vec![
                "Deployment/spec/template/spec/containers/0/securityContext/capabilities/add/1: SYS_ADMIN is not \
                 allowed (only NET_BIND_SERVICE may be added)"
            ]
        );
        let yaml = edit(
            "            - ALL\n",
            "            - ALL\n            add:\n            - NET_BIND_SERVICE\n",
        );
        assert_eq!(problems(&yaml), Vec::<String>::new());
    }

    #[test]
    fn kinds_outside_the_rendered_set_are_rejected() {
        let yaml = format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
            rendered().to_yaml().unwrap()
        );
        let found = problems(&yaml);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("document 5/kind: kind ConfigMap is not one the platform manages"),
            "{found:#?}"
        );
        let ingress = render_endpoint(
            &EndpointInput {
                project: "p".into(),
                location: "l".into(),
                endpoint_id: "fraud".into(),
                access: Access::Public,
            },
            &RenderConfig::default(),
        );
        let yaml = format!("{}{}", rendered().to_yaml().unwrap(), ingress.to_yaml().unwrap());
        assert!(problems(&yaml).iter().any(|p| p.starts_with("Ingress/kind: not part of these manifests")));
        assert_rejected(
            &edit("---\napiVersion: apps/v1\n", "---\napiVersion: apps/v1beta1\n"),
            "Deployment/apiVersion: must be apps/v1, not `apps/v1beta1`",
        );
    }

    #[test]
    fn names_namespaces_and_labels_stay_the_deployed_models() {
        let name = "ep-fraud-dm-42";
        let yaml =
            rendered().to_yaml().unwrap().replacen(&format!("  name: {name}\n"), "  name: someone-else\n", 1);
        assert_rejected(&yaml, "Deployment/metadata/name: must stay `ep-fraud-dm-42`");
        let yaml =
            rendered().to_yaml().unwrap().replacen("  namespace: models\n", "  namespace: kube-system\n", 1);
        assert_rejected(&yaml, "Deployment/metadata/namespace: must stay `models`");
        let yaml = rendered().to_yaml().unwrap().replacen(
            "    platform.dev/endpoint: fraud\n",
            "    platform.dev/endpoint: other\n",
            1,
        );
        assert_rejected(
            &yaml,
            "Deployment/metadata/labels/platform.dev/endpoint: must stay `fraud` (it marks what the platform owns)",
        );
        let yaml =
            rendered().to_yaml().unwrap().replacen("    app.kubernetes.io/managed-by: platform\n", "", 1);
        assert_rejected(
            &yaml,
            "Deployment/metadata/labels/app.kubernetes.io/managed-by: must keep `platform` (it marks what the platform owns)",
        );
    }

    #[test]
    fn selectors_cannot_reach_other_pods() {
        let yaml = rendered().to_yaml().unwrap();
        // Service selector (the second selector block of the YAML) pointing at another model.
        let service_at = yaml.find("kind: Service").unwrap();
        let (head, tail) = yaml.split_at(service_at);
        let tail = tail.replacen("platform.dev/deployed-model: '42'", "platform.dev/deployed-model: '43'", 2);
        let found = problems(&format!("{head}{tail}"));
        assert!(found.iter().any(|p| p.starts_with("Service/spec/selector: must stay")), "{found:#?}");
        let yaml = edit(
            "    kind: Deployment\n    name: ep-fraud-dm-42\n",
            "    kind: Deployment\n    name: platform\n",
        );
        assert_rejected(
            &yaml,
            "HorizontalPodAutoscaler/spec/scaleTargetRef: must stay the Deployment `ep-fraud-dm-42`",
        );
        let yaml = edit("  type: ClusterIP\n", "  type: LoadBalancer\n");
        assert_rejected(
            &yaml,
            "Service/spec/type: LoadBalancer is not allowed: models are reached through the gateway (ClusterIP only)",
        );
    }

    #[test]
    fn service_accounts_are_not_borrowed() {
        let yaml = edit(
            "      automountServiceAccountToken: false\n",
            "      automountServiceAccountToken: true\n      serviceAccountName: platform\n",
        );
        let found = problems(&yaml);
        assert!(found.contains(&"Deployment/spec/template/spec/automountServiceAccountToken: not allowed: models get no Kubernetes API token".to_string()), "{found:#?}");
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("Deployment/spec/template/spec/serviceAccountName: not allowed"))
        );
    }

    #[test]
    fn unknown_fields_and_bad_yaml_are_reported() {
        assert_rejected(
            &edit("  replicas: 2\n", "  replicas: 2\n  replicaz: 3\n"),
            "Deployment/spec/replicaz: unknown field",
        );
        let found = problems("apiVersion: apps/v1\nkind: Deployment\nmetadata: [\n");
        assert!(found[0].starts_with("document 1: not valid YAML"), "{found:#?}");
        let found = problems(&edit("  replicas: 2\n", "  replicas: many\n"));
        assert!(found[0].starts_with("Deployment: "), "{found:#?}");
        let r = rendered();
        let only_service = crate::manifests::to_yaml(&[&r.service]).unwrap();
        assert_eq!(
            problems(&only_service),
            vec!["Deployment: missing: a deployed model's manifests keep their Deployment and Service"]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let yaml = edit(
            "      enableServiceLinks: false\n",
            "      enableServiceLinks: false\n      hostNetwork: true\n      volumes:\n      - name: h\n        hostPath:\n          path: /etc\n",
        )
        .replace("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: false\n          privileged: true");
        assert_eq!(problems(&yaml).len(), 3, "{:#?}", problems(&yaml));
    }

    #[test]
    fn endpoint_edits_keep_the_gateway_and_the_access() {
        let input = EndpointInput {
            project: "p".into(),
            location: "l".into(),
            endpoint_id: "fraud".into(),
            access: Access::Public,
        };
        let cfg = RenderConfig::default();
        let public = render_endpoint(&input, &cfg);
        let yaml = public.to_yaml().unwrap();
        assert_eq!(validate_endpoint(&yaml, &public).unwrap(), public);
        let edited = yaml.replace("name: platform-gateway", "name: kubernetes");
        let found = validate_endpoint(&edited, &public).unwrap_err().to_string();
        assert_eq!(
            found,
            "Ingress/spec/rules/0/http/paths/0/backend: must stay the gateway Service `platform-gateway`"
        );
        let private = render_endpoint(&EndpointInput { access: Access::Private, ..input }, &cfg);
        let both = format!("{}{}", private.to_yaml().unwrap(), yaml);
        let found = validate_endpoint(&both, &private).unwrap_err().to_string();
        assert!(found.starts_with("Ingress/kind: not part of these manifests"), "{found}");
        let widened =
            private.to_yaml().unwrap().replace("      platform.dev/endpoint: fraud\n", "      {}\n");
        assert!(
            validate_endpoint(&widened, &private).is_err(),
            "an empty pod selector would select every pod"
        );
    }

    #[test]
    fn diff_shows_the_changed_lines() {
        let before = rendered().to_yaml().unwrap();
        let after = before.replacen("replicas: 2\n", "replicas: 3\n", 1);
        let d = diff(&before, &after);
        assert!(d.starts_with("--- current\n+++ edited\n@@"), "{d}");
        assert!(d.contains("\n-  replicas: 2\n+  replicas: 3\n"), "{d}");
        assert_eq!(diff(&before, &before), "");
    }
}
