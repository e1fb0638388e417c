//! `openapi/openapi.yaml` is generated from the code; this fails when it is stale.
//! Regenerate with `PLATFORM_BLESS=1 cargo test -p control-plane --test openapi`.

mod common;

#[test]
fn the_committed_openapi_document_is_current() {
    let path = common::root().join("openapi/openapi.yaml");
    let generated = control_plane::rest::openapi::to_yaml();
    if std::env::var_os("PLATFORM_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write openapi.yaml");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run `PLATFORM_BLESS=1 cargo test -p control-plane --test openapi` and commit it",
        path.display()
    );
    for route in ["/v1/projects/{project}/locations/{location}/models:upload", "/v1/auth/token"] {
        assert!(generated.contains(route), "{route} is documented");
    }
}
