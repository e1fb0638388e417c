//! How an installation renders: namespace, images, labels, where GPU and spot pods may run, the
//! Secret model pods read their artifacts with, and how endpoints are exposed. One value per
//! platform process, from `platform serve`'s flags (which the install's Deployments set).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;

use crate::machine::MachineType;
use runtime::fetch_policy::FetchPolicy;

use super::naming::image_repository;

/// The resource name Kubernetes' NVIDIA device plugin exposes.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// Name of the gateway's Deployment and Service in an installation.
pub const GATEWAY_NAME: &str = "platform-gateway";
/// The node label and taint GKE puts on spot nodes (the default spot placement).
pub const GKE_SPOT_LABEL: &str = "cloud.google.com/gke-spot";

/// How this installation renders.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderConfig {
    /// Namespace of the rendered objects.
    pub namespace: String,
    /// The prebuilt ONNX runtime image, e.g. `platform-runtime:0.1.0`. A model whose container
    /// image is empty or the bare runtime repository (`platform-runtime`) runs this image.
    pub runtime_image: String,
    /// Prefix of the platform's own labels and annotations (`platform.dev/endpoint`, ...).
    pub label_prefix: String,
    /// `app.kubernetes.io/managed-by`.
    pub managed_by: String,
    /// `imagePullPolicy` of the serving container.
    pub image_pull_policy: String,
    /// Where pods that ask for GPUs may run.
    pub gpu: Placement,
    /// Where pods of deployed models with `dedicatedResources.spot` run. Empty (no node
    /// selector, no toleration): this installation has no spot nodes and refuses `spot`.
    pub spot: Placement,
    /// A Secret whose keys become the serving container's environment (for example
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` to read `AIP_STORAGE_URI`). Referenced as
    /// optional, so a cluster without it still starts models whose artifacts are public.
    pub artifact_credentials_secret: Option<String>,
    /// The platform's own service account: a deployed model's `serviceAccount` may not borrow it.
    pub platform_service_account: Option<String>,
    /// How long a replica may drain in-flight requests after SIGTERM (the predict timeout).
    pub termination_grace_period_seconds: i64,
    /// How long a stopping pod sleeps in its `preStop` hook before the server gets SIGTERM, so
    /// that it leaves the Service's endpoints (and every proxy's view of them) first. The
    /// rendered `terminationGracePeriodSeconds` is this plus the drain above. 0: no hook (the
    /// native `sleep` action needs Kubernetes 1.30 or later).
    pub pre_stop_sleep_seconds: i64,
    /// How endpoints are exposed (Ingress) and who may reach private ones (NetworkPolicy).
    pub ingress: IngressConfig,
    /// Where the prebuilt runtime may fetch models from; a relaxed policy reaches the runtime
    /// as its `PLATFORM_ARTIFACT_ALLOW_*` environment.
    pub artifact_fetch: FetchPolicy,
}

/// Where a kind of pod may run: clusters label and taint their GPU and spot nodes differently.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placement {
    /// Node labels the pod requires. For GPU pods, `{accelerator}` in a value is replaced by the
    /// accelerator type in label form (`NVIDIA_TESLA_T4` -> `nvidia-tesla-t4`), as GKE's
    /// `cloud.google.com/gke-accelerator` expects.
    pub node_selector: BTreeMap<String, String>,
    /// Taints of those nodes that the pod tolerates.
    pub tolerations: Vec<Toleration>,
}

impl Placement {
    /// No node selector and no toleration.
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.tolerations.is_empty()
    }

    /// The default GPU placement: tolerate the taint the NVIDIA GPU operator and most managed
    /// clusters put on GPU nodes.
    pub fn nvidia_gpus() -> Placement {
        Placement {
            node_selector: BTreeMap::new(),
            tolerations: vec![Toleration {
                key: Some(GPU_RESOURCE.into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
        }
    }

    /// A placement from flag values: node labels as `key=value` and tolerations in the taint
    /// syntax of `kubectl taint` (`key[=value][:Effect]`; without a value the toleration matches
    /// any value). `none` (or nothing) for no labels or no tolerations.
    pub fn from_flags(node_selector: &[String], tolerations: &[String]) -> Result<Placement, PlacementError> {
        let items = |list: &[String]| -> Vec<String> {
            list.iter()
                .flat_map(|s| s.split(','))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s != "none")
                .collect()
        };
        let mut placement = Placement::default();
        for label in items(node_selector) {
            match label.split_once('=') {
                Some((key, value)) if !key.is_empty() => {
                    placement.node_selector.insert(key.to_string(), value.to_string());
                }
                _ => return Err(PlacementError(format!("node selector `{label}` is not `key=value`"))),
            }
        }
        for taint in items(tolerations) {
            placement.tolerations.push(parse_toleration(&taint)?);
        }
        Ok(placement)
    }

    /// The node selector as a flag value (what [`Placement::from_flags`] reads back).
    pub fn node_selector_flag(&self) -> String {
        if self.node_selector.is_empty() {
            return "none".into();
        }
        self.node_selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }

    /// The tolerations as a flag value (what [`Placement::from_flags`] reads back).
    pub fn tolerations_flag(&self) -> String {
        if self.tolerations.is_empty() {
            return "none".into();
        }
        let one = |t: &Toleration| {
            let mut s = t.key.clone().unwrap_or_default();
            if let Some(value) = t.value.as_deref().filter(|v| !v.is_empty()) {
                s.push('=');
                s.push_str(value);
            }
            if let Some(effect) = &t.effect {
                s.push(':');
                s.push_str(effect);
            }
            s
        };
        self.tolerations.iter().map(one).collect::<Vec<_>>().join(",")
    }

    /// The default spot placement: GKE's spot nodes (label and taint `cloud.google.com/gke-spot`).
    pub fn gke_spot() -> Placement {
        Placement {
            node_selector: BTreeMap::from([(GKE_SPOT_LABEL.to_string(), "true".to_string())]),
            tolerations: vec![Toleration {
                key: Some(GKE_SPOT_LABEL.into()),
                operator: Some("Equal".into()),
                value: Some("true".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
        }
    }
}

/// How endpoints are reached from outside the cluster: through the gateway, behind an Ingress.
#[derive(Debug, Clone, PartialEq)]
pub struct IngressConfig {
    /// Host of an endpoint; `{endpoint}`, `{project}` and `{location}` are replaced by DNS-safe
    /// forms of the endpoint's id, project and location.
    pub host_pattern: String,
    /// `spec.ingressClassName`; the cluster's default class when unset.
    pub class_name: Option<String>,
    /// The annotation that asks cert-manager for the TLS certificate, e.g.
    /// `cert-manager.io/cluster-issuer: letsencrypt`. None when certificates are provided otherwise.
    pub cert_manager_annotation: Option<(String, String)>,
    /// Namespace of the gateway (Ingresses must live beside the Service they route to); the
    /// models' namespace when unset.
    pub gateway_namespace: Option<String>,
    /// The gateway's Service and port.
    pub gateway_service: String,
    pub gateway_port: i32,
    /// Labels of the gateway's pods: the only callers a private endpoint's pods accept.
    pub gateway_pod_labels: BTreeMap<String, String>,
}

/// The annotation key cert-manager reads a ClusterIssuer's name from.
pub const CLUSTER_ISSUER_ANNOTATION: &str = "cert-manager.io/cluster-issuer";

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            host_pattern: "{endpoint}.endpoints.example.com".into(),
            class_name: None,
            cert_manager_annotation: Some((CLUSTER_ISSUER_ANNOTATION.into(), "letsencrypt".into())),
            gateway_namespace: None,
            gateway_service: GATEWAY_NAME.into(),
            gateway_port: 80,
            gateway_pod_labels: BTreeMap::from([
                ("app.kubernetes.io/name".into(), "platform".into()),
                ("app.kubernetes.io/component".into(), "gateway".into()),
            ]),
        }
    }
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            namespace: "default".into(),
            runtime_image: format!("platform-runtime:{}", env!("CARGO_PKG_VERSION")),
            label_prefix: "platform.dev".into(),
            managed_by: "platform".into(),
            image_pull_policy: "IfNotPresent".into(),
            gpu: Placement::nvidia_gpus(),
            spot: Placement::gke_spot(),
            artifact_credentials_secret: None,
            platform_service_account: None,
            termination_grace_period_seconds: 60,
            pre_stop_sleep_seconds: 10,
            ingress: IngressConfig::default(),
            artifact_fetch: FetchPolicy::default(),
        }
    }
}

impl RenderConfig {
    /// The runtime image's repository (`platform-runtime` of `ghcr.io/x/platform-runtime:0.1`).
    pub fn runtime_repository(&self) -> &str {
        image_repository(&self.runtime_image)
    }

    /// Whether a model's `imageUri` means the prebuilt runtime: empty, or the runtime's bare
    /// repository name without a tag.
    pub fn is_runtime_image(&self, image_uri: &str) -> bool {
        let image = image_uri.trim();
        image.is_empty() || image == self.runtime_repository() || image == self.runtime_image
    }

    /// The platform label `{prefix}/{key}`.
    pub fn label(&self, key: &str) -> String {
        format!("{}/{key}", self.label_prefix)
    }

    /// Whether a deployed model's placement can be rendered here, or why not: accelerators
    /// other than NVIDIA GPUs have no device resource, `spot` needs spot nodes configured, and
    /// a `serviceAccount` must be a valid name other than the platform's own.
    pub fn check_placement(
        &self,
        machine: &MachineType,
        spot: bool,
        service_account: Option<&str>,
    ) -> Result<(), PlacementError> {
        let refuse = |message: String| Err(PlacementError(message));
        if let Some(acc) = &machine.accelerator
            && !is_nvidia(&acc.accelerator_type)
        {
            return refuse(format!(
                "accelerator {} cannot be scheduled: only NVIDIA GPUs (the `{GPU_RESOURCE}` device resource) are supported",
                acc.accelerator_type
            ));
        }
        if spot && self.spot.is_empty() {
            return refuse(
                "dedicatedResources.spot: this installation has no spot nodes configured \
                 (platform serve --spot-node-selector / --spot-tolerations)"
                    .into(),
            );
        }
        if let Some(account) = service_account {
            if !is_dns_subdomain(account) {
                return refuse(format!(
                    "serviceAccount `{account}` is not a Kubernetes service account name (lowercase letters, digits, `-` and `.`, at most 253 characters)"
                ));
            }
            if self.platform_service_account.as_deref() == Some(account) {
                return refuse(format!(
                    "serviceAccount `{account}` is the platform's own service account; models run as another one"
                ));
            }
        }
        Ok(())
    }
}

/// Taint effects a toleration may name.
const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// `key[=value][:Effect]` as a toleration: `Equal` with a value, `Exists` without.
fn parse_toleration(text: &str) -> Result<Toleration, PlacementError> {
    let (rest, effect) = match text.rsplit_once(':') {
        Some((rest, effect)) if EFFECTS.contains(&effect) => (rest, Some(effect.to_string())),
        Some((_, effect)) => {
            return Err(PlacementError(format!(
                "toleration `{text}`: effect `{effect}` is not one of {}",
                EFFECTS.join(", ")
            )));
        }
        None => (text, None),
    };
    let (key, value) = match rest.split_once('=') {
        Some((key, value)) => (key, Some(value.to_string())),
        None => (rest, None),
    };
    if key.is_empty() {
        return Err(PlacementError(format!("toleration `{text}` has no key (write key[=value][:Effect])")));
    }
    Ok(Toleration {
        key: Some(key.to_string()),
        operator: Some(if value.is_some() { "Equal" } else { "Exists" }.into()),
        value,
        effect,
        ..Default::default()
    })
}

/// Why a deployed model cannot be placed on this installation's nodes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlacementError(pub String);

impl api::Coded for PlacementError {
    fn code(&self) -> api::Code {
        api::Code::InvalidArgument
    }
}

/// Whether an accelerator type is an NVIDIA GPU (`NVIDIA_L4`, `NVIDIA_TESLA_T4`, ...).
pub fn is_nvidia(accelerator_type: &str) -> bool {
    accelerator_type.starts_with("NVIDIA")
}

/// A DNS-1123 subdomain: what Kubernetes accepts as a service account name.
fn is_dns_subdomain(s: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !s.is_empty() && s.len() <= 253 && s.split('.').all(label_ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Catalog;

    #[test]
    fn placement_refusals_say_why() {
        let catalog = Catalog::builtin();
        let cpu = catalog.get("e2-small").unwrap().clone();
        let cfg =
            RenderConfig { platform_service_account: Some("platform".into()), ..RenderConfig::default() };
        assert_eq!(cfg.check_placement(&cpu, true, Some("model-reader")), Ok(()));
        let mut tpu = cpu.clone();
        tpu.accelerator =
            Some(crate::machine::Accelerator { accelerator_type: "TPU_V5_LITEPOD".into(), count: 1 });
        assert!(cfg.check_placement(&tpu, false, None).unwrap_err().0.contains("only NVIDIA GPUs"));
        let no_spot = RenderConfig { spot: Placement::default(), ..cfg.clone() };
        assert!(no_spot.check_placement(&cpu, true, None).unwrap_err().0.contains("no spot nodes"));
        assert_eq!(no_spot.check_placement(&cpu, false, None), Ok(()));
        assert!(cfg.check_placement(&cpu, false, Some("platform")).unwrap_err().0.contains("platform's own"));
        assert!(
            cfg.check_placement(&cpu, false, Some("Bad_Name")).unwrap_err().0.contains("not a Kubernetes")
        );
    }

    #[test]
    fn placements_round_trip_through_flags() {
        for placement in [Placement::nvidia_gpus(), Placement::gke_spot(), Placement::default()] {
            let flags =
                Placement::from_flags(&[placement.node_selector_flag()], &[placement.tolerations_flag()]);
            assert_eq!(flags, Ok(placement));
        }
        let p = Placement::from_flags(
            &["pool=gpu,cloud.google.com/gke-accelerator={accelerator}".into()],
            &["dedicated=ml:NoExecute".into(), "nvidia.com/gpu".into()],
        )
        .unwrap();
        assert_eq!(p.node_selector["cloud.google.com/gke-accelerator"], "{accelerator}");
        assert_eq!(p.tolerations[0].operator.as_deref(), Some("Equal"));
        assert_eq!(p.tolerations[1].operator.as_deref(), Some("Exists"));
        assert!(p.tolerations[1].effect.is_none(), "no effect: every effect");
        assert!(Placement::from_flags(&["pool".into()], &[]).unwrap_err().0.contains("key=value"));
        assert!(Placement::from_flags(&[], &["a:Sometimes".into()]).unwrap_err().0.contains("NoSchedule"));
        assert!(Placement::from_flags(&[], &["=x:NoSchedule".into()]).unwrap_err().0.contains("no key"));
    }
}
