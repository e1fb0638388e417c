//! The restricted Pod Security Standard, as every rendered pod and container wears it.

use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, SeccompProfile, SecurityContext};

fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
}

/// A container that cannot gain privileges: no escalation, every capability dropped, not root,
/// the runtime's seccomp profile; `read_only_root` for images that write nothing outside volumes.
pub fn restricted_container(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        read_only_root_filesystem: read_only_root.then_some(true),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// A pod that runs as non-root with the runtime's seccomp profile; `uid` also fixes the user,
/// group and volume group (images whose user is a name, like distroless' `nonroot`).
pub fn restricted_pod(uid: Option<i64>) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: uid,
        run_as_group: uid,
        fs_group: uid,
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}
