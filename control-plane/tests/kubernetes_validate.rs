//! Every manifest the platform renders is valid for Kubernetes 1.29 and later according to
//! `kubernetes-validate` (the JSON schemas of the Kubernetes API, strict: unknown fields fail).
//! The golden files under `tests/fixtures` are what the unit tests render; this test renders a
//! matrix of its own and the installation manifests of the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use api::{Access, AutoscalingMetricSpec, METRIC_CPU, METRIC_REQUESTS};
use control_plane::machine::Catalog;
use control_plane::manifests::{
    EndpointInput, EnvVar, ModelContainerSpec, Port, RenderConfig, RenderInput, render, render_endpoint,
};

/// The oldest Kubernetes the platform supports and the newest the validator knows.
const VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = std::env::var_os("PLATFORM_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs the Python test tools (kubernetes-validate)",
        path.display()
    );
    path
}

/// Fails the test with the validator's report unless every document of `yaml` is valid.
fn assert_valid(name: &str, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    for version in VERSIONS {
        let out = Command::new(python())
            .args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k", version])
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("running kubernetes-validate: {e}"));
        let report =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            !report.contains("No module named"),
            "kubernetes-validate is not installed in {}: run scripts/test\n{report}",
            python().display()
        );
        assert!(out.status.success(), "{name} is not valid for Kubernetes {version}:\n{report}\n{yaml}");
        let documents = yaml.matches("---\n").count();
        assert!(documents > 0, "{name}: nothing to validate");
    }
}

#[test]
fn the_validator_rejects_what_kubernetes_would() {
    // Guards against a validator that passes everything (a wrong flag, an empty file).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicaz: 1}\n",
    )
    .unwrap();
    let out = Command::new(python())
        .args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k", VERSIONS[0]])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown field must fail validation");
}

#[test]
fn golden_manifests_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = 0;
    let mut all = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            all.push_str(&std::fs::read_to_string(&path).unwrap());
            seen += 1;
        }
    }
    assert!(
        seen >= 5,
        "expected the golden files of rendering, endpoints and installation in {}",
        dir.display()
    );
    assert_valid("golden", &all);
}

#[test]
fn every_machine_type_access_and_metric_renders_valid_manifests() {
    let catalog = Catalog::builtin();
    let mut all = String::new();
    let mut cfg = RenderConfig {
        namespace: "models".into(),
        artifact_credentials_secret: Some("s3".into()),
        ..RenderConfig::default()
    };
    cfg.gpu.node_selector.insert("cloud.google.com/gke-accelerator".into(), "{accelerator}".into());
    cfg.ingress.class_name = Some("nginx".into());
    let mut machines: Vec<_> = catalog.iter().cloned().collect();
    machines.push(catalog.resolve("n1-standard-4", Some("NVIDIA_TESLA_T4"), 2).unwrap());
    for (i, machine) in machines.into_iter().enumerate() {
        let metric = match (i % 2, &machine.accelerator) {
            (0, _) => METRIC_CPU,
            (_, Some(_)) => api::METRIC_GPU,
            _ => METRIC_REQUESTS,
        };
        let input = RenderInput {
            project: "my-project".into(),
            location: "europe-west4".into(),
            endpoint_id: format!("endpoint_{i}"),
            deployed_model_id: format!("{i}"),
            model_id: "model".into(),
            model_version_id: "3".into(),
            display_name: "Model with a display name".into(),
            container: ModelContainerSpec {
                image_uri: if i % 3 == 0 { String::new() } else { "registry.example/server:1".into() },
                env: vec![EnvVar { name: "X".into(), value: "$(AIP_STORAGE_URI)".into() }],
                ports: vec![Port { container_port: 9000 + i as i32 }],
                shared_memory_size_mb: (i % 2 == 0).then_some(256),
                ..Default::default()
            },
            artifact_uri: Some("s3://bucket/model/".into()),
            machine,
            min_replicas: (i % 4) as u32,
            max_replicas: 8,
            autoscaling: vec![AutoscalingMetricSpec { metric_name: metric.into(), target: 0 }],
            spot: i % 2 == 1,
            service_account: (i % 3 == 1).then(|| "model-reader".to_string()),
            disable_container_logging: i % 2 == 0,
        };
        let rendered = render(&input, &cfg);
        // The restricted Pod Security Standard, by the same policy edits are checked with.
        let pod = rendered.deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let problems = control_plane::manifests::policy::pod_problems(pod, Some(pod));
        assert!(problems.is_empty(), "{problems:#?}");
        all.push_str(&rendered.to_yaml().unwrap());
        let access = [Access::Public, Access::Authenticated, Access::Private][i % 3];
        let endpoint = EndpointInput {
            project: "my-project".into(),
            location: "europe-west4".into(),
            endpoint_id: format!("endpoint_{i}"),
            access,
        };
        all.push_str(&render_endpoint(&endpoint, &cfg).to_yaml().unwrap());
    }
    assert!(all.contains("kind: HorizontalPodAutoscaler") && all.contains("kind: PodDisruptionBudget"));
    assert!(all.contains("kind: Ingress") && all.contains("kind: NetworkPolicy"));
    assert!(all.contains("nvidia.com/gpu") && all.contains("cloud.google.com/gke-spot"));
    assert!(all.contains("serviceAccountName: model-reader"));
    assert_valid("matrix", &all);
}

#[test]
fn install_manifests_are_valid() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_platform"))
            .arg("install-manifests")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let default = run(&[]);
    for kind in [
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Ingress",
    ] {
        assert!(default.contains(&format!("\nkind: {kind}\n")), "{kind} missing from:\n{default}");
    }
    assert_valid("install-default", &default);

    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "namespace: ml-serving\nimage: registry.local/platform:2\nhost: ml.example.org\ningressClassName: nginx\n\
         clusterIssuer: null\ndatabase: {secretName: pg, key: dsn}\napi: {replicas: 3, cpu: '2', memory: 1Gi}\n\
         networkPolicy: {allowedNamespaces: [ingress-nginx, monitoring]}\nserviceMonitor: true\n\
         gpu: {nodeSelector: {pool: gpu}, tolerations: ['nvidia.com/gpu:NoSchedule']}\n",
    )
    .unwrap();
    let custom = run(&["--values", values.to_str().unwrap()]);
    assert!(custom.contains("namespace: ml-serving") && custom.contains("host: ml.example.org"), "{custom}");
    // The validator has no schema for the Prometheus Operator's ServiceMonitor (a custom
    // resource); everything else is checked.
    assert!(custom.contains("\nkind: ServiceMonitor\n"), "{custom}");
    let known: Vec<&str> =
        custom.split("---\n").filter(|d| !d.is_empty() && !d.contains("\nkind: ServiceMonitor\n")).collect();
    assert_valid("install-values", &format!("---\n{}", known.join("---\n")));

    std::fs::write(&values, "nmespace: typo\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_platform"))
        .args(["install-manifests", "--values", values.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The committed kustomize base (`deploy/kubernetes/base`) is the renderer's output for the
/// default values, and `kubectl kustomize` builds the same objects as `install-manifests`.
#[test]
fn the_kustomize_base_in_deploy_is_the_renderers_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let committed = root.join("deploy/kubernetes/base");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_platform"))
        .args(["install-manifests", "--kustomize"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut rendered: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        let text = std::fs::read_to_string(dir.path().join(&name)).unwrap();
        if update {
            std::fs::create_dir_all(&committed).unwrap();
            std::fs::write(committed.join(&name), &text).unwrap();
        }
        let current = std::fs::read_to_string(committed.join(&name)).unwrap_or_default();
        assert!(
            current == text,
            "deploy/kubernetes/base/{name} is stale: run `UPDATE_GOLDEN=1 cargo test -p control-plane --test kubernetes_validate` (or `platform install-manifests --kustomize deploy/kubernetes/base`)"
        );
        rendered.push(name);
    }
    let mut files: Vec<String> = std::fs::read_dir(&committed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    rendered.sort();
    assert_eq!(files, rendered, "deploy/kubernetes/base holds files the renderer does not write");

    let built = Command::new("kubectl")
        .args(["kustomize"])
        .arg(&committed)
        .output()
        .unwrap_or_else(|e| panic!("kubectl is needed (scripts/test installs it): {e}"));
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let install = Command::new(env!("CARGO_BIN_EXE_platform")).arg("install-manifests").output().unwrap();
    let objects = |yaml: &[u8]| {
        let mut objects: Vec<(String, serde_json::Value)> = serde_norway::Deserializer::from_slice(yaml)
            .map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .map(|v| {
                (format!("{}/{}", v["kind"].as_str().unwrap(), v["metadata"]["name"].as_str().unwrap()), v)
            })
            .collect();
        objects.sort_by(|a, b| a.0.cmp(&b.0));
        objects
    };
    let from_kustomize = objects(&built.stdout);
    let from_install = objects(&install.stdout);
    assert_eq!(from_kustomize.len(), from_install.len());
    for ((k, a), (i, b)) in from_kustomize.iter().zip(&from_install) {
        assert_eq!(k, i);
        assert_eq!(a, b, "{k} differs between kubectl kustomize and install-manifests");
    }
    assert_valid("kustomize", &String::from_utf8_lossy(&built.stdout));
}
