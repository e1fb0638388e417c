//! `platform check`: what a cluster still lacks before the installed platform can deploy
//! models. Each finding says what was looked at and, when it is missing, how to fix it. Reads
//! only (and asks the API server's authorizer about the platform's service account).

use std::fmt;

use axum::http::Request;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::Value;

use crate::backend::BackendError;
use crate::manifests::install::{self, Values};

/// One thing `platform check` looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What was looked at, e.g. `cert-manager ClusterIssuer letsencrypt`.
    pub what: String,
    pub ok: bool,
    /// What was found; for a missing thing, how to fix it.
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { "ok     " } else { "MISSING" };
        write!(f, "{mark} {}: {}", self.what, self.detail)
    }
}

fn found(what: impl Into<String>, ok: bool, detail: impl Into<String>) -> Finding {
    Finding { what: what.into(), ok, detail: detail.into() }
}

/// Checks the cluster of the current kubeconfig context (or the pod's service account).
pub async fn run(values: &Values) -> Result<Vec<Finding>, BackendError> {
    let client = Client::try_default()
        .await
        .map_err(|e| BackendError::Other(format!("cannot connect to the Kubernetes API: {e}")))?;
    check(&client, values).await
}

/// Every finding, in the order an operator fixes them.
pub async fn check(client: &Client, values: &Values) -> Result<Vec<Finding>, BackendError> {
    let version = get(client, "/version").await?.ok_or_else(|| {
        BackendError::Other("the API server has no /version: is this a Kubernetes API server?".into())
    })?;
    let mut findings = vec![found(
        "Kubernetes API server",
        true,
        format!("version {}", version["gitVersion"].as_str().unwrap_or("unknown")),
    )];
    let ns = &values.namespace;
    let namespace = get(client, &format!("/api/v1/namespaces/{ns}")).await?;
    findings.push(match namespace {
        Some(_) => found(format!("namespace {ns}"), true, "exists"),
        None => found(
            format!("namespace {ns}"),
            false,
            "does not exist: install the platform (platform install-manifests | kubectl apply -f -)",
        ),
    });
    findings.extend(secrets(client, values).await?);
    findings.push(rbac(client, values).await?);
    if let Some(issuer) = &values.cluster_issuer {
        findings.push(cert_manager(client, issuer).await?);
    }
    findings.push(ingress_class(client, values.ingress_class_name.as_deref()).await?);
    findings.push(metrics_api(client).await?);
    Ok(findings)
}

/// The Secrets the install references, each with the key it reads.
async fn secrets(client: &Client, values: &Values) -> Result<Vec<Finding>, BackendError> {
    let ns = &values.namespace;
    let wanted = [
        (values.database.secret_name.as_str(), Some(values.database.key.as_str()), "the PostgreSQL URL"),
        (values.jwt_key.secret_name.as_str(), Some(values.jwt_key.key.as_str()), "the token signing key"),
        (values.s3_secret.as_str(), None, "the platform's S3 credentials"),
        (values.model_secret(), None, "the models' S3 credentials (optional: public artifacts need none)"),
    ];
    let mut findings = Vec::new();
    let mut seen = Vec::new();
    for (name, key, purpose) in wanted {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let what = format!("Secret {ns}/{name} ({purpose})");
        let secret = get(client, &format!("/api/v1/namespaces/{ns}/secrets/{name}")).await?;
        let finding = match (secret, key) {
            (None, _) => found(
                what,
                false,
                format!("does not exist: kubectl --namespace {ns} create secret generic {name} ..."),
            ),
            (Some(s), Some(key)) if s["data"].get(key).is_none() => {
                found(what, false, format!("has no key `{key}`"))
            }
            (Some(_), Some(key)) => found(what, true, format!("has `{key}`")),
            (Some(_), None) => found(what, true, "exists"),
        };
        findings.push(finding);
    }
    Ok(findings)
}

/// Whether the platform's service account may do everything the install's Role grants (a
/// missing or edited Role, or a RoleBinding to another account, shows here).
async fn rbac(client: &Client, values: &Values) -> Result<Finding, BackendError> {
    let ns = &values.namespace;
    let user = format!("system:serviceaccount:{ns}:{}", install::SERVICE_ACCOUNT);
    let what = format!("RBAC of {user}");
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let mut denied = Vec::new();
    for rule in install::rules() {
        let group = rule.api_groups.unwrap_or_default().into_iter().next().unwrap_or_default();
        for resource in rule.resources.unwrap_or_default() {
            for verb in &rule.verbs {
                let (resource, subresource) = match resource.split_once('/') {
                    Some((r, s)) => (r.to_string(), Some(s.to_string())),
                    None => (resource.clone(), None),
                };
                let review = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: Some(user.clone()),
                        groups: Some(vec![
                            "system:serviceaccounts".into(),
                            format!("system:serviceaccounts:{ns}"),
                            "system:authenticated".into(),
                        ]),
                        resource_attributes: Some(ResourceAttributes {
                            namespace: Some(ns.clone()),
                            group: Some(group.clone()),
                            resource: Some(resource.clone()),
                            subresource: subresource.clone(),
                            verb: Some(verb.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let answer = match reviews.create(&PostParams::default(), &review).await {
                    Ok(answer) => answer,
                    Err(kube::Error::Api(status)) if status.code == 403 => {
                        return Ok(found(
                            what,
                            false,
                            format!(
                                "cannot be checked: you may not create SubjectAccessReviews ({})",
                                status.message
                            ),
                        ));
                    }
                    Err(e) => return Err(api_error("create SubjectAccessReview", e)),
                };
                if !answer.status.is_some_and(|s| s.allowed) {
                    let full =
                        if group.is_empty() { resource.clone() } else { format!("{resource}.{group}") };
                    let full = match &subresource {
                        Some(s) => format!("{full}/{s}"),
                        None => full,
                    };
                    denied.push(format!("{verb} {full}"));
                }
            }
        }
    }
    Ok(if denied.is_empty() {
        found(what, true, "may do everything the kubernetes backend does")
    } else {
        found(
            what,
            false,
            format!(
                "may not {}: apply the install's Role and RoleBinding (platform install-manifests | kubectl apply -f -)",
                denied.join(", ")
            ),
        )
    })
}

/// cert-manager's API and the ClusterIssuer the Ingresses name, ready.
async fn cert_manager(client: &Client, issuer: &str) -> Result<Finding, BackendError> {
    let what = format!("cert-manager ClusterIssuer {issuer}");
    if get(client, "/apis/cert-manager.io/v1").await?.is_none() {
        return Ok(found(
            what,
            false,
            "cert-manager is not installed (no cert-manager.io/v1 API): install it, or set clusterIssuer: null and provide the TLS Secrets",
        ));
    }
    let Some(object) = get(client, &format!("/apis/cert-manager.io/v1/clusterissuers/{issuer}")).await?
    else {
        return Ok(found(what, false, "does not exist: create it, or name another one in clusterIssuer"));
    };
    Ok(match condition(&object, "Ready") {
        Some(("True", _)) => found(what, true, "ready"),
        Some((_, message)) => found(what, false, format!("not ready: {message}")),
        None => found(what, false, "has no Ready condition yet"),
    })
}

/// The IngressClass the Ingresses name, or a default class when they name none.
async fn ingress_class(client: &Client, name: Option<&str>) -> Result<Finding, BackendError> {
    if let Some(name) = name {
        let what = format!("IngressClass {name}");
        return Ok(match get(client, &format!("/apis/networking.k8s.io/v1/ingressclasses/{name}")).await? {
            Some(class) => found(
                what,
                true,
                format!("controller {}", class["spec"]["controller"].as_str().unwrap_or("?")),
            ),
            None => found(
                what,
                false,
                "does not exist: install an ingress controller, or name its class in ingressClassName",
            ),
        });
    }
    let what = "default IngressClass";
    let classes = get(client, "/apis/networking.k8s.io/v1/ingressclasses").await?.unwrap_or_default();
    let default = classes["items"].as_array().into_iter().flatten().find(|c| {
        c["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"].as_str() == Some("true")
    });
    Ok(match default {
        Some(class) => found(what, true, class["metadata"]["name"].as_str().unwrap_or("?").to_string()),
        None => found(
            what,
            false,
            "none: the Ingresses name no class, so mark one as default or set ingressClassName",
        ),
    })
}

/// The resource metrics API the HorizontalPodAutoscalers read CPU from (metrics-server).
async fn metrics_api(client: &Client) -> Result<Finding, BackendError> {
    let what = "metrics API (metrics.k8s.io, for CPU autoscaling)";
    let service = get(client, "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io").await?;
    let Some(service) = service else {
        return Ok(found(
            what,
            false,
            "not registered: install metrics-server, or CPU autoscaling does nothing",
        ));
    };
    Ok(match condition(&service, "Available") {
        Some(("True", _)) => found(what, true, "available"),
        Some((_, message)) => found(what, false, format!("registered but not available: {message}")),
        None => found(what, false, "registered but not available yet"),
    })
}

/// `(status, message)` of the condition `kind` of an object.
fn condition<'a>(object: &'a Value, kind: &str) -> Option<(&'a str, &'a str)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .map(|c| (c["status"].as_str().unwrap_or_default(), c["message"].as_str().unwrap_or_default()))
}

/// GET `path` as JSON; None when the API server says 404.
async fn get(client: &Client, path: &str) -> Result<Option<Value>, BackendError> {
    let request =
        Request::get(path).body(Vec::new()).map_err(|e| BackendError::Other(format!("GET {path}: {e}")))?;
    match client.request::<Value>(request).await {
        Ok(value) => Ok(Some(value)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(api_error(&format!("GET {path}"), e)),
    }
}

fn api_error(action: &str, e: kube::Error) -> BackendError {
    super::api_error(action.to_string(), e)
}
