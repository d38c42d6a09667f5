//! The OpenAPI spec is exact: schemathesis (an independent tool, from PyPI) fuzzes the spec that
//! `notifyd` serves, with every check on: status codes, response schemas, content types,
//! schema-valid requests accepted, schema-violating ones refused, no 5xx. The few rules that
//! depend on stored state or the clock are listed, with why, in `tests/schemathesis.toml`.

use notify_tests::{Notifyd, python, repo_root};

#[tokio::test]
async fn schemathesis_finds_nothing_with_every_check_on() {
    // Webhook URLs are not resolved here (the fuzzer makes up host names, and this machine has
    // no DNS beyond its own); the refusal of internal addresses is tested in `webhooks.rs`.
    let d = Notifyd::start(&[("NOTIFY_WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    // The inbox routes are fuzzed as a user of their own, with that user's token.
    assert_eq!(
        d.put("/v1/users/fuzz", serde_json::json!({})).await.status,
        200
    );
    let token = d
        .post(
            "/v1/users/fuzz/tokens",
            serde_json::json!({"ttl_seconds": 86400}),
        )
        .await;
    let token = token.body["token"].as_str().unwrap().to_owned();
    let schemathesis = python().with_file_name("schemathesis");
    let output = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(repo_root().join("tests/schemathesis.toml"))
        .arg("run")
        .arg(format!("http://127.0.0.1:{}/openapi.json", d.port))
        .args(["--checks", "all"])
        .env("NOTIFY_TEST_API_KEY", &d.key)
        .env("NOTIFY_TEST_USER_TOKEN", &token)
        // Fixed: the same cases every run, so that the suite stays deterministic.
        .args(["--seed", "20261123", "--generation-deterministic"])
        .args(["--max-examples", "60", "--workers", "1", "--no-color"])
        .current_dir(d.data_dir.path())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", schemathesis.display()));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It really ran: every operation of the spec was tested.
    let spec: serde_json::Value = serde_json::from_str(notify_core::api::OPENAPI_JSON).unwrap();
    let operations: usize = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|ops| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
                .count()
        })
        .sum();
    // Schemathesis leaves out the route that serves the spec it reads, and the configuration
    // leaves out the inbox stream (it never ends; `inbox.rs` tests it).
    let total = operations - 1;
    let tested = total - 1;
    assert!(
        report.contains(&format!("Selected: {tested}/{total}"))
            && report.contains(&format!("Tested: {tested}")),
        "{report}"
    );
}
