//! `kinko admin` against a running server: halts and resumes per asset, a cold → hot move approved
//! by two demo approvers, refusals reported as errors, and the binary itself printing the status.

mod common;

use common::*;
use gateway::admin::{run, AdminAction, Connection};
use serde_json::Value;

/// The demo operator over wss, trusting the certificate the server generated in `data`.
fn operator(addr: std::net::SocketAddr, data: &std::path::Path) -> Connection {
    Connection {
        url: format!("wss://{addr}/ws"),
        ca: data.join("tls/cert.pem"),
        key: "demo-operator".into(),
        secret: "demo-operator-secret".into(),
    }
}

fn xem(status: &Value) -> &Value {
    status["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["asset"] == "XEM")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_actions_from_the_command_line() {
    let dir = TempDir::new("admin");
    let mut config = custody_config(dir.path());
    config.server.transport = gateway::config::Transport::Tls;
    let (running, addr) = start(config).await;
    let op = operator(addr, dir.path());
    let halt = AdminAction::Halt {
        asset: "XEM".into(),
        deposits: false,
        withdrawals: true,
        trading: false,
    };
    assert_eq!(run(&op, halt).await.unwrap()["type"], "ack");
    let status = run(&op, AdminAction::Status).await.unwrap();
    assert_eq!(
        xem(&status)["halted"],
        serde_json::json!({"deposits": false, "withdrawals": true, "trading": false})
    );
    // Halting trading keeps withdrawals halted; resuming with nothing named resumes everything.
    let halt_trading = AdminAction::Halt {
        asset: "XEM".into(),
        deposits: false,
        withdrawals: false,
        trading: true,
    };
    run(&op, halt_trading).await.unwrap();
    let status = run(&op, AdminAction::Status).await.unwrap();
    assert_eq!(xem(&status)["halted"]["withdrawals"], true);
    assert_eq!(xem(&status)["halted"]["trading"], true);
    let resume = AdminAction::Resume {
        asset: "XEM".into(),
        deposits: true,
        withdrawals: true,
        trading: true,
    };
    run(&op, resume).await.unwrap();
    let status = run(&op, AdminAction::Status).await.unwrap();
    assert_eq!(
        xem(&status)["halted"],
        serde_json::json!({"deposits": false, "withdrawals": false, "trading": false})
    );

    // The customers' XEM hot wallet is at its 5% cap (150,000 of 3,000,000): refused.
    let over_cap = AdminAction::ColdToHot {
        asset: "XEM".into(),
        amount: "1".into(),
        house: false,
    };
    let refused = run(&op, over_cap).await.unwrap_err();
    assert!(refused.starts_with("hot_wallet_cap_exceeded"), "{refused}");
    // Cold → hot: 1,000 of the house's XEM (25,000 hot, 475,000 cold).
    let reply = run(
        &op,
        AdminAction::ColdToHot {
            asset: "XEM".into(),
            amount: "1000".into(),
            house: true,
        },
    )
    .await
    .unwrap();
    let request_id: u64 = reply["request_id"].as_str().unwrap().parse().unwrap();
    let approve = |i| AdminAction::Approve {
        request_id,
        seed: engine::defaults::demo_approver_seed(i),
    };
    assert_eq!(run(&op, approve(1)).await.unwrap()["approvals"], 1);
    let twice = run(&op, approve(1)).await.unwrap_err();
    assert!(twice.starts_with("duplicate_approval"), "{twice}");
    let outsider = AdminAction::Approve {
        request_id,
        seed: [7; 32],
    };
    let refused = run(&op, outsider).await.unwrap_err();
    assert!(refused.starts_with("approver_not_in_set"), "{refused}");
    assert_eq!(run(&op, approve(0)).await.unwrap()["approvals"], 2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = run(&op, AdminAction::Status).await.unwrap();
        let hot = xem(&status)["wallets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["pool"] == "house" && w["wallet"] == "hot")
            .cloned();
        if hot.is_some_and(|w| w["ledger"] == "26000" && w["observed"] == "26000") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status:#}");
        tokio::time::sleep(std::time::Duration::from_millis(INTERVAL_MS)).await;
    }
    // Nothing lost: a top-up is refused with its reason.
    let top_up = AdminAction::TopUp {
        asset: "XEM".into(),
        amount: "1".into(),
    };
    let refused = run(&op, top_up).await.unwrap_err();
    assert!(refused.starts_with("top_up_exceeds_loss"), "{refused}");

    // The binary: `kinko admin status` prints the status as JSON; a wrong secret fails.
    let kinko = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_kinko"))
                .args(args)
                .env_remove("KINKO_ADMIN_SECRET")
                .output()
                .unwrap()
        })
    };
    // It trusts DATA/tls/cert.pem, the certificate the server generated, by default.
    let url = format!("wss://{addr}/ws");
    let data = dir.path().display().to_string();
    let out = kinko(vec![
        "admin".into(),
        "--url".into(),
        url.clone(),
        "--data".into(),
        data.clone(),
        "status".into(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["type"], "custody_status");
    let args = [
        "admin", "--url", &url, "--data", &data, "--secret", "wrong", "status",
    ];
    let out = kinko(args.iter().map(|a| a.to_string()).collect())
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("login refused"));
    // The secret can come from the environment instead, out of the process list.
    let (env_url, env_data) = (url.clone(), data.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kinko"))
            .args(["admin", "--url", &env_url, "--data", &env_data, "status"])
            .env("KINKO_ADMIN_SECRET", "wrong-from-the-environment")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "the environment's secret is used");
    assert!(String::from_utf8_lossy(&out.stderr).contains("login refused"));
    // Without the certificate to trust, it says where to find one.
    let elsewhere = dir.path().join("elsewhere").display().to_string();
    let args = ["admin", "--url", &url, "--data", &elsewhere, "status"];
    let out = kinko(args.iter().map(|a| a.to_string()).collect())
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--ca FILE"), "{stderr}");

    // Keys from the command line: create (the secret printed once), list (no secret), revoke.
    let admin = |rest: &[&str]| {
        let mut args: Vec<String> = ["admin", "--url", &url, "--data", &data]
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.extend(rest.iter().map(|a| a.to_string()));
        kinko(args)
    };
    let out = admin(&[
        "keys",
        "create",
        "--account",
        "bob",
        "--permissions",
        "read,trade",
        "--allow-ip",
        "127.0.0.1",
        "--expires",
        "2099-01-01T00:00:00Z",
        "--name",
        "bob-bot",
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["type"], "key_created");
    assert_eq!(created["permissions"], serde_json::json!(["read", "trade"]));
    let secret = created["secret"].as_str().unwrap().to_string();
    let out = admin(&["keys", "list"]).await.unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains("bob-bot") && !listed.contains(&secret),
        "{listed}"
    );
    let out = admin(&["keys", "rotate", "bob-bot"]).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated["type"], "key_rotated", "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("the new secret, once");
    assert_eq!(new_secret.len(), secret.len());
    assert_ne!(new_secret, secret);
    let out = admin(&["keys", "list"]).await.unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(new_secret));
    let out = admin(&["keys", "revoke", "bob-bot"]).await.unwrap();
    let revoked: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(revoked["type"], "key_revoked");
    let out = admin(&["keys", "create", "--account", "nobody"])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account"));
    let out = admin(&["security"]).await.unwrap();
    let security: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(security["failures_total"], 2, "the two wrong secrets above");
    running.shutdown().await.unwrap();
}
