//! `template.yaml` passes cfn-lint, and says what the issue and the code expect of it.

use notify_tests::{python, repo_root};

#[test]
fn cfn_lint_reports_no_error() {
    let cfn_lint = python().parent().unwrap().join("cfn-lint");
    let out = std::process::Command::new(&cfn_lint)
        .arg(repo_root().join("template.yaml"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run {} (./scripts/test installs it): {e}",
                cfn_lint.display()
            )
        });
    assert!(
        out.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_variable_the_code_reads_is_set_by_the_template() {
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let config = std::fs::read_to_string(repo_root().join("crates/aws/src/config.rs")).unwrap();
    let mut names: Vec<&str> = config
        .split('"')
        .filter(|s| s.starts_with("NOTIFY_") && !s.contains(' '))
        .collect();
    names.push("NOTIFY_API_KEY_SECRET_ARN");
    names.sort();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            template.contains(&format!("{name}:")),
            "template.yaml does not set {name}"
        );
    }
    for needle in [
        "provided.al2023",
        "arm64",
        "BuildMethod: rust-cargolambda",
        "ReportBatchItemFailures",
        "MaximumConcurrency",
        "PAY_PER_REQUEST",
        "AttributeName: ttl",
        "AWS::Scheduler::ScheduleGroup",
        "GenerateSecretString",
    ] {
        assert!(template.contains(needle), "template.yaml lacks {needle}");
    }
}

#[test]
fn dispatch_knows_its_queues_max_receive_count() {
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let queue = template
        .split("\n  DispatchQueue:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n  DispatchDeadLetterQueue:").next())
        .unwrap();
    let count = queue
        .split("maxReceiveCount:")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim();
    let env = template
        .split("NOTIFY_DISPATCH_MAX_RECEIVES:")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim();
    assert_eq!(
        count, env,
        "the dispatch function must mark deliveries failed on the queue's last receive"
    );
}

#[test]
fn alarms_are_optional_and_cover_what_an_operator_watches() {
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    assert!(template.contains("HasAlarms: !Not [!Equals [!Ref AlarmEmail, \"\"]]"));
    let alarms = template.matches("Type: AWS::CloudWatch::Alarm").count();
    let conditional = template
        .split("Type: AWS::CloudWatch::Alarm")
        .skip(1)
        .filter(|rest| rest.trim_start().starts_with("Condition: HasAlarms"))
        .count();
    assert_eq!(
        conditional, alarms,
        "every alarm exists only with AlarmEmail"
    );
    // Five dead-letter queues, errors and throttles of five functions, Scheduler's two, SES's two.
    assert_eq!(alarms, 5 + 10 + 2 + 2);
    for metric in [
        "ApproximateNumberOfMessagesVisible",
        "MetricName: Errors",
        "MetricName: Throttles",
        "InvocationDroppedCount",
        "TargetErrorCount",
        "Reputation.BounceRate",
        "Reputation.ComplaintRate",
    ] {
        assert!(template.contains(metric), "no alarm on {metric}");
    }
}

/// The template as `sam deploy` expands it (AWS's own SAM translator, `tests/support/sam_expand.py`).
fn expanded() -> serde_json::Value {
    let out = std::process::Command::new(python())
        .arg(repo_root().join("tests/support/sam_expand.py"))
        .arg(repo_root().join("template.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_http_api_is_throttled_and_dispatch_sends_only_from_the_sender_address() {
    let expanded = expanded();
    let stage = &expanded["stages"][0];
    assert_eq!(
        stage["DefaultRouteSettings"],
        serde_json::json!({
            "ThrottlingRateLimit": {"Ref": "ApiThrottleRateLimit"},
            "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurstLimit"},
        }),
        "{stage}"
    );
    let dispatch = expanded["roles"]["DispatchFunctionRole"]
        .as_array()
        .unwrap();
    let ses: Vec<&serde_json::Value> = dispatch
        .iter()
        .filter(|s| s["Action"].to_string().contains("ses:Send"))
        .collect();
    assert_eq!(ses.len(), 1, "{dispatch:?}");
    assert_eq!(
        ses[0]["Condition"],
        serde_json::json!({"StringEquals": {"ses:FromAddress": {"Ref": "SenderAddress"}}}),
        "{}",
        ses[0]
    );
    // No other role may send email.
    for (role, statements) in expanded["roles"].as_object().unwrap() {
        if role != "DispatchFunctionRole" {
            assert!(
                !serde_json::Value::Array(statements.as_array().unwrap().clone())
                    .to_string()
                    .contains("ses:Send"),
                "{role} may send email"
            );
        }
    }
}

#[test]
fn the_vapid_private_key_is_in_no_environment_and_only_dispatch_reads_its_secret() {
    let expanded = expanded();
    for (function, variables) in expanded["variables"].as_object().unwrap() {
        let text = variables.to_string();
        assert!(
            !text.contains("VapidPrivateKey"),
            "{function}'s environment holds the VAPID private key: {text}"
        );
    }
    assert!(
        expanded["variables"]["DispatchFunction"]["NOTIFY_VAPID_KEY_SECRET_ARN"]
            .to_string()
            .contains("VapidKeySecret")
    );
    for (role, statements) in expanded["roles"].as_object().unwrap() {
        let reads = statements.to_string().contains("VapidKeySecret");
        assert_eq!(
            reads,
            role == "DispatchFunctionRole",
            "{role}: {statements}"
        );
    }
}

#[test]
fn the_role_the_api_may_pass_cannot_reach_the_feedback_queue() {
    let expanded = expanded();
    let roles = expanded["roles"].as_object().unwrap();
    let passed: Vec<String> = roles["ApiFunctionRole"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Action"].to_string().contains("iam:PassRole"))
        .map(|s| s["Resource"].to_string())
        .collect();
    assert_eq!(passed.len(), 1, "{passed:?}");
    assert!(passed[0].contains("SchedulerRole"), "{passed:?}");
    assert!(!passed[0].contains("FeedbackChoreRole"), "{passed:?}");
    assert!(
        !roles["SchedulerRole"].to_string().contains("FeedbackQueue"),
        "the api could schedule messages to the feedback queue: {}",
        roles["SchedulerRole"]
    );
    assert!(
        roles["FeedbackChoreRole"]
            .to_string()
            .contains("FeedbackQueue")
    );
}
