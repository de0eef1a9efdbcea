//! What lies inside the spool, which the collector must never take from: a
//! source that is the spool or inside it (or a recursive source holding
//! it) is refused when planned, and a path given on `--stdin` that reaches
//! into the spool is refused when taken.

use std::path::{Component, Path, PathBuf};

/// A source that is the spool or inside it would take the spool's own files
/// (renaming them onto themselves, forever); a recursive source holding the
/// spool would too. Both are refused before anything is touched.
pub(crate) fn refuse_overlap(spool: &Path, source: &Path, recursive: bool) -> Result<(), String> {
    let (spool_abs, source_abs) = (resolved(spool), resolved(source));
    if source_abs.starts_with(&spool_abs) {
        return Err(format!(
            "source {} is inside the spool {}: the collector would take the spool's own files; \
             give a folder outside the spool",
            source.display(),
            spool.display()
        ));
    }
    if recursive && spool_abs.starts_with(&source_abs) {
        return Err(format!(
            "the spool {} is inside the recursive source {}: the collector would take the \
             spool's own files; move the spool out or drop --recursive",
            spool.display(),
            source.display()
        ));
    }
    Ok(())
}

/// Whether the entry `path` names lies inside the spool `spool_abs` (the
/// spool's [`resolved`] path): its folder resolved through symlinks, `..`
/// and relative parts, its last part kept, since that entry itself is
/// what a move takes. A symlink beside the source pointing into the spool
/// is not inside (it is refused later as not a regular file); a path that
/// reaches `done/` through a symlinked folder or `..` is.
pub(crate) fn inside_spool(spool_abs: &Path, path: &Path) -> bool {
    let entry = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            resolved(dir).join(name)
        }
        // "/", "..", "a/..": a folder, never a file to take; judge the
        // whole path so that "spool/.." is not taken for inside.
        _ => resolved(path),
    };
    entry.starts_with(spool_abs)
}

/// The absolute path with symlinks resolved as far as the path exists, and
/// the rest (folders not made yet) normalised by hand.
pub(crate) fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(p) => out.push(p),
                    _ => {}
                }
            }
            return out;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_into_the_spool_are_inside_however_they_are_spelt() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let outside = dir.path().join("data");
        std::fs::create_dir_all(spool.join("done")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&spool, dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(spool.join("done/a"), outside.join("to-a")).unwrap();
        let spool_abs = resolved(&spool);
        let inside = |p: &Path| inside_spool(&spool_abs, p);
        assert!(inside(&spool.join("done/a")));
        assert!(
            inside(&spool.join("sending/ID/a")),
            "even where nothing exists"
        );
        assert!(inside(&outside.join("../spool/done/a")), "through ..");
        assert!(
            inside(&dir.path().join("link/done/a")),
            "through a symlinked folder"
        );
        assert!(!inside(&outside.join("a")));
        assert!(
            !inside(&outside.join("../spool-2/a")),
            "a name that only begins alike"
        );
        // The entry itself is a link beside the data: not inside (and
        // never followed: it is not a regular file).
        assert!(!inside(&outside.join("to-a")));
        assert!(!inside(&spool.join("..")), "the spool's parent");
        // The spool itself given through a symlink.
        let via_link = resolved(&dir.path().join("link"));
        assert!(inside_spool(&via_link, &spool.join("done/a")));
    }
}
