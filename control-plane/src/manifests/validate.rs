//! Validation of edited manifests. Users may change what runs (image, env, resources, probes,
//! replicas, ...), but an edit must stay inside what the platform renders for that deployed
//! model or endpoint ([`super::ownership`]) and inside the security policy
//! ([`super::policy`]). Pure: text in, typed objects or every problem with its path out.

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::deployed_model::Rendered;
use super::exposure::RenderedEndpoint;
use super::parse::{Object, Problem, Problems, parse};
use super::{ownership, policy};

const DEPLOYED_MODEL_KINDS: [&str; 4] =
    [Deployment::KIND, Service::KIND, HorizontalPodAutoscaler::KIND, PodDisruptionBudget::KIND];
const ENDPOINT_KINDS: [&str; 2] = [Ingress::KIND, NetworkPolicy::KIND];

impl Rendered {
    /// The objects, in the order of [`Rendered::to_yaml`].
    pub fn objects(&self) -> Vec<Object> {
        let mut objects = vec![Object::from(self.deployment.clone()), Object::from(self.service.clone())];
        objects.extend(self.hpa.clone().map(Object::from));
        objects.extend(self.pdb.clone().map(Object::from));
        objects
    }
}

impl RenderedEndpoint {
    /// The objects, in the order of [`RenderedEndpoint::to_yaml`].
    pub fn objects(&self) -> Vec<Object> {
        let mut objects = Vec::new();
        objects.extend(self.ingress.clone().map(Object::from));
        objects.extend(self.network_policy.clone().map(Object::from));
        objects
    }
}

/// Validates an edited manifest of a deployed model against what the platform rendered for it.
/// The Deployment and Service are required; the HPA and PDB may be added or removed.
pub fn validate_deployed_model(edited: &str, rendered: &Rendered) -> Result<Rendered, Problems> {
    let objects = parse(edited)?;
    let mut problems = Vec::new();
    let reference = rendered.objects();
    let objects = ownership::check_set(objects, &reference, &DEPLOYED_MODEL_KINDS, &mut problems);
    let mut deployment = None;
    let mut service = None;
    let mut hpa = None;
    let mut pdb = None;
    for object in objects {
        ownership::check_deployed_model_object(&object, rendered, &mut problems);
        policy::check_deployed_model_object(&object, rendered, &mut problems);
        match object {
            Object::Deployment(o) => deployment = Some(*o),
            Object::Service(o) => service = Some(*o),
            Object::HorizontalPodAutoscaler(o) => hpa = Some(*o),
            Object::PodDisruptionBudget(o) => pdb = Some(*o),
            Object::Ingress(_) | Object::NetworkPolicy(_) => {}
        }
    }
    for (kind, missing) in [(Deployment::KIND, deployment.is_none()), (Service::KIND, service.is_none())] {
        if missing {
            problems.push(Problem::new(
                kind,
                "missing: a deployed model's manifests keep their Deployment and Service",
            ));
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
    let objects = ownership::check_set(objects, &reference, &allowed, &mut problems);
    let mut out = RenderedEndpoint { ingress: None, network_policy: None };
    for object in objects {
        ownership::check_endpoint_object(&object, rendered, &mut problems);
        match object {
            Object::Ingress(o) => out.ingress = Some(*o),
            Object::NetworkPolicy(o) => out.network_policy = Some(*o),
            _ => {}
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(Problems(problems)) }
}

#[cfg(test)]
mod tests {
    use api::{Access, AutoscalingMetricSpec, METRIC_CPU};

    use super::*;
    use crate::machine::Catalog;
    use crate::manifests::policy;
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
            spot: false,
            service_account: None,
            disable_container_logging: false,
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
    fn host_processes_cannot_be_switched_on_by_an_edit() {
        let edited = edit(
            "  template:\n    metadata:\n",
            "  template:\n    metadata:\n      annotations:\n        platform.dev/host-process: 'true'\n",
        );
        assert_rejected(
            &edited,
            "Deployment/spec/template/metadata/annotations/platform.dev/host-process: must stay unset \
             (an admin decides on the model whether it runs as a host process)",
        );
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
            "      terminationGracePeriodSeconds: 70\n",
            "      terminationGracePeriodSeconds: 70\n      volumes:\n      - name: root\n        hostPath:\n          path: /\n",
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
    fn the_contract_and_loader_environment_stay_the_platforms() {
        // A new AIP_ variable, a changed one and a loader variable.
        let yaml = edit(
            "        - name: AIP_STORAGE_URI\n          value: ''\n",
            "        - name: AIP_STORAGE_URI\n          value: file:///var/lib/platform/jwt.key\n        - name: LD_PRELOAD\n          value: /tmp/x.so\n        - name: AIP_EXTRA\n          value: x\n        - name: GREETING\n          value: hello\n",
        );
        let found = problems(&yaml);
        let at = "Deployment/spec/template/spec/containers/0/env";
        assert_eq!(
            found,
            vec![
                format!(
                    "{at}/12: AIP_STORAGE_URI is the platform's: the AIP_* variables of the serving contract are set by the platform; it cannot be set or changed in the manifests"
                ),
                format!(
                    "{at}/13: LD_PRELOAD changes how programs are loaded and may not be set; it cannot be set in the manifests"
                ),
                format!(
                    "{at}/14: AIP_EXTRA is the platform's: the AIP_* variables of the serving contract are set by the platform; it cannot be set or changed in the manifests"
                ),
            ]
        );
        // Removing a contract variable breaks the contract.
        let yaml = edit("        - name: AIP_MODE\n          value: PREDICTION\n", "");
        assert_rejected(&yaml, &format!("{at}: must keep AIP_MODE (the platform sets it)"));
        // envFrom could set anything.
        let yaml = edit(
            "        image: ",
            "        envFrom:\n        - configMapRef:\n            name: preload\n        image: ",
        );
        let found = problems(&yaml);
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("Deployment/spec/template/spec/containers/0/envFrom/0: not allowed")),
            "{found:#?}"
        );
        assert_eq!(policy::env_name_problem("GREETING"), None);
        assert!(policy::env_name_problem("DYLD_INSERT_LIBRARIES").is_some());
        assert!(policy::env_name_problem("GLIBC_TUNABLES").is_some());
        assert!(policy::env_name_problem("PLATFORM_ARTIFACT_ALLOW_PRIVATE_NETWORKS").is_some());
    }

    #[test]
    fn the_restricted_pod_security_standard_is_kept() {
        let at = "Deployment/spec/template/spec";
        assert_rejected(
            &edit("          allowPrivilegeEscalation: false\n", ""),
            &format!(
                "{at}/containers/0/securityContext/allowPrivilegeEscalation: must be false: the restricted Pod Security Standard"
            ),
        );
        assert_rejected(
            &edit("            - ALL\n", "            - NET_RAW\n"),
            &format!(
                "{at}/containers/0/securityContext/capabilities/drop: must include ALL: the restricted Pod Security Standard"
            ),
        );
        assert_rejected(
            &edit("          runAsNonRoot: true\n", "          runAsNonRoot: true\n          runAsUser: 0\n"),
            &format!(
                "{at}/containers/0/securityContext/runAsUser: must not be 0 (root): the restricted Pod Security Standard"
            ),
        );
        let unconfined = edit(
            "        seccompProfile:\n          type: RuntimeDefault\n      terminationGracePeriodSeconds",
            "        seccompProfile:\n          type: Unconfined\n      terminationGracePeriodSeconds",
        );
        assert_rejected(
            &unconfined,
            &format!(
                "{at}/securityContext/seccompProfile/type: Unconfined is not allowed: the restricted Pod Security Standard"
            ),
        );
        let volume = edit(
            "      terminationGracePeriodSeconds: 70\n",
            "      terminationGracePeriodSeconds: 70\n      volumes:\n      - name: n\n        nfs:\n          server: x\n          path: /\n",
        );
        assert_rejected(&volume, &format!("{at}/volumes/0/nfs: not allowed"));
    }
}
