//! What ties an edited object to what the platform rendered for its owner (a deployed model or
//! an endpoint): its kind, name, namespace and ownership labels, and what it acts on (selectors,
//! the autoscaler's target, the Ingress's backend). An edit cannot reach other pods or Services.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::deployed_model::Rendered;
use super::exposure::RenderedEndpoint;
use super::parse::{Object, Problem, kind_list};

/// Kinds, duplicates, names and namespaces: what makes an object belong to the owner of
/// `reference`. Keeps the objects of `allowed` kinds, each with its rendered namespace.
pub fn check_set(
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
            problems.push(Problem::new(
                format!("{kind}/kind"),
                format!("not part of these manifests (allowed: {})", kind_list(allowed)),
            ));
            continue;
        }
        if seen.contains(&kind) {
            problems.push(Problem::new(kind, format!("more than one {kind}")));
            continue;
        }
        seen.push(kind);
        let meta = object.metadata();
        if meta.name != owner.name {
            problems.push(Problem::new(
                format!("{kind}/metadata/name"),
                format!("must stay `{}`", owner.name.as_deref().unwrap_or_default()),
            ));
        }
        let namespace =
            reference.iter().find(|r| r.kind() == kind).map_or(owner, Object::metadata).namespace.clone();
        if meta.namespace.is_some() && meta.namespace != namespace {
            problems.push(Problem::new(
                format!("{kind}/metadata/namespace"),
                format!("must stay `{}`", namespace.as_deref().unwrap_or_default()),
            ));
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
            problems.push(Problem::new(format!("{path}/{key}"), message));
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
        problems.push(Problem::new(
            path,
            format!("must stay {} (selecting other pods is not allowed)", show_labels(expected)),
        ));
    }
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("`{}`", pairs.join(","))
}

/// What an object of a deployed model acts on: its own pods and Deployment only.
pub fn check_deployed_model_object(object: &Object, rendered: &Rendered, problems: &mut Vec<Problem>) {
    let selector =
        rendered.deployment.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    match object {
        Object::Deployment(d) => {
            let Some(spec) = &d.spec else {
                problems.push(Problem::new("Deployment/spec", "missing"));
                return;
            };
            check_selector(Some(&spec.selector), &selector, "Deployment/spec/selector", problems);
            let template_labels = spec.template.metadata.as_ref().and_then(|m| m.labels.as_ref());
            check_labels(template_labels, &selector, "Deployment/spec/template/metadata/labels", problems);
            check_run_mode(d, &rendered.deployment, problems);
        }
        Object::Service(s) => {
            if s.spec.as_ref().and_then(|s| s.selector.as_ref()) != Some(&selector) {
                problems.push(Problem::new(
                    "Service/spec/selector",
                    format!("must stay {} (selecting other pods is not allowed)", show_labels(&selector)),
                ));
            }
        }
        Object::HorizontalPodAutoscaler(h) => {
            let target = h.spec.as_ref().map(|s| &s.scale_target_ref);
            let name = rendered.deployment.metadata.name.as_deref().unwrap_or_default();
            if !target.is_some_and(|t| t.kind == "Deployment" && t.name == name) {
                problems.push(Problem::new(
                    "HorizontalPodAutoscaler/spec/scaleTargetRef",
                    format!("must stay the Deployment `{name}`"),
                ));
            }
        }
        Object::PodDisruptionBudget(p) => {
            let actual = p.spec.as_ref().and_then(|s| s.selector.as_ref());
            check_selector(actual, &selector, "PodDisruptionBudget/spec/selector", problems);
        }
        Object::Ingress(_) | Object::NetworkPolicy(_) => {}
    }
}

/// Whether replicas run as host processes is an admin's choice made on the model
/// (`containerSpec.hostProcess`), never an edit: the pod template's `.../host-process`
/// annotation stays what was rendered.
fn check_run_mode(edited: &Deployment, rendered: &Deployment, problems: &mut Vec<Problem>) {
    let marks = |d: &Deployment| -> BTreeMap<String, String> {
        let annotations = d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()?.annotations.as_ref());
        annotations
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.rsplit('/').next() == Some(super::HOST_PROCESS_ANNOTATION))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (edited, rendered) = (marks(edited), marks(rendered));
    if let Some(key) = edited.keys().chain(rendered.keys()).find(|k| edited.get(*k) != rendered.get(*k)) {
        problems.push(Problem::new(
            format!("Deployment/spec/template/metadata/annotations/{key}"),
            format!(
                "must stay {} (an admin decides on the model whether it runs as a host process)",
                rendered.get(key).map_or("unset".to_string(), |v| format!("`{v}`"))
            ),
        ));
    }
}

/// What an object of an endpoint acts on: the gateway (Ingress) and the endpoint's own pods
/// (NetworkPolicy).
pub fn check_endpoint_object(object: &Object, rendered: &RenderedEndpoint, problems: &mut Vec<Problem>) {
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
                problems.push(Problem::new("Ingress/spec/defaultBackend", "not allowed"));
            }
            for (r, rule) in spec.rules.iter().flatten().enumerate() {
                for (p, path) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
                    let service = path.backend.service.as_ref().map(|s| s.name.clone());
                    if service.is_none() || service != backend {
                        problems.push(Problem::new(
                            format!("Ingress/spec/rules/{r}/http/paths/{p}/backend"),
                            format!(
                                "must stay the gateway Service `{}`",
                                backend.as_deref().unwrap_or_default()
                            ),
                        ));
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
