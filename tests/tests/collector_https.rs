//! The console and API over HTTPS with hashed passwords and tokens: a certificate made by
//! `openssl`, one login hashed by `edgeprobe-collector hash-password` and one by Apache's
//! `htpasswd`, a bearer token hashed by `sha256sum`, and `curl` as the client. Plain HTTP to the
//! same port gets nothing.

use edgeprobe_tests::collector::{CollectorToml, free_port};
use edgeprobe_tests::{collector_bin, have, prerequisite, wait_for};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "scrape-token-0123456789";

/// HTTP status from curl (0 when no HTTP answer came) and curl's exit code.
fn curl(url: &str, extra: &[&str]) -> (u16, i32) {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    (String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0), out.status.code().unwrap_or(-1))
}

fn hash_password(password: &str) -> String {
    let mut child = Command::new(collector_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn check_config(path: &Path) -> (bool, String) {
    let out = Command::new(collector_bin()).arg("check-config").arg(path).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn https_with_hashed_passwords_lets_in_exactly_the_right_logins() {
    if !prerequisite(have("openssl") && have("curl") && have("htpasswd"), "openssl, curl and htpasswd (apache2-utils)")
    {
        return;
    }
    let dir = std::env::temp_dir().join(format!("edgeprobe-https-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=edgeprobe-test", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));

    let ops_hash = hash_password("ops-password-1");
    assert!(ops_hash.starts_with("$2b$"), "{ops_hash}");
    let htpasswd = Command::new("htpasswd").args(["-nbBC", "10", "", "noc-password-2"]).output().unwrap();
    let noc_hash = String::from_utf8(htpasswd.stdout).unwrap().trim().trim_start_matches(':').to_string();
    assert!(noc_hash.starts_with("$2y$10$"), "{noc_hash}");
    let sha256sum = Command::new("sh").args(["-c", &format!("printf %s '{TOKEN}' | sha256sum")]).output().unwrap();
    let token_hash = String::from_utf8(sha256sum.stdout).unwrap().split_whitespace().next().unwrap().to_string();
    assert_eq!(token_hash.len(), 64, "{token_hash}");

    let (http, mqtt) = (free_port(), free_port());
    let auth = format!(
        r#"
[http.auth]
users = [
  {{ name = "ops", password_hash = "{ops_hash}", role = "operator" }},
  {{ name = "noc", password_hash = "{noc_hash}", role = "read" }},
]
tokens = [{{ name = "prometheus", token_sha256 = "{token_hash}", role = "read" }}]
"#
    );
    let tls = format!("tls_cert_file = \"{}\"\ntls_key_file = \"{}\"", cert.display(), key.display());
    let config = CollectorToml::embedded(mqtt, dir.join("data").display(), http).http(&tls).section(&auth).to_string();
    let config_path = dir.join("collector.toml");
    std::fs::write(&config_path, &config).unwrap();
    let (ok, said) = check_config(&config_path);
    assert!(ok, "{said}");

    // A hash that is not bcrypt, or a certificate that is not there, is refused up front.
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, config.replace(&ops_hash, "not-a-hash")).unwrap();
    let (ok, said) = check_config(&broken);
    assert!(!ok && said.contains("http.auth.users.ops"), "{said}");
    std::fs::write(&broken, config.replace(cert.to_str().unwrap(), "/nonexistent/cert.pem")).unwrap();
    let (ok, said) = check_config(&broken);
    assert!(!ok && said.contains("tls_cert_file"), "{said}");
    std::fs::write(&broken, config.replace(&token_hash, &token_hash[1..])).unwrap();
    let (ok, said) = check_config(&broken);
    assert!(!ok && said.contains("http.auth.tokens.prometheus"), "{said}");

    let log = dir.join("collector.log");
    let mut child = Command::new(collector_bin())
        .arg("--config")
        .arg(&config_path)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("https://127.0.0.1:{http}");
    let ca = ["--cacert", cert.to_str().unwrap()];
    let as_ops = [&ca[..], &["-u", "ops:ops-password-1"]].concat();
    wait_for("the collector over HTTPS", Duration::from_secs(30), || {
        curl(&format!("{base}/api/v1/health"), &as_ops).0 == 200
    });
    assert!(std::fs::read_to_string(&log).unwrap().contains(&format!("API on https://127.0.0.1:{http}")));

    // Each login with its own password, from either hasher; nothing else.
    let api = format!("{base}/api/v1/incidents");
    assert_eq!(curl(&api, &as_ops).0, 200);
    assert_eq!(curl(&api, &[&ca[..], &["-u", "noc:noc-password-2"]].concat()).0, 200);
    assert_eq!(curl(&api, &[&ca[..], &["-u", "noc:ops-password-1"]].concat()).0, 401, "another's password");
    assert_eq!(curl(&api, &[&ca[..], &["-u", "ops:ops-password-"]].concat()).0, 401);
    assert_eq!(curl(&api, &[&ca[..], &["-u", "nobody:ops-password-1"]].concat()).0, 401);
    assert_eq!(curl(&api, &ca).0, 401);
    // The reader can look, not change.
    let ack = format!("{base}/api/v1/incidents/1/ack");
    assert_eq!(curl(&ack, &[&ca[..], &["-u", "noc:noc-password-2", "-X", "POST"]].concat()).0, 403);
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let metrics = format!("{base}/metrics");
    assert_eq!(curl(&metrics, &[&ca[..], &["-H", &bearer]].concat()).0, 200);
    let the_hash = format!("Authorization: Bearer {token_hash}");
    assert_eq!(curl(&metrics, &[&ca[..], &["-H", &the_hash]].concat()).0, 401, "the hash is not the token");

    // Only TLS, and only with this certificate trusted.
    let (status, _) = curl(&format!("http://127.0.0.1:{http}/api/v1/health"), &["-u", "ops:ops-password-1"]);
    assert_eq!(status, 0, "plain HTTP got an answer");
    let (status, code) = curl(&format!("{base}/api/v1/health"), &["-u", "ops:ops-password-1"]);
    assert_eq!((status, code), (0, 60), "an untrusted certificate must fail verification");

    let body = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert", cert.to_str().unwrap(), "-H", &bearer, &metrics])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&body.stdout);
    let failures: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("edgeprobe_collector_http_auth_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no auth failure counter in:\n{text}"));
    assert_eq!(failures, 5.0, "the five refused requests");
    assert!(!std::fs::read_to_string(&log).unwrap().contains("warning"), "nothing in plain text, nothing to warn of");

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
