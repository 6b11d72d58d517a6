//! `secrets-agent install DIR`: copies this binary to DIR/secrets-agent (mode 0755), atomically.
//! The webhook's env mode runs it in an init container, so that the application containers can
//! start under `secrets-agent exec` from a shared memory volume whatever their image holds.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::EXIT_USAGE;

/// Exit code 73 (EX_CANTCREAT): the copy could not be written.
const EXIT_CANTCREAT: u8 = 73;

pub fn run(dir: &Path) -> u8 {
    if !dir.is_dir() {
        eprintln!(
            "secrets-agent install: {} is not a folder; mount a volume there first",
            dir.display()
        );
        return EXIT_USAGE;
    }
    match copy_self(dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "secrets-agent install: cannot write {}/secrets-agent: {e}",
                dir.display()
            );
            EXIT_CANTCREAT
        }
    }
}

fn copy_self(dir: &Path) -> io::Result<()> {
    let me = std::env::current_exe()?;
    let tmp = dir.join(".secrets-agent.tmp");
    fs::copy(&me, &tmp)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, dir.join("secrets-agent"))
}
