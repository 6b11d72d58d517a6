//! Writing rendered files: memory filesystems only (unless allowed), directories created 0700,
//! and all-or-nothing atomic replacement (a temporary file in the target's directory, fsync,
//! rename, fsync of the directory), so a reader sees the old file or the new one, never a
//! partial, empty or mixed one.
//!
//! The filesystem type comes from `/proc/self/mountinfo` (the mount that holds the target's
//! nearest existing ancestor), which needs neither `unsafe` nor a crate for `statfs`.

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Filesystems that keep data in memory only.
pub const MEMORY_FILESYSTEMS: [&str; 2] = ["tmpfs", "ramfs"];

/// What is wrong with a target path, if anything: it must be absolute, and no `..` may take it
/// out of the folder it names (`/run/secrets/app/../../secrets-agent/token`).
pub fn path_problem(path: &Path) -> Option<&'static str> {
    if !path.is_absolute() {
        Some("must be an absolute path")
    } else if path.components().any(|c| c == Component::ParentDir) {
        Some("must not contain '..' (the file would leave its folder)")
    } else {
        None
    }
}

/// Where and how one file is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub allow_disk: bool,
}

/// Why a file could not be written: the path and the cause, never content.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "{path}: the filesystem there is {fs}, not tmpfs or ramfs, so the secret would reach a \
         disk; use a memory volume (emptyDir medium: Memory, /dev/shm) or pass --allow-disk"
    )]
    OnDisk { path: String, fs: String },
    #[error("{path}: cannot tell which filesystem holds it ({why}); --allow-disk skips the check")]
    UnknownFilesystem { path: String, why: String },
    #[error("{path}: {action}: {source}")]
    Io {
        path: String,
        action: &'static str,
        source: std::io::Error,
    },
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.display().to_string();
    move |source| WriteError::Io {
        path,
        action,
        source,
    }
}

/// Refuses a target whose filesystem is not a memory one, unless it allows disks.
pub fn check_memory(target: &Target) -> Result<(), WriteError> {
    if target.allow_disk {
        return Ok(());
    }
    let shown = || target.path.display().to_string();
    let unknown = |why: String| WriteError::UnknownFilesystem { path: shown(), why };
    let existing = nearest_existing(&target.path)
        .ok_or_else(|| unknown("no part of the path exists".into()))?;
    let real = existing
        .canonicalize()
        .map_err(|e| unknown(format!("{}: {e}", existing.display())))?;
    let table = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| unknown(format!("/proc/self/mountinfo: {e}")))?;
    let fs = filesystem_of(&table, &real)
        .ok_or_else(|| unknown("no mount in /proc/self/mountinfo holds it".into()))?;
    if MEMORY_FILESYSTEMS.contains(&fs.as_str()) {
        Ok(())
    } else {
        Err(WriteError::OnDisk { path: shown(), fs })
    }
}

fn nearest_existing(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

/// The filesystem type of the mount that holds `path` (canonical): the longest mount point that
/// is a prefix of it, the later line winning among equals (it is mounted on top).
fn filesystem_of(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        // "36 35 98:0 /root /mnt/point opts [optional fields...] - fstype source superopts"
        let (left, right) = line.split_once(" - ")?;
        let mount_point = PathBuf::from(unescape(left.split(' ').nth(4)?));
        let fs = right.split(' ').next()?.to_string();
        if path.starts_with(&mount_point) {
            let depth = mount_point.components().count();
            if best.as_ref().map_or(true, |(d, _)| depth >= *d) {
                best = Some((depth, fs));
            }
        }
    }
    best.map(|(_, fs)| fs)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let n = u16::from(b[i + 1] - b'0') * 64
                + u16::from(b[i + 2] - b'0') * 8
                + u16::from(b[i + 3] - b'0');
            out.push(n as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    OsString::from_vec(out)
}

/// Files written to temporaries, not yet in place. Dropped without `commit`, it removes its
/// temporaries and the directories it created.
pub struct Staged {
    files: Vec<(PathBuf, PathBuf)>,
    created_dirs: Vec<PathBuf>,
}

impl Staged {
    /// Writes every `(target, content)` to a temporary in the target's directory (created 0700,
    /// owned like the file), with the target's owner and mode, and fsyncs it. Nothing replaces
    /// a target yet.
    pub fn write<'a>(
        files: impl IntoIterator<Item = (&'a Target, &'a [u8])>,
    ) -> Result<Staged, WriteError> {
        let mut staged = Staged {
            files: Vec::new(),
            created_dirs: Vec::new(),
        };
        for (target, content) in files {
            staged.stage(target, content)?;
        }
        Ok(staged)
    }

    fn stage(&mut self, target: &Target, content: &[u8]) -> Result<(), WriteError> {
        let path = &target.path;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(WriteError::Io {
                path: path.display().to_string(),
                action: "not a file path",
                source: std::io::ErrorKind::InvalidInput.into(),
            });
        };
        self.create_dirs(dir, target)?;
        static N: AtomicU64 = AtomicU64::new(0);
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join(tmp_name);
        // 0600 while it is written; the target's mode once its owner is set.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(path, "cannot create a temporary file beside it"))?;
        // Recorded before anything else can fail, so a failure removes it.
        self.files.push((tmp, path.clone()));
        file.write_all(content)
            .map_err(io(path, "cannot write the temporary file"))?;
        if target.uid.is_some() || target.gid.is_some() {
            std::os::unix::fs::fchown(&file, target.uid, target.gid).map_err(io(
                path,
                "cannot set the owner (uid/gid need root or CAP_CHOWN)",
            ))?;
        }
        file.set_permissions(Permissions::from_mode(target.mode))
            .map_err(io(path, "cannot set the mode"))?;
        file.sync_all()
            .map_err(io(path, "cannot fsync the temporary file"))?;
        Ok(())
    }

    /// Creates the missing directories one level at a time, 0700 (0750 for a group-readable
    /// file, 0755 for a world-readable one), owned like the file (so an application running
    /// as that uid, or in that group, can reach it).
    fn create_dirs(&mut self, dir: &Path, target: &Target) -> Result<(), WriteError> {
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
        for d in missing.into_iter().rev() {
            if d.components().next_back() == Some(Component::RootDir) {
                continue;
            }
            let reach = (target.mode & 0o044) | ((target.mode & 0o044) >> 2);
            DirBuilder::new()
                .mode(0o700 | reach)
                .create(d)
                .map_err(io(d, "cannot create the directory"))?;
            self.created_dirs.push(d.to_path_buf());
            if target.uid.is_some() || target.gid.is_some() {
                std::os::unix::fs::chown(d, target.uid, target.gid)
                    .map_err(io(d, "cannot set the directory's owner"))?;
            }
        }
        Ok(())
    }

    /// Renames every temporary over its target and fsyncs the directories.
    pub fn commit(mut self) -> Result<(), WriteError> {
        let files = std::mem::take(&mut self.files);
        self.created_dirs.clear();
        let mut result = Ok(());
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (tmp, target) in files {
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
                continue;
            }
            match std::fs::rename(&tmp, &target) {
                Ok(()) => {
                    if let Some(d) = target.parent() {
                        if !dirs.iter().any(|x| x == d) {
                            dirs.push(d.to_path_buf());
                        }
                    }
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    result = Err(io(&target, "cannot rename the temporary file over it")(e));
                }
            }
        }
        // The renames are durable once the directories are synced (tmpfs ignores it).
        for d in dirs {
            if let Ok(f) = File::open(&d) {
                let _ = f.sync_all();
            }
        }
        result
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (tmp, _) in &self.files {
            let _ = std::fs::remove_file(tmp);
        }
        for d in self.created_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /dev/shm rw,nosuid,nodev shared:2 - tmpfs tmpfs rw
24 22 0:22 / /run rw,nosuid master:3 - tmpfs tmpfs rw,mode=755
25 24 8:1 /data /run/disk rw shared:4 - ext4 /dev/sda1 rw
26 22 0:23 / /mnt/my\\040dir rw - ramfs ramfs rw
27 22 8:2 / /dev/shm rw - xfs /dev/sdb rw
28 22 0:40 / /var/lib/kubelet/pods/x/volumes/kubernetes.io~empty-dir/s rw - tmpfs tmpfs rw
";

    #[test]
    fn filesystem_is_the_longest_and_latest_mount() {
        for (path, want) in [
            ("/etc/passwd", "ext4"),
            ("/run/secrets/db", "tmpfs"),
            ("/run/disk/x", "ext4"),
            ("/runner", "ext4"),
            ("/mnt/my dir/x", "ramfs"),
            // Mounted over the tmpfs, later in the table.
            ("/dev/shm/x", "xfs"),
            (
                "/var/lib/kubelet/pods/x/volumes/kubernetes.io~empty-dir/s/f",
                "tmpfs",
            ),
        ] {
            assert_eq!(
                filesystem_of(MOUNTINFO, Path::new(path)).as_deref(),
                Some(want),
                "{path}"
            );
        }
    }

    fn target(path: PathBuf) -> Target {
        Target {
            path,
            mode: 0o400,
            uid: None,
            gid: None,
            allow_disk: false,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = PathBuf::from(format!("/dev/shm/sa-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn memory_targets_pass_and_disk_targets_are_refused() {
        check_memory(&target("/dev/shm/not/yet/there".into())).unwrap();
        let disk = target(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("x"));
        let e = check_memory(&disk).unwrap_err().to_string();
        assert!(
            e.contains("not tmpfs or ramfs") && e.contains("--allow-disk"),
            "{e}"
        );
        check_memory(&Target {
            allow_disk: true,
            ..disk
        })
        .unwrap();
    }

    #[test]
    fn staged_files_appear_only_on_commit_with_mode_and_dirs_0700() {
        let d = scratch("commit");
        let t = target(d.join("a/b/secret"));
        let staged = Staged::write([(&t, &b"value"[..])]).unwrap();
        assert!(!t.path.exists());
        staged.commit().unwrap();
        assert_eq!(std::fs::read(&t.path).unwrap(), b"value");
        let meta = std::fs::metadata(&t.path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o400);
        assert_eq!(
            std::fs::metadata(d.join("a")).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(d.join("a/b")).unwrap().mode() & 0o777,
            0o700
        );
        // A rewrite replaces the read-only file.
        Staged::write([(&t, &b"new"[..])])
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(std::fs::read(&t.path).unwrap(), b"new");
        let left: Vec<_> = std::fs::read_dir(d.join("a/b")).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporaries left");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn directories_let_the_group_reach_a_group_readable_file() {
        let d = scratch("group");
        let t = Target {
            mode: 0o440,
            ..target(d.join("a/secret"))
        };
        Staged::write([(&t, &b"v"[..])]).unwrap().commit().unwrap();
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(d.join("a")), 0o750);
        assert_eq!(mode(d.join("a/secret")), 0o440);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failure_leaves_nothing_behind() {
        let d = scratch("fail");
        let good = target(d.join("new/dir/good"));
        // A directory where a parent must be: the second file cannot be staged.
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("blocker"), b"").unwrap();
        let bad = target(d.join("blocker/sub/file"));
        let e = Staged::write([(&good, &b"1"[..]), (&bad, &b"2"[..])])
            .err()
            .unwrap();
        assert!(e.to_string().contains("blocker"), "{e}");
        assert!(!d.join("new").exists(), "created directories removed");
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(left.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
