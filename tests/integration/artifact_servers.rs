//! The artifact servers of tests/support work against the real tools: the Helm chart repository
//! (`chart_repo.rs`) with the real helm (plain, basic auth, HTTPS with a CA; request counts,
//! 304s, down), the distribution registry (`registry.rs`) with `helm push` and `oras push` in
//! Flux's artifact layout, and SOPS with age (`sops.rs`). No cluster and no ferry involved.

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::support::{
    ChartRepo, ChartRepoOptions, FLUX_CONFIG_MEDIA_TYPE, FLUX_CONTENT_MEDIA_TYPE, OciRegistry,
    RegistryOptions, SopsFormat, TestChart, age_keygen, age_secret_key_line, helm_command, http_request,
    oras_bin, sops_decrypt, sops_encrypt, sops_encrypt_with, try_sops_decrypt,
};

fn temp() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("ferry-artifact-test-").tempdir().expect("temp dir")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `helm pull <chart> --repo <url> --version <version> --destination <dest>` plus `extra`.
fn helm_pull_repo(url: &str, chart: &str, version: &str, dest: &Path, extra: &[&str]) -> Output {
    let home = temp();
    helm_command(home.path())
        .args(["pull", chart, "--repo", url, "--version", version, "--destination"])
        .arg(dest)
        .args(extra)
        .output()
        .expect("run helm pull")
}

#[test]
fn chart_repo_serves_helm_pull_and_counts_requests() {
    let repo = ChartRepo::start();
    let (_src, chart) = TestChart::new("demo", "1.2.3").kube_version(">=1.20.0-0").write_temp();
    let tgz = repo.publish(&chart);
    assert_eq!(tgz.file_name().unwrap(), "demo-1.2.3.tgz");
    let index = fs::read_to_string(repo.dir().join("index.yaml")).expect("index.yaml");
    assert!(index.contains(&format!("{}/demo-1.2.3.tgz", repo.url())), "{index}");
    assert!(index.contains("kubeVersion: '>=1.20.0-0'"), "{index}");

    let dest = temp();
    let out = helm_pull_repo(&repo.url(), "demo", "1.2.3", dest.path(), &[]);
    assert!(out.status.success(), "helm pull: {}", text(&out));
    assert!(dest.path().join("demo-1.2.3.tgz").is_file());
    assert_eq!(repo.requests("/index.yaml"), 1, "{:?}", repo.request_log());
    assert_eq!(repo.requests("/demo-1.2.3.tgz"), 1, "{:?}", repo.request_log());
    assert!(
        repo.request_log().iter().all(|r| r.method == "GET" && r.status == 200),
        "{:?}",
        repo.request_log()
    );

    // The chart renders: helm template of the pulled archive shows the default ConfigMap.
    let home = temp();
    let out = helm_command(home.path())
        .args(["template", "rel"])
        .arg(dest.path().join("demo-1.2.3.tgz"))
        .output()
        .expect("run helm template");
    assert!(out.status.success(), "helm template: {}", text(&out));
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(rendered.contains("name: rel-demo") && rendered.contains("greeting: \"hello\""), "{rendered}");

    // An unknown version is a helm error, after one more index fetch.
    let out = helm_pull_repo(&repo.url(), "demo", "9.9.9", dest.path(), &[]);
    assert!(!out.status.success());
    assert_eq!(repo.requests("/index.yaml"), 2);
    repo.reset_requests();
    assert_eq!(repo.requests("/index.yaml"), 0);
}

#[test]
fn chart_repo_basic_auth() {
    let repo = ChartRepo::start_with_auth("chartuser", "s3cret");
    let (_src, chart) = TestChart::new("private", "0.1.0").write_temp();
    repo.publish(&chart);
    let dest = temp();

    let out = helm_pull_repo(&repo.url(), "private", "0.1.0", dest.path(), &[]);
    assert!(!out.status.success(), "helm pull without credentials succeeded");
    assert!(text(&out).contains("401"), "{}", text(&out));
    let out = helm_pull_repo(
        &repo.url(),
        "private",
        "0.1.0",
        dest.path(),
        &["--username", "chartuser", "--password", "nope"],
    );
    assert!(!out.status.success(), "helm pull with a wrong password succeeded");

    let out = helm_pull_repo(
        &repo.url(),
        "private",
        "0.1.0",
        dest.path(),
        &["--username", "chartuser", "--password", "s3cret"],
    );
    assert!(out.status.success(), "helm pull with credentials: {}", text(&out));
    assert!(dest.path().join("private-0.1.0.tgz").is_file());
    let log = repo.request_log();
    assert!(
        log.iter().any(|r| r.path == "/private-0.1.0.tgz" && r.status == 200 && r.authorization),
        "{log:?}"
    );
    assert!(log.iter().any(|r| r.path == "/index.yaml" && r.status == 401 && !r.authorization), "{log:?}");
}

#[test]
fn chart_repo_https_with_a_ca_file() {
    let repo = ChartRepo::start_with(ChartRepoOptions { basic_auth: None, tls: true });
    assert!(repo.url().starts_with("https://127.0.0.1:"));
    let ca = repo.ca_file().expect("a CA file");
    let (_src, chart) = TestChart::new("secure", "2.0.0").write_temp();
    repo.publish(&chart);
    let dest = temp();

    let out = helm_pull_repo(&repo.url(), "secure", "2.0.0", dest.path(), &[]);
    assert!(!out.status.success(), "helm pull trusted an unknown CA");
    assert!(text(&out).contains("certificate"), "{}", text(&out));

    let out =
        helm_pull_repo(&repo.url(), "secure", "2.0.0", dest.path(), &["--ca-file", ca.to_str().unwrap()]);
    assert!(out.status.success(), "helm pull with --ca-file: {}", text(&out));
    assert!(dest.path().join("secure-2.0.0.tgz").is_file());
    assert_eq!(repo.requests("/secure-2.0.0.tgz"), 1);
}

#[test]
fn chart_repo_conditional_requests_and_outages() {
    let repo = ChartRepo::start();
    let (_src, chart) = TestChart::new("cond", "1.0.0").write_temp();
    repo.publish(&chart);
    let addr = repo.addr().to_string();

    let first = http_request(&addr, "GET", "/index.yaml", &[], b"");
    assert_eq!(first.status, 200);
    assert!(first.body.contains("cond-1.0.0.tgz"));
    let etag = first.header("etag").expect("an ETag").to_string();
    let last_modified = first.header("last-modified").expect("a Last-Modified").to_string();

    let again = http_request(&addr, "GET", "/index.yaml", &[("If-None-Match", &etag)], b"");
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let again = http_request(&addr, "GET", "/index.yaml", &[("If-Modified-Since", &last_modified)], b"");
    assert_eq!(again.status, 304);
    let other = http_request(&addr, "GET", "/index.yaml", &[("If-None-Match", "\"something-else\"")], b"");
    assert_eq!(other.status, 200);
    assert_eq!(http_request(&addr, "GET", "/missing.tgz", &[], b"").status, 404);
    assert_eq!(http_request(&addr, "GET", "/../index.yaml", &[], b"").status, 404);

    // A new chart version changes the index and so its ETag.
    let (_src2, chart2) = TestChart::new("cond", "1.1.0").write_temp();
    repo.publish(&chart2);
    let changed = http_request(&addr, "GET", "/index.yaml", &[("If-None-Match", &etag)], b"");
    assert_eq!(changed.status, 200);
    assert!(changed.body.contains("cond-1.1.0.tgz"));
    assert_ne!(changed.header("etag"), Some(etag.as_str()));

    assert_eq!(repo.requests("/index.yaml"), 5);
    let log = repo.request_log();
    assert_eq!(log.iter().filter(|r| r.status == 304).count(), 2, "{log:?}");
    assert!(log.iter().any(|r| r.if_modified_since.as_deref() == Some(last_modified.as_str())));

    // Failing on purpose, then down (the connection closes without an answer), then back.
    repo.fail_with(Some(503));
    assert_eq!(http_request(&addr, "GET", "/index.yaml", &[], b"").status, 503);
    repo.fail_with(None);
    repo.set_down(true);
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = stream.write_all(b"GET /index.yaml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(answer.is_empty(), "a down repo answered: {}", String::from_utf8_lossy(&answer));
    let dest = temp();
    let out = helm_pull_repo(&repo.url(), "cond", "1.1.0", dest.path(), &[]);
    assert!(!out.status.success(), "helm pull from a down repo succeeded");
    repo.set_down(false);
    let out = helm_pull_repo(&repo.url(), "cond", "1.1.0", dest.path(), &[]);
    assert!(out.status.success(), "helm pull after the outage: {}", text(&out));
}

/// The manifests directory pushed as a Flux artifact.
fn manifests_dir() -> tempfile::TempDir {
    let dir = temp();
    fs::write(
        dir.path().join("configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-oci\ndata:\n  a: \"1\"\n",
    )
    .unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("sub/service.yaml"), "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc\n")
        .unwrap();
    dir
}

/// Pushes a chart and a Flux artifact, and checks what the registry holds.
fn push_and_check(registry: &OciRegistry) {
    let (_src, chart) = TestChart::new("ocichart", "0.3.0").write_temp();
    let pkg = temp();
    let tgz = crate::support::helm_package(&chart, pkg.path());
    let chart_digest = registry.helm_push(&tgz, &registry.oci_url("charts"));
    assert!(chart_digest.starts_with("sha256:"), "{chart_digest}");
    let chart_manifest = registry.fetch_manifest("charts/ocichart:0.3.0");
    assert_eq!(chart_manifest["config"]["mediaType"], "application/vnd.cncf.helm.config.v1+json");
    assert_eq!(
        chart_manifest["layers"][0]["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );

    // helm pulls it back.
    let dest = temp();
    let home = temp();
    let mut pull = helm_command(home.path());
    pull.arg("pull").arg(format!("{}/ocichart", registry.oci_url("charts"))).args(["--version", "0.3.0"]);
    pull.arg("--destination").arg(dest.path());
    match registry.ca_file() {
        Some(ca) => pull.arg("--ca-file").arg(ca),
        None => pull.arg("--plain-http"),
    };
    if let Some(auth) = registry.auth() {
        pull.args(["--username", &auth.username, "--password", &auth.password]);
    }
    let out = pull.output().expect("run helm pull");
    assert!(out.status.success(), "helm pull oci: {}", text(&out));
    assert!(dest.path().join("ocichart-0.3.0.tgz").is_file());

    // A Flux artifact of plain manifests.
    let manifests = manifests_dir();
    let digest = registry.oras_push_manifests(manifests.path(), "manifests/app:v1");
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    let manifest = registry.fetch_manifest("manifests/app:v1");
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json", "{manifest}");
    assert_eq!(manifest["config"]["mediaType"], FLUX_CONFIG_MEDIA_TYPE, "{manifest}");
    assert!(manifest.get("artifactType").is_none(), "{manifest}");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], FLUX_CONTENT_MEDIA_TYPE, "{manifest}");
    assert!(manifest["annotations"]["org.opencontainers.image.revision"].is_string(), "{manifest}");
    assert!(manifest["annotations"]["org.opencontainers.image.created"].is_string(), "{manifest}");

    // The digest oras returned is the manifest's.
    let target = format!("{}/manifests/app:v1", registry.host());
    let out = registry.oras(&["manifest", "fetch", "--descriptor", &target]).output().expect("oras");
    assert!(out.status.success(), "{}", text(&out));
    let descriptor: Value = serde_json::from_slice(&out.stdout).expect("a descriptor");
    assert_eq!(descriptor["digest"], digest.as_str());

    // The layer is a gzipped tarball of the directory's files, relative to it.
    let layer = format!("{}/manifests/app@{}", registry.host(), layers[0]["digest"].as_str().unwrap());
    let blob = temp();
    let blob_file = blob.path().join("layer.tgz");
    let out = registry
        .oras(&["blob", "fetch", "--output", blob_file.to_str().unwrap(), &layer])
        .output()
        .expect("oras blob fetch");
    assert!(out.status.success(), "{}", text(&out));
    let list = Command::new("tar").arg("-tzf").arg(&blob_file).stdin(Stdio::null()).output().expect("tar");
    let list = String::from_utf8_lossy(&list.stdout);
    let entries: Vec<&str> = list.lines().collect();
    assert_eq!(entries, ["configmap.yaml", "sub/", "sub/service.yaml"], "{list}");
}

#[test]
fn registry_accepts_helm_and_oras_pushes() {
    let registry = OciRegistry::start();
    assert!(registry.plain_http());
    push_and_check(&registry);
}

#[test]
fn registry_with_htpasswd_over_plain_http() {
    let registry = OciRegistry::start_with_auth("reguser", "regpass");
    push_and_check(&registry);

    // Without credentials the registry says 401.
    let target = format!("{}/manifests/app:v1", registry.host());
    let home = temp();
    let out = Command::new(oras_bin())
        .args(["manifest", "fetch", "--plain-http", "--registry-config"])
        .arg(home.path().join("auth.json"))
        .arg(&target)
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .expect("run oras");
    assert!(!out.status.success(), "an anonymous fetch succeeded");
    // oras says "basic credential not found" after the registry's 401 challenge.
    assert!(text(&out).contains("credential not found"), "{}", text(&out));
}

#[test]
fn registry_with_tls_and_htpasswd() {
    let registry = OciRegistry::start_with(RegistryOptions {
        basic_auth: Some(crate::support::BasicAuth {
            username: "tlsuser".into(),
            password: "tlspass".into(),
        }),
        tls: true,
    });
    assert!(!registry.plain_http());
    assert!(registry.url().starts_with("https://"));
    assert!(registry.ca_file().expect("a CA").is_file());
    push_and_check(&registry);
}

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
type: Opaque
stringData:
  password: hunter2-plaintext
";

#[test]
fn sops_age_round_trip() {
    let (recipient, key_file) = age_keygen();
    assert!(recipient.starts_with("age1"));
    let secret_line = age_secret_key_line(&key_file);
    assert!(secret_line.starts_with("AGE-SECRET-KEY-1"));

    // Only data/stringData encrypted, as Kubernetes Secrets usually are.
    let encrypted = sops_encrypt_with(
        SECRET,
        &recipient,
        SopsFormat::Yaml,
        &["--encrypted-regex", "^(data|stringData)$"],
    );
    assert!(!encrypted.contains("hunter2-plaintext"), "{encrypted}");
    assert!(encrypted.contains("password: ENC[AES256_GCM,"), "{encrypted}");
    assert!(encrypted.contains("name: db") && encrypted.contains(&recipient), "{encrypted}");
    assert!(encrypted.contains("encrypted_regex: ^(data|stringData)$"), "{encrypted}");

    let yaml = |s: &str| -> Value { serde_saphyr::from_str(s).expect("YAML") };
    for key in [key_file.as_str(), secret_line.as_str()] {
        let decrypted = sops_decrypt(&encrypted, key, SopsFormat::Yaml);
        assert_eq!(yaml(&decrypted), yaml(SECRET), "{decrypted}");
    }

    // Another key cannot decrypt; a tampered value fails the MAC.
    let (_, other) = age_keygen();
    assert!(try_sops_decrypt(&encrypted, &other, SopsFormat::Yaml).is_err());
    let tampered = encrypted.replace("name: db", "name: dc");
    let err =
        try_sops_decrypt(&tampered, &key_file, SopsFormat::Yaml).expect_err("a tampered file decrypted");
    assert!(err.contains("MAC"), "{err}");

    // JSON and dotenv, every value encrypted.
    let json = sops_encrypt("{\"token\": \"abc\"}", &recipient, SopsFormat::Json);
    assert!(json.contains("\"token\": \"ENC["), "{json}");
    let back: Value = serde_json::from_str(&sops_decrypt(&json, &key_file, SopsFormat::Json)).unwrap();
    assert_eq!(back, serde_json::json!({"token": "abc"}));
    let env = sops_encrypt("TOKEN=abc\n", &recipient, SopsFormat::Dotenv);
    assert!(env.contains("TOKEN=ENC["), "{env}");
    assert_eq!(sops_decrypt(&env, &key_file, SopsFormat::Dotenv), "TOKEN=abc\n");
}
