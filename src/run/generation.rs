//! The node's generation (incarnation) number, persisted in `data_dir`.
//!
//! Every start uses a generation greater than any earlier one, so peers
//! see a restart as a new incarnation that supersedes the old instantly.
//! The next generation is `max(stored + 1, wall-clock seconds)`: the file
//! makes it strictly increasing, and the clock keeps it increasing even
//! when the file is lost (a container without a volume) or cannot be
//! written (disk full), in which case the node still runs and the failure
//! is reported.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why the generation file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The file exists but does not hold a number.
    #[error("{path} does not hold a generation number ({content:?}); remove it to start over")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What it holds (truncated).
        content: String,
    },
    /// Reading or writing failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// read, write, sync...
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The generation file inside `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("generation")
}

/// Reads the stored generation, `Ok(None)` when there is none yet.
pub fn read(data_dir: &Path) -> Result<Option<u64>, GenerationError> {
    let p = path(data_dir);
    match std::fs::read_to_string(&p) {
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| GenerationError::Corrupt {
                path: p,
                content: s.chars().take(40).collect(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(GenerationError::Io {
            action: "read",
            path: p,
            source,
        }),
    }
}

/// Writes `generation` durably: temp file, fsync, rename, fsync of the
/// directory, so a crash leaves either the old or the new value.
pub fn write(data_dir: &Path, generation: u64) -> Result<(), GenerationError> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| GenerationError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(data_dir).map_err(io("create", data_dir))?;
    let tmp = data_dir.join("generation.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    writeln!(f, "{generation}").map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    let dest = path(data_dir);
    std::fs::rename(&tmp, &dest).map_err(io("rename into", &dest))?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", data_dir))?;
    Ok(())
}

/// The generation for this start and whether it was persisted. A stored
/// value that is corrupt or unreadable is reported, not fatal.
pub fn next(data_dir: &Path, wall_clock_secs: u64) -> (u64, Vec<GenerationError>) {
    let mut problems = Vec::new();
    let stored = read(data_dir).unwrap_or_else(|e| {
        problems.push(e);
        None
    });
    let generation = stored
        .map_or(0, |g| g.saturating_add(1))
        .max(wall_clock_secs)
        .max(1);
    if let Err(e) = write(data_dir, generation) {
        problems.push(e);
    }
    (generation, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increases_across_starts() {
        let d = tempfile::tempdir().unwrap();
        let (g1, p) = next(d.path(), 0);
        assert!(p.is_empty());
        let (g2, _) = next(d.path(), 0);
        let (g3, _) = next(d.path(), 0);
        assert_eq!((g1, g2, g3), (1, 2, 3));
        // The wall clock lifts it when it is ahead, the file when it is not.
        let (g4, _) = next(d.path(), 1_700_000_000);
        assert_eq!(g4, 1_700_000_000);
        let (g5, _) = next(d.path(), 1_600_000_000);
        assert_eq!(g5, 1_700_000_001);
    }

    #[test]
    fn corrupt_file_is_reported_and_replaced() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(path(d.path()), "banana").unwrap();
        let (g, p) = next(d.path(), 42);
        assert_eq!(g, 42);
        assert!(matches!(p[0], GenerationError::Corrupt { .. }), "{p:?}");
        assert_eq!(read(d.path()).unwrap(), Some(42));
    }

    #[test]
    fn unwritable_dir_still_yields_a_generation() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let (g, p) = next(&file, 7);
        assert_eq!(g, 7);
        assert!(!p.is_empty());
        assert!(
            p.iter().any(|e| e.to_string().contains("not-a-dir")),
            "{p:?}"
        );
    }
}
