//! `secrets-agent render [--once]`: writes secrets to files on a memory filesystem.
//!
//! A file spec names a target and what goes in it: a whole secret (SecretString, or the decoded
//! SecretBinary), one JSON key, an SSM parameter, or a template whose `${awssm:...}` placeholders
//! are filled (the grammar of `placeholder`, shared with `exec`). Specs come from `[[files]]` in
//! the config, `--file PATH=SOURCE` / `--template PATH=TEMPLATE_FILE` flags, and a downward-API
//! annotations file (`annotations`).
//!
//! `--once` (the init container): fetch all, write all, exit 0; on any failure nothing new is
//! written. Without `--once`: the same first round, then the files are kept current. The
//! watcher re-reads its keys through a cache at a fraction of the TTL; those reads are what
//! drives the cache's own refresh (refresh-ahead, DescribeSecret before GetSecretValue,
//! stale-if-error, backoff), exactly as the agent's HTTP readers do, so no other refresh loop
//! calls AWS. A file is rewritten only when its rendered content changes, and the hooks
//! (`--notify`, `--on-change`) run once per round that changed files. A failed read keeps the
//! old file.
//!
//! Exit codes: 64 bad flags or specs, 73 a target that cannot be written (not a memory
//! filesystem, no permission), 78 a reference that cannot be resolved. Messages name the file,
//! the reference and why, never a value.

pub(crate) mod annotations;
pub(crate) mod files;
mod hooks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::fetch::{describe, fetch_all, Fetcher, SourceChoice};
use crate::backend::Key;
use crate::config::{parse_file_mode, Config, Env, FileContent, FileEntry, DEFAULT_FILE_MODE};
use crate::placeholder::{extract, extract_bytes, Piece, Template};
use crate::EXIT_USAGE;
pub use files::Target;
pub use hooks::Hooks;

/// A target cannot be written (BSD `EX_CANTCREAT`).
pub const EXIT_CANNOT_WRITE: u8 = 73;
/// A reference could not be resolved (BSD `EX_CONFIG`), as in `exec`.
pub const EXIT_UNRESOLVED: u8 = 78;
/// The total time for one round of fetches unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `render`'s own flags.
#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Write every file once and exit (the init container); without it, keep them current.
    #[arg(long)]
    pub once: bool,
    /// A file: PATH=awssm:<id>[#<key>[#<version>]], PATH=awsparam:<name>[...],
    /// PATH=awsacm:<certificate-arn>#<certificate|chain|fullchain|private_key>, or PATH=text
    /// with ${awssm:...} in it. Repeatable.
    #[arg(long = "file", value_name = "PATH=SOURCE")]
    pub files: Vec<String>,
    /// A file filled from a template file: PATH=TEMPLATE. Repeatable.
    #[arg(long = "template", value_name = "PATH=TEMPLATE")]
    pub templates: Vec<String>,
    /// Kubernetes pod annotations as the downward API writes them; keys
    /// secrets-agent.io/file.<name>.{path,source,mode,uid,gid}.
    #[arg(long, value_name = "FILE")]
    pub from_annotations: Option<PathBuf>,
    /// Mode of the files given by --file and --template (octal; default 0400).
    #[arg(long, value_name = "OCTAL")]
    pub mode: Option<String>,
    /// Owner of the files given by --file and --template (numeric).
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group of the files given by --file and --template (numeric).
    #[arg(long)]
    pub gid: Option<u32>,
    /// Write to any filesystem, not only tmpfs or ramfs.
    #[arg(long)]
    pub allow_disk: bool,
    /// Print each file with its mode and the references it needs (no values), then exit 0;
    /// nothing is fetched or written.
    #[arg(long)]
    pub dry_run: bool,
    /// Where values come from.
    #[arg(long, value_enum, default_value = "auto")]
    pub source: SourceChoice,
    /// Seconds for one round of fetches (default 10).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// After a change, send SIGNAL to the process whose pid is in PIDFILE (SIGHUP:/run/app.pid),
    /// or to the processes named NAME (SIGHUP:nginx, in a shared process namespace). Repeatable.
    #[arg(long, value_name = "SIGNAL:PIDFILE|NAME")]
    pub notify: Vec<String>,
    /// After a change, run CMD with `sh -c` (SECRETS_AGENT_CHANGED_FILES lists the files).
    /// Repeatable.
    #[arg(long, value_name = "CMD")]
    pub on_change: Vec<String>,
}

/// One file: where, how, and what goes in it.
#[derive(Debug, Clone)]
pub struct FileSpec {
    pub target: Target,
    pub template: Template,
    /// Where the spec was given, for messages: `--file`, `[[files]] #2`, an annotation.
    pub origin: String,
}

impl FileSpec {
    pub(crate) fn from_entry(entry: &FileEntry, origin: String) -> Result<FileSpec, String> {
        let at = format!("{} ({origin})", entry.path.display());
        let template = match &entry.content {
            FileContent::Source(s) => match Template::parse(s) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    return Err(format!(
                        "{at}: the source holds no placeholder; give awssm:<id>[#<key>], \
                         awsparam:<name>, awsacm:<arn>#<part> or a text with ${{awssm:...}}"
                    ))
                }
                Err(e) => return Err(format!("{at}: {e}")),
            },
            FileContent::Template(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("{at}: cannot read the template {}: {e}", p.display()))?;
                match Template::parse(&text) {
                    Ok(Some(t)) => t,
                    Ok(None) => Template(vec![Piece::Text(text)]),
                    Err(e) => return Err(format!("{at}: template {}: {e}", p.display())),
                }
            }
        };
        Ok(FileSpec {
            target: Target {
                path: entry.path.clone(),
                mode: entry.mode,
                uid: entry.uid,
                gid: entry.gid,
                allow_disk: entry.allow_disk,
            },
            template,
            origin,
        })
    }

    /// The keys this file needs.
    fn keys(&self) -> impl Iterator<Item = &Key> {
        self.template.refs().map(|r| &r.key)
    }

    /// The file's content from the answer bodies. A lone reference is its value's bytes (a
    /// binary secret as is); a template is text.
    fn render(&self, bodies: &HashMap<Key, Bytes>) -> Result<Vec<u8>, String> {
        let body = |key: &Key| bodies.get(key).ok_or_else(|| "no answer".to_string());
        if let [Piece::Ref(r)] = self.template.0.as_slice() {
            return extract_bytes(r, body(&r.key)?).map_err(|e| format!("{r}: {e}"));
        }
        self.template
            .fill(|r| extract(r, body(&r.key)?).map_err(|e| format!("{r}: {e}")))
            .map(String::into_bytes)
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.target.path.display(), self.origin)
    }
}

/// The specs from the config, the flags and the annotations file; every problem at once.
pub fn specs(args: &Args, config: &Config) -> Result<Vec<FileSpec>, Vec<String>> {
    let mut problems = Vec::new();
    let mut entries: Vec<(FileEntry, String)> = config
        .files
        .iter()
        .enumerate()
        .map(|(i, e)| (e.clone(), format!("[[files]] #{}", i + 1)))
        .collect();
    let mode = match &args.mode {
        None => DEFAULT_FILE_MODE,
        Some(m) => parse_file_mode(m).unwrap_or_else(|e| {
            problems.push(format!("--mode: {e}"));
            DEFAULT_FILE_MODE
        }),
    };
    let flags = args
        .files
        .iter()
        .map(|f| ("--file", f))
        .chain(args.templates.iter().map(|t| ("--template", t)));
    for (flag, value) in flags {
        let Some((path, what)) = value
            .split_once('=')
            .filter(|(p, w)| !p.is_empty() && !w.is_empty())
        else {
            problems.push(format!(
                "{flag} {value:?}: expected PATH=SOURCE, e.g. /run/secrets/db=awssm:db#password"
            ));
            continue;
        };
        let content = if flag == "--file" {
            FileContent::Source(what.to_string())
        } else {
            FileContent::Template(PathBuf::from(what))
        };
        entries.push((
            FileEntry {
                path: PathBuf::from(path),
                content,
                mode,
                uid: args.uid,
                gid: args.gid,
                allow_disk: false,
            },
            flag.to_string(),
        ));
    }
    if let Some(file) = &args.from_annotations {
        match std::fs::read_to_string(file) {
            Ok(text) => match annotations::entries(&text) {
                Ok(found) => entries.extend(found.into_iter().map(|(name, e)| (e, name))),
                Err(ps) => problems.extend(
                    ps.into_iter()
                        .map(|p| format!("--from-annotations {}: {p}", file.display())),
                ),
            },
            Err(e) => problems.push(format!(
                "--from-annotations {}: cannot be read: {e}",
                file.display()
            )),
        }
    }
    let mut specs = Vec::new();
    // Each file by what it is on disk (its folder's links resolved) and the path it was first
    // named by: two paths through a linked folder would overwrite each other.
    let mut seen: HashMap<PathBuf, PathBuf> = HashMap::new();
    for (mut entry, origin) in entries {
        entry.allow_disk |= args.allow_disk;
        if let Some(problem) = files::path_problem(&entry.path) {
            problems.push(format!("{} ({origin}): {problem}", entry.path.display()));
            continue;
        }
        let target = on_disk(&entry.path);
        if let Some(first) = seen.get(&target) {
            problems.push(if *first == entry.path {
                format!(
                    "{} ({origin}): the same path is given twice; each file needs one spec",
                    entry.path.display()
                )
            } else {
                format!(
                    "{} ({origin}): the same file as {} ({}, through a linked folder); each \
                     file needs one spec",
                    entry.path.display(),
                    first.display(),
                    target.display()
                )
            });
            continue;
        }
        seen.insert(target, entry.path.clone());
        match FileSpec::from_entry(&entry, origin) {
            Ok(s) => specs.push(s),
            Err(p) => problems.push(p),
        }
    }
    if specs.is_empty() && problems.is_empty() {
        problems.push(
            "no files to render: give --file PATH=SOURCE, --template PATH=TEMPLATE, \
             --from-annotations FILE or [[files]] in the config"
                .into(),
        );
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(problems)
    }
}

/// Why a round failed, with the exit code it means.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub problems: Vec<String>,
}

/// Refuses targets off memory filesystems (unless allowed).
pub fn check_targets(specs: &[FileSpec]) -> Result<(), Failure> {
    let problems: Vec<String> = specs
        .iter()
        .filter_map(|s| files::check_memory(&s.target).err())
        .map(|e| e.to_string())
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            code: EXIT_CANNOT_WRITE,
            problems,
        })
    }
}

/// Every distinct key the specs need, in order of appearance.
fn all_keys(specs: &[FileSpec]) -> Vec<Key> {
    let mut keys: Vec<Key> = Vec::new();
    for k in specs.iter().flat_map(FileSpec::keys) {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    keys
}

/// One round: fetch every key, render every file, write them all or none.
pub async fn render_once(
    specs: &[FileSpec],
    fetcher: Arc<Fetcher>,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, Failure> {
    let answers = fetch_all(fetcher, all_keys(specs), timeout).await;
    let mut problems = Vec::new();
    let mut bodies = HashMap::new();
    for spec in specs {
        for r in spec.template.refs() {
            match answers.get(&r.key) {
                Some(Ok(b)) => {
                    bodies.insert(r.key.clone(), b.clone());
                }
                Some(Err(e)) => {
                    problems.push(format!("{}: {r}: {}", spec.describe(), describe(e, false)))
                }
                None => problems.push(format!(
                    "{}: {r}: no answer within the {} s timeout (--timeout sets it)",
                    spec.describe(),
                    timeout.as_secs()
                )),
            }
        }
    }
    problems.dedup();
    let mut contents = Vec::new();
    if problems.is_empty() {
        for spec in specs {
            match spec.render(&bodies) {
                Ok(c) => contents.push(c),
                Err(e) => problems.push(format!("{}: {e}", spec.describe())),
            }
        }
    }
    if !problems.is_empty() {
        return Err(Failure {
            code: EXIT_UNRESOLVED,
            problems,
        });
    }
    let writes = specs
        .iter()
        .map(|s| &s.target)
        .zip(contents.iter().map(Vec::as_slice));
    files::Staged::write(writes)
        .and_then(files::Staged::commit)
        .map_err(|e| Failure {
            code: EXIT_CANNOT_WRITE,
            problems: vec![e.to_string()],
        })?;
    Ok(contents)
}

/// How often the watcher reads its keys: often enough that a read lands soon after the
/// refresh-ahead point (`ratio` of the TTL), so a rotation reaches the file within one TTL.
pub fn watch_interval(config: &Config) -> Duration {
    let ttl = config.secrets_ttl.min(config.parameters_ttl);
    ttl.mul_f64((1.0 - config.refresh_ratio).max(0.05) / 2.0)
        .clamp(Duration::from_millis(100), Duration::from_secs(30))
}

/// Keeps the files current until `shutdown` resolves. `written` is what each file holds now
/// (`None`: not written yet), in the order of `specs`.
pub async fn watch(
    specs: Vec<FileSpec>,
    fetcher: Arc<Fetcher>,
    hooks: Hooks,
    interval: Duration,
    timeout: Duration,
    mut written: Vec<Option<Vec<u8>>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    written.resize(specs.len(), None);
    let keys = all_keys(&specs);
    // The last failure per file, so a lasting one is logged once, not every round.
    let mut failing: Vec<Option<String>> = vec![None; specs.len()];
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let answers = fetch_all(fetcher.clone(), keys.clone(), timeout).await;
        let bodies: HashMap<Key, Bytes> = answers
            .iter()
            .filter_map(|(k, r)| Some((k.clone(), r.as_ref().ok()?.clone())))
            .collect();
        let mut changed = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let content = spec.keys().find_map(|k| match answers.get(k) {
                Some(Err(e)) => Some(Err(format!("{}: {}", k.id, describe(e, false)))),
                None => Some(Err(format!(
                    "{}: no answer within {} s",
                    k.id,
                    timeout.as_secs()
                ))),
                Some(Ok(_)) => None,
            });
            let content = content.unwrap_or_else(|| spec.render(&bodies));
            let result = match content {
                // Unchanged, and still there (a deleted file is put back).
                Ok(c)
                    if written[i].as_deref() == Some(c.as_slice()) && spec.target.path.exists() =>
                {
                    Ok(None)
                }
                Ok(c) => files::Staged::write([(&spec.target, c.as_slice())])
                    .and_then(files::Staged::commit)
                    .map(|()| Some(c))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match result {
                Ok(new) => {
                    if failing[i].take().is_some() {
                        tracing::info!(file = ?spec.target.path, "file current again");
                    }
                    if let Some(c) = new {
                        tracing::info!(file = ?spec.target.path, "file written");
                        written[i] = Some(c);
                        changed.push(spec.target.path.as_path());
                    }
                }
                Err(e) => {
                    if failing[i].as_deref() != Some(e.as_str()) {
                        // Names and errors in Debug form: escaped, never a value.
                        tracing::warn!(file = ?spec.target.path, error = ?e, "cannot update the file; it keeps its last content");
                        failing[i] = Some(e);
                    }
                }
            }
        }
        if !changed.is_empty() && !hooks.is_empty() {
            hooks.run(&changed).await;
        }
    }
}

/// For the serving agent with `[[files]]`: checks the specs and their targets now (a problem
/// stops the start), and returns the watcher to run beside the server. It reads through the
/// server's own cache, so the files and the HTTP answers share entries and refreshes. Files
/// are written on its first round, and retried every round until they can be.
pub fn serve_files(
    config: &Config,
    cache: crate::cache::Cache<crate::backend::AwsBackend>,
) -> Result<Option<impl std::future::Future<Output = ()>>, String> {
    if config.files.is_empty() {
        return Ok(None);
    }
    let specs = specs(&Args::default(), config).map_err(|p| p.join("; "))?;
    check_targets(&specs).map_err(|f| f.problems.join("; "))?;
    if config.caching_disabled() || config.secrets_ttl.is_zero() || config.parameters_ttl.is_zero()
    {
        return Err(
            "[[files]] are kept current by the cache's refresh: set cache_size and \
                    ttl_seconds above 0"
                .into(),
        );
    }
    let interval = watch_interval(config);
    tracing::info!(
        files = specs.len(),
        interval_ms = interval.as_millis() as u64,
        "keeping [[files]] current"
    );
    Ok(Some(watch(
        specs,
        Arc::new(Fetcher::Cached(cache)),
        Hooks::default(),
        interval,
        DEFAULT_TIMEOUT,
        Vec::new(),
        std::future::pending(),
    )))
}

/// Runs `render`; returns the exit code.
pub fn run(args: Args, config: Result<Config, String>, env: &Env) -> u8 {
    let usage = |problems: Vec<String>| {
        for p in problems {
            eprintln!("secrets-agent render: {p}");
        }
        EXIT_USAGE
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => return usage(vec![e]),
    };
    let specs = match specs(&args, &config) {
        Ok(s) => s,
        Err(p) => return usage(p),
    };
    if args.dry_run {
        for spec in &specs {
            let refs: Vec<String> = spec.template.refs().map(|r| r.to_string()).collect();
            println!(
                "{} (mode {:04o}, {}) <- {}",
                spec.target.path.display(),
                spec.target.mode,
                spec.origin,
                refs.join(", ")
            );
        }
        return 0;
    }
    let hooks = match Hooks::new(&args.notify, &args.on_change) {
        Ok(h) => h,
        Err(p) => return usage(p),
    };
    let timeout = match args.timeout {
        Some(0) => return usage(vec!["--timeout must be at least 1 second".into()]),
        Some(s) => Duration::from_secs(s),
        None => DEFAULT_TIMEOUT,
    };
    if !args.once && config.caching_disabled() {
        return usage(vec![
            "watching files follows the cache's refresh, and caching is disabled: set \
             cache_size and ttl_seconds above 0, or use --once"
                .into(),
        ]);
    }
    if !args.once && (config.secrets_ttl.is_zero() || config.parameters_ttl.is_zero()) {
        return usage(vec![
            "watching files follows the cache's refresh: a TTL of 0 would call AWS every \
             round; set ttl_seconds above 0, or use --once"
                .into(),
        ]);
    }
    crate::logging::init(&config, env, false);
    if let Err(f) = check_targets(&specs) {
        return fail(f);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("secrets-agent render: cannot start the async runtime: {e}");
            return EXIT_CANNOT_WRITE;
        }
    };
    let source = match args.source.for_keys(specs.iter().flat_map(FileSpec::keys)) {
        Ok(s) => s,
        Err(e) => return usage(vec![e]),
    };
    let code = runtime.block_on(async {
        let fetcher = match Fetcher::choose(source, &config, env) {
            Ok(f) => f,
            Err(e) => return usage(vec![e]),
        };
        let fetcher = Arc::new(match fetcher {
            // Watching reads through a cache of our own, so AWS is called as the cache decides.
            Fetcher::Aws(backend) if !args.once => {
                let metrics = Arc::new(crate::metrics::Metrics::default());
                Fetcher::Cached(crate::cache::Cache::new(
                    backend,
                    crate::cache::Settings::from_config(&config),
                    Arc::new(crate::cache::SystemClock),
                    metrics,
                ))
            }
            f => f,
        });
        let written = match render_once(&specs, fetcher.clone(), timeout).await {
            Ok(w) => w,
            Err(f) => return fail(f),
        };
        tracing::info!(files = specs.len(), "files written");
        if args.once {
            return 0;
        }
        let interval = watch_interval(&config);
        tracing::info!(
            interval_ms = interval.as_millis() as u64,
            "watching for changes"
        );
        watch(
            specs,
            fetcher.clone(),
            hooks,
            interval,
            timeout,
            written.into_iter().map(Some).collect(),
            crate::signals::shutdown(),
        )
        .await;
        if let Fetcher::Cached(c) = &*fetcher {
            c.shutdown();
        }
        0
    });
    // A resolver thread stuck on DNS must not delay the exit.
    runtime.shutdown_background();
    code
}

fn fail(f: Failure) -> u8 {
    for p in &f.problems {
        eprintln!("secrets-agent render: {p}");
    }
    eprintln!("secrets-agent render: no file was written or changed");
    f.code
}

/// The file `path` names, its folder's links resolved; `path` itself where the folder does not
/// exist yet.
fn on_disk(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(files: &[&str]) -> Args {
        Args {
            files: files.iter().map(|s| s.to_string()).collect(),
            ..Args::default()
        }
    }

    /// Hostile round 2, item 9: two files naming one target through a linked folder silently
    /// overwrote each other.
    #[test]
    fn two_paths_to_one_file_through_a_linked_folder_are_refused() {
        let dir = std::env::temp_dir().join(format!("render-link-{}", std::process::id()));
        let real = dir.join("real");
        std::fs::create_dir_all(&real).unwrap();
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let a = args(&[
            &format!("{}/db=awssm:a", real.display()),
            &format!("{}/db=awssm:b", link.display()),
            &format!("{}/other=awssm:c", link.display()),
        ]);
        let e = specs(&a, &Config::default()).unwrap_err().join("\n");
        assert!(
            e.contains(&format!(
                "{}/db (--file): the same file as {}/db",
                link.display(),
                real.display()
            )),
            "{e}"
        );
        assert!(!e.contains("other"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flag_specs_parse_and_bad_ones_are_named() {
        let mut a = args(&[
            "/run/s/db=awssm:db#password",
            "/run/s/url=postgres://${awssm:db#user}@h",
        ]);
        a.mode = Some("0440".into());
        a.uid = Some(7);
        let s = specs(&a, &Config::default()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].target.mode, 0o440);
        assert_eq!(s[0].target.uid, Some(7));
        assert_eq!(s[1].template.refs().count(), 1);

        let mut a = args(&[
            "relative=awssm:x",
            "/a",
            "/b=plain text",
            "/c=awssm:",
            "/d=awssm:x",
            "/d=awssm:y",
            "/dev/shm/t/app/../escaped=awssm:x",
        ]);
        a.mode = Some("999".into());
        let e = specs(&a, &Config::default()).unwrap_err().join("\n");
        for want in [
            "--mode: \"999\" is not a file mode",
            "relative (--file): must be an absolute path",
            "/dev/shm/t/app/../escaped (--file): must not contain '..'",
            "--file \"/a\": expected PATH=SOURCE",
            "/b (--file): the source holds no placeholder",
            "/c (--file): malformed placeholder",
            "/d (--file): the same path is given twice",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
        let e = specs(&Args::default(), &Config::default())
            .unwrap_err()
            .join("\n");
        assert!(e.contains("no files to render"), "{e}");
    }

    #[test]
    fn a_lone_reference_is_bytes_and_a_template_is_text() {
        let spec = |src: &str| {
            FileSpec::from_entry(
                &FileEntry {
                    path: "/x".into(),
                    content: FileContent::Source(src.into()),
                    mode: 0o400,
                    uid: None,
                    gid: None,
                    allow_disk: false,
                },
                "test".into(),
            )
            .unwrap()
        };
        let key = Key::secret("bin", None, None);
        let bodies: HashMap<Key, Bytes> = [(
            key,
            Bytes::from(serde_json::json!({"SecretBinary": "/wA="}).to_string()),
        )]
        .into();
        assert_eq!(spec("awssm:bin").render(&bodies).unwrap(), [0xff, 0]);
        let e = spec("k=${awssm:bin}").render(&bodies).unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn interval_follows_the_ttl() {
        let mut c = Config::default();
        assert_eq!(watch_interval(&c), Duration::from_secs(30));
        c.secrets_ttl = Duration::from_secs(2);
        assert_eq!(watch_interval(&c), Duration::from_millis(200));
        c.secrets_ttl = Duration::from_millis(100);
        assert_eq!(watch_interval(&c), Duration::from_millis(100));
    }
}
