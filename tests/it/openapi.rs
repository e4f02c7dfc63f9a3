//! `openapi/openapi.json` is generated from the code; this fails when the two drift.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test --test it openapi`.

#[test]
fn the_committed_openapi_file_matches_the_code() {
    let generated = apsched::api::openapi().to_pretty_json().expect("the spec serialises") + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).expect("openapi/openapi.json is writable");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test --test it openapi` and commit the result"
    );
}
