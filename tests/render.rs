//! `secrets-agent render`: files written from moto (straight, or through the counting and
//! fault-injecting proxy), their modes and owners, exit codes, the memory-filesystem rule, and
//! watch mode following rotations without a reader ever seeing a partial file.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// `secrets-agent render ARGS` with a clean environment pointing at `endpoint`.
fn render(endpoint: &str, args: &[&str]) -> Command {
    let mut c = agent_command(endpoint);
    c.arg("render").args(args);
    c
}

async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().expect("run secrets-agent render"))
        .await
        .unwrap()
}

/// A fresh directory on /dev/shm (tmpfs here: `stat -f /dev/shm`).
fn shm_dir(name: &str) -> PathBuf {
    let d = PathBuf::from("/dev/shm").join(unique(&format!("render-{name}")));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls `f` until it is true or `limit` passes.
async fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_writes_every_kind_of_file_with_its_mode() {
    let db = unique("render/db");
    create_secret(&db, r#"{"user":"app","password":"pw-1","port":5432}"#).await;
    let bin = unique("render/bin");
    secrets_client()
        .await
        .create_secret()
        .name(&bin)
        .secret_binary(aws_smithy_types::Blob::new(vec![0u8, 0xff, 0x10, b'k']))
        .send()
        .await
        .unwrap();
    let param = unique("/render/param");
    put_parameter(
        &param,
        "param-value",
        aws_sdk_ssm::types::ParameterType::SecureString,
    )
    .await;
    let dir = shm_dir("kinds");
    let template = dir.join("app.conf.tmpl");
    std::fs::write(
        &template,
        format!(
            "[db]\nuser = ${{awssm:{db}#user}}\npassword = ${{awssm:{db}#password}}\nport = \
             ${{awssm:{db}#port}}\nflag = ${{awsparam:{param}}}\n"
        ),
    )
    .unwrap();
    let out = dir.join("out/nested");
    let p = |n: &str| out.join(n).display().to_string();
    let files = [
        format!("{}=awssm:{db}", p("whole")),
        format!("{}=awssm:{db}#password", p("password")),
        format!("{}=awssm:{bin}", p("keystore")),
        format!("{}=awsparam:{param}", p("param")),
    ];
    let mut args = vec!["--once", "--source", "aws"];
    for f in &files {
        args.extend(["--file", f]);
    }
    let tpl = format!("{}={}", p("app.conf"), template.display());
    args.extend(["--template", &tpl]);
    // Over TLS, the test CA given as the AWS SDKs take a corporate CA.
    let mut c = agent_command_tls("AWS_CA_BUNDLE");
    c.arg("render").args(&args);
    let o = output(c).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("pw-1"), "no value in the log");

    let read = |n: &str| std::fs::read(out.join(n)).unwrap();
    assert_eq!(
        read("whole"),
        br#"{"user":"app","password":"pw-1","port":5432}"#
    );
    assert_eq!(read("password"), b"pw-1");
    assert_eq!(read("keystore"), [0u8, 0xff, 0x10, b'k']);
    assert_eq!(read("param"), b"param-value");
    assert_eq!(
        String::from_utf8(read("app.conf")).unwrap(),
        "[db]\nuser = app\npassword = pw-1\nport = 5432\nflag = param-value\n"
    );
    for n in ["whole", "password", "keystore", "param", "app.conf"] {
        assert_eq!(mode(&out.join(n)), 0o400, "{n}");
    }
    assert_eq!(mode(&dir.join("out")), 0o700);
    assert_eq!(mode(&out), 0o700);
    let names: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(names.len(), 5, "no temporaries left behind");

    // Mode, owner and group from flags; ownership needs root.
    let owned = dir.join("owned/f");
    let spec = format!("{}=awssm:{db}#user", owned.display());
    let mut args = vec![
        "--once", "--source", "aws", "--file", &spec, "--mode", "0440",
    ];
    let root = is_root();
    if root {
        args.extend(["--uid", "1234", "--gid", "5678"]);
    }
    let o = output(render(moto_url(), &args)).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode(&owned), 0o440);
    if root {
        let m = std::fs::metadata(&owned).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        let d = std::fs::metadata(dir.join("owned")).unwrap();
        assert_eq!(
            (d.uid(), d.gid()),
            (1234, 5678),
            "created directories owned like the file"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Root, as the `id -u` command says (no `unsafe` for geteuid).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_annotations_give_files_too() {
    let db = unique("render/cfg");
    create_secret(&db, r#"{"user":"u","password":"pw-cfg"}"#).await;
    let dir = shm_dir("cfg");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[[files]]\npath = \"{}\"\nsource = \"awssm:{db}#password\"\nmode = \"0600\"\n",
            dir.join("from-config").display()
        ),
    )
    .unwrap();
    let annotations = dir.join("annotations");
    std::fs::write(
        &annotations,
        format!(
            "kubernetes.io/config.seen=\"x\"\nsecrets-agent.io/inject=\"true\"\n\
             secrets-agent.io/file.conf.path=\"{}\"\n\
             secrets-agent.io/file.conf.source=\"user=${{awssm:{db}#user}}\\npass=${{awssm:{db}#password}}\\n\"\n\
             secrets-agent.io/file.conf.mode=\"0444\"\n",
            dir.join("from-annotations").display()
        ),
    )
    .unwrap();
    let cfg = config.display().to_string();
    let ann = annotations.display().to_string();
    let o = output(render(
        moto_url(),
        &[
            "--config",
            &cfg,
            "--once",
            "--source",
            "aws",
            "--from-annotations",
            &ann,
        ],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(dir.join("from-config")).unwrap(), b"pw-cfg");
    assert_eq!(mode(&dir.join("from-config")), 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.join("from-annotations")).unwrap(),
        "user=u\npass=pw-cfg\n"
    );
    assert_eq!(mode(&dir.join("from-annotations")), 0o444);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_fails_whole_naming_file_and_id_never_a_value() {
    let db = unique("render/fail");
    create_secret(&db, r#"{"password":"pw-secret-value"}"#).await;
    let missing = unique("render/missing");
    let dir = shm_dir("fail");
    let good = dir.join("good");
    let bad = dir.join("sub/bad");
    let good_spec = format!("{}=awssm:{db}#password", good.display());

    // A secret that does not exist: 78, nothing written (not even the good file).
    let bad_spec = format!("{}=awssm:{missing}", bad.display());
    let o = output(render(
        moto_url(),
        &[
            "--once", "--source", "aws", "--file", &good_spec, "--file", &bad_spec,
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&bad.display().to_string()) && e.contains(&missing),
        "{e}"
    );
    assert!(e.contains("not found"), "{e}");
    assert!(
        !good.exists() && !dir.join("sub").exists(),
        "nothing written"
    );

    // A JSON key that is not there: 78, named.
    let bad_spec = format!("{}=awssm:{db}#nope", bad.display());
    let o = output(render(
        moto_url(),
        &[
            "--once", "--source", "aws", "--file", &good_spec, "--file", &bad_spec,
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(78));
    assert!(
        stderr(&o).contains("key 'nope' is not in the secret"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("pw-secret-value"));
    assert!(!good.exists());

    // A malformed placeholder or a bad flag: 64, before any fetch.
    for args in [
        vec!["--once", "--file", "/dev/shm/x=awssm:"],
        vec!["--once", "--file", "relative=awssm:x"],
        vec!["--once"],
        vec!["--once", "--file", &good_spec, "--mode", "0999"],
    ] {
        let o = output(render(moto_url(), &args)).await;
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
    }

    // A target on a disk filesystem: 73, unless --allow-disk.
    let disk = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique("render-disk"));
    let disk_spec = format!("{}=awssm:{db}#password", disk.join("f").display());
    let o = output(render(
        moto_url(),
        &[
            "--once", "--source", "aws", "--file", &good_spec, "--file", &disk_spec,
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(73), "{}", stderr(&o));
    assert!(stderr(&o).contains("not tmpfs or ramfs"), "{}", stderr(&o));
    assert!(!disk.exists() && !good.exists());
    let o = output(render(
        moto_url(),
        &[
            "--once",
            "--source",
            "aws",
            "--allow-disk",
            "--file",
            &disk_spec,
        ],
    ))
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(disk.join("f")).unwrap(), b"pw-secret-value");
    std::fs::remove_dir_all(&disk).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A watching `render` (a child process) that is killed when dropped.
struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn watch(endpoint: &str, dir: &Path, args: &[&str]) -> Watcher {
    let config = dir.join("agent.toml");
    std::fs::write(&config, "ttl_seconds = 1\nlog_level = \"debug\"\n").unwrap();
    let cfg = config.display().to_string();
    let mut all = vec!["--config", &cfg, "--source", "aws"];
    all.extend(args);
    let child = render(endpoint, &all)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("render.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    Watcher(child)
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_20_rotations_atomically_and_notifies_once_per_change() {
    let proxy = Proxy::start().await;
    let id = unique("render/rotate");
    let value = |i: usize| format!("{{\"password\":\"{}\"}}", format!("v{i:02}-").repeat(2000));
    create_secret(&id, &value(0)).await;
    let dir = shm_dir("rotate");
    let target = dir.join("secret.json");
    let changes = dir.join("changes");
    let spec = format!("{}=awssm:{id}", target.display());
    let hook = format!(
        "echo \"$SECRETS_AGENT_CHANGED_FILES\" >> {}",
        changes.display()
    );
    let _w = watch(&proxy.url, &dir, &["--file", &spec, "--on-change", &hook]);
    eventually(Duration::from_secs(20), "the first write", || {
        std::fs::read(&target).is_ok_and(|b| b == value(0).as_bytes())
    })
    .await;

    // A reader that loops over the file for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads, target) = (stop.clone(), reads.clone(), target.clone());
        let valid: Vec<String> = (0..=20).map(value).collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let got = std::fs::read_to_string(&target).expect("the file is always there");
                assert!(
                    valid.contains(&got),
                    "partial, empty or mixed content ({} bytes)",
                    got.len()
                );
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for i in 1..=20 {
        put_secret(&id, &value(i)).await;
        eventually(
            Duration::from_secs(20),
            "the rotated value in the file",
            || std::fs::read(&target).is_ok_and(|b| b == value(i).as_bytes()),
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("the reader saw only whole values");
    assert!(reads.load(Ordering::Relaxed) > 20);
    assert_eq!(mode(&target), 0o400);

    // Let a few more refreshes go by with no change: the hook ran once per rotation only.
    let describes = proxy.count("DescribeSecret");
    eventually(Duration::from_secs(20), "more refreshes", || {
        proxy.count("DescribeSecret") >= describes + 3
    })
    .await;
    eventually(Duration::from_secs(10), "the 20th hook run", || {
        lines(&changes) >= 20
    })
    .await;
    assert_eq!(lines(&changes), 20, "one hook run per change");
    assert!(std::fs::read_to_string(&changes)
        .unwrap()
        .lines()
        .all(|l| l == target.display().to_string()));
    // Refreshes asked DescribeSecret; GetSecretValue only for real changes (+ the first read).
    assert!(
        proxy.count("GetSecretValue") <= 21 + 2,
        "{}",
        proxy.count("GetSecretValue")
    );
    let log = std::fs::read_to_string(dir.join("render.log")).unwrap();
    assert!(!log.contains("v01-"), "no value in the log");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_keeps_the_last_content_while_aws_is_down() {
    let proxy = Proxy::start().await;
    let id = unique("render/down");
    create_secret(&id, "first").await;
    let dir = shm_dir("down");
    let target = dir.join("s");
    let changes = dir.join("changes");
    let spec = format!("{}=awssm:{id}", target.display());
    let pidfile = dir.join("app.pid");
    // A stand-in application that counts SIGHUPs.
    let hups = dir.join("hups");
    let mut app = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap 'echo hup >> {}' HUP; while true; do sleep 0.05; done",
            hups.display()
        ))
        .spawn()
        .unwrap();
    std::fs::write(&pidfile, format!("{}\n", app.id())).unwrap();
    let notify = format!("SIGHUP:{}", pidfile.display());
    let hook = format!("echo x >> {}", changes.display());
    let _w = watch(
        &proxy.url,
        &dir,
        &["--file", &spec, "--on-change", &hook, "--notify", &notify],
    );
    eventually(Duration::from_secs(20), "the first write", || {
        std::fs::read(&target).is_ok_and(|b| b == b"first")
    })
    .await;

    proxy.set_fault(Fault::Error(503, "ServiceUnavailable"), None);
    put_secret(&id, "second").await; // straight to moto, not through the proxy
    let before = proxy.count("DescribeSecret") + proxy.count("GetSecretValue");
    eventually(Duration::from_secs(20), "failed refreshes", || {
        proxy.count("DescribeSecret") + proxy.count("GetSecretValue") >= before + 2
    })
    .await;
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"first",
        "last content kept"
    );
    assert_eq!(lines(&changes), 0);

    proxy.clear_fault();
    eventually(
        Duration::from_secs(90),
        "the new value after recovery",
        || std::fs::read(&target).is_ok_and(|b| b == b"second"),
    )
    .await;
    eventually(Duration::from_secs(10), "the hook", || lines(&changes) == 1).await;
    eventually(Duration::from_secs(10), "the signal", || lines(&hups) == 1).await;
    let _ = app.kill();
    let _ = app.wait();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_agent_keeps_files_from_its_config() {
    let id = unique("render/serve");
    create_secret(&id, r#"{"k":"one"}"#).await;
    let dir = shm_dir("serve");
    let target = dir.join("k");
    let port = free_port();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "ttl_seconds = 1\nhttp_port = {port}\n[[files]]\npath = \"{}\"\nsource = \"awssm:{id}#k\"\n",
            target.display()
        ),
    )
    .unwrap();
    let mut c = agent_command(moto_url());
    c.arg("--config")
        .arg(&config)
        .env("AWS_TOKEN", TOKEN)
        .stderr(Stdio::null());
    let _agent = Watcher(c.spawn().unwrap());
    eventually(Duration::from_secs(20), "the file", || {
        std::fs::read(&target).is_ok_and(|b| b == b"one")
    })
    .await;
    let url = format!(
        "http://127.0.0.1:{port}/secretsmanager/get?secretId={}",
        enc(&id)
    );
    let reply = get(&url, &[("X-Aws-Parameters-Secrets-Token", TOKEN)]).await;
    assert_eq!(reply.json()["SecretString"], r#"{"k":"one"}"#);
    put_secret(&id, r#"{"k":"two"}"#).await;
    eventually(Duration::from_secs(20), "the rotated file", || {
        std::fs::read(&target).is_ok_and(|b| b == b"two")
    })
    .await;
    // A file removed from under the agent is put back.
    std::fs::remove_file(&target).unwrap();
    eventually(Duration::from_secs(20), "the file put back", || {
        std::fs::read(&target).is_ok_and(|b| b == b"two")
    })
    .await;

    // A disk target stops the start with 64, naming it.
    let bad = dir.join("bad.toml");
    let disk = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("never-written");
    std::fs::write(
        &bad,
        format!(
            "http_port = {}\n[[files]]\npath = \"{}\"\nsource = \"awssm:{id}\"\n",
            free_port(),
            disk.display()
        ),
    )
    .unwrap();
    let mut c = agent_command(moto_url());
    c.arg("--config").arg(&bad).env("AWS_TOKEN", TOKEN);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("not tmpfs or ramfs"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A private certificate in moto (issued by a private CA, so ExportCertificate allows it).
async fn private_certificate(acm: &aws_sdk_acm::Client, domain: &str) -> String {
    acm.request_certificate()
        .domain_name(domain)
        .certificate_authority_arn(
            "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/12345678-1234-1234-1234-123456789012",
        )
        .send()
        .await
        .expect("request a private certificate")
        .certificate_arn
        .expect("certificate arn")
}

/// What moto exports for `arn`: certificate, chain and the private key decrypted by the
/// `pkcs8` crate on its own, as each file should hold them.
async fn exported(acm: &aws_sdk_acm::Client, arn: &str) -> (String, String, String) {
    use pkcs8::DecodePrivateKey;
    let out = acm
        .export_certificate()
        .certificate_arn(arn)
        .passphrase(aws_smithy_types::Blob::new("test-passphrase"))
        .send()
        .await
        .expect("export");
    let key = pkcs8::SecretDocument::from_pkcs8_encrypted_pem(
        out.private_key().unwrap().trim(),
        "test-passphrase",
    )
    .expect("moto's key decrypts");
    let pem = |s: &str| format!("{}\n", s.trim());
    (
        pem(out.certificate().unwrap()),
        pem(out.certificate_chain().unwrap()),
        key.to_pem("PRIVATE KEY", pkcs8::der::pem::LineEnding::LF)
            .unwrap()
            .to_string(),
    )
}

/// Issue 19: `awsacm:` sources write an ACM certificate's parts as PEM files (mode 0400), the
/// key decrypted; unchanged serials cost a DescribeCertificate only; a renewal (a new
/// certificate at the same ARN: the proxy answers calls for it with a second certificate, as
/// moto cannot renew) rewrites the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acm_certificate_files_follow_a_renewal() {
    let proxy = Proxy::start().await;
    let acm = aws_sdk_acm::Client::new(&sdk_config(moto_url()).await);
    let arn = private_certificate(&acm, "app.internal.example").await;
    let renewed = private_certificate(&acm, "app.internal.example").await;
    assert_eq!(
        arn.len(),
        renewed.len(),
        "the proxy swaps equal-length ARNs"
    );
    let dir = shm_dir("acm");
    let (cert, chain, key) = (
        dir.join("cert.pem"),
        dir.join("chain.pem"),
        dir.join("key.pem"),
    );
    let full = dir.join("fullchain.pem");
    let specs = [
        format!("{}=awsacm:{arn}#certificate", cert.display()),
        format!("{}=awsacm:{arn}#chain", chain.display()),
        format!("{}=awsacm:{arn}#fullchain", full.display()),
        format!("{}=awsacm:{arn}#private_key", key.display()),
    ];
    let mut args = Vec::new();
    for s in &specs {
        args.extend(["--file", s.as_str()]);
    }
    let _w = watch(&proxy.url, &dir, &args);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let (c1, ch1, k1) = exported(&acm, &arn).await;
    eventually(Duration::from_secs(20), "the certificate files", || {
        read(&key) == k1
    })
    .await;
    assert_eq!(read(&cert), c1);
    assert_eq!(read(&chain), ch1);
    assert_eq!(read(&full), format!("{c1}{ch1}"));
    assert!(c1.starts_with("-----BEGIN CERTIFICATE-----\n"));
    let cert_text = read(&cert);
    let (label, der) = pkcs8::der::pem::decode_vec(cert_text.as_bytes()).expect("PEM parses");
    assert_eq!(label, "CERTIFICATE");
    assert!(der.len() > 300);
    let key_text = read(&key);
    let doc = pkcs8::SecretDocument::from_pem(key_text.trim()).expect("the key parses");
    assert_eq!(doc.0, "PRIVATE KEY", "unencrypted PKCS#8");
    pkcs8::PrivateKeyInfoRef::try_from(doc.1.as_bytes()).expect("a PKCS#8 structure");
    for p in [&cert, &chain, &full, &key] {
        assert_eq!(mode(p), 0o400, "{}", p.display());
    }
    // Four files, one certificate: one export; refreshes only describe it.
    let describes = proxy.count("DescribeCertificate");
    eventually(Duration::from_secs(20), "refreshes", || {
        proxy.count("DescribeCertificate") >= describes + 3
    })
    .await;
    assert_eq!(proxy.count("ExportCertificate"), 1);

    proxy.rewrite(&arn, &renewed);
    let (c2, ch2, k2) = exported(&acm, &renewed).await;
    assert_ne!(k1, k2);
    eventually(Duration::from_secs(20), "the renewed files", || {
        read(&key) == k2 && read(&cert) == c2
    })
    .await;
    assert_eq!(read(&full), format!("{c2}{ch2}"));
    assert_eq!(proxy.count("ExportCertificate"), 2);
    let log = std::fs::read_to_string(dir.join("render.log")).unwrap();
    assert!(!log.contains("PRIVATE KEY"), "no key in the log");
    std::fs::remove_dir_all(&dir).unwrap();
}
