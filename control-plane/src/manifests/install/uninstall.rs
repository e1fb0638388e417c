//! `platform install-manifests --uninstall`: what to delete, in order, as the `kubectl`
//! commands that do it. The controller stops first (or it would recreate what is deleted), then
//! everything the platform created for deployed models and endpoints goes, found by its
//! `managed-by` label, then the installation in the reverse order of its install, the
//! namespace last.

use super::{Installation, Values};
use crate::manifests::RenderConfig;

/// The kinds of objects the platform creates for deployed models and endpoints.
pub const MANAGED_KINDS: [&str; 6] = [
    "deployments.apps",
    "services",
    "horizontalpodautoscalers.autoscaling",
    "poddisruptionbudgets.policy",
    "ingresses.networking.k8s.io",
    "networkpolicies.networking.k8s.io",
];

/// A shell script of `kubectl` commands that removes the installation.
pub fn script(values: &Values, installation: &Installation) -> String {
    let ns = &values.namespace;
    let managed_by = RenderConfig::default().managed_by;
    let objects = installation.objects();
    let api = objects.iter().find(|o| o.kind == "Deployment" && o.name == super::API_NAME);
    let mut out = String::from(
        "#!/bin/sh\n# Removes the platform from the cluster. Review, then run: sh uninstall.sh\nset -eu\n\n",
    );
    out.push_str("# 1. Stop the controller, so that it does not recreate what the next steps delete.\n");
    if let Some(api) = api {
        out.push_str(&format!(
            "kubectl --namespace {ns} delete {}/{} --ignore-not-found --wait=true\n\n",
            resource(api.kind, api.api_version),
            api.name
        ));
    }
    out.push_str("# 2. What the platform created for deployed models and endpoints (model pods, endpoint Ingresses).\n");
    out.push_str(&format!(
        "kubectl --namespace {ns} delete {} --selector app.kubernetes.io/managed-by={managed_by} --ignore-not-found --wait=true\n\n",
        MANAGED_KINDS.join(",")
    ));
    out.push_str("# 3. The rest of the installation, in the reverse order of its install.\n");
    for object in objects
        .iter()
        .rev()
        .filter(|o| o.namespaced && !(o.kind == "Deployment" && o.name == super::API_NAME))
    {
        out.push_str(&format!(
            "kubectl --namespace {ns} delete {}/{} --ignore-not-found\n",
            resource(object.kind, object.api_version),
            object.name
        ));
    }
    out.push_str(&format!(
        "\n# 4. The namespace, with what is left in it: the Secrets you created for the install (database,\n\
         #    S3, token key) and the certificates cert-manager issued. Keep it by skipping this line.\n\
         kubectl delete namespace {ns} --ignore-not-found --wait=true\n"
    ));
    out
}

/// `kind.group` as `kubectl` names a resource without ambiguity (`deployment.apps`).
fn resource(kind: &str, api_version: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    match api_version.rsplit_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind,
    }
}
