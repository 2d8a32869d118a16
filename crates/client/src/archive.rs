//! Deterministic tar.gz packing of a model folder or file, so identical content hashes the same.
//!
//! Entries are written in sorted order with mtime 0, uid/gid 0, mode 0644 (files) or 0755
//! (folders) and no owner names; the gzip header carries no name and mtime 0. Symbolic links are
//! refused rather than followed, so nothing outside the tree can end up in an upload.

use flate2::{Compression, GzBuilder};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};
use tempfile::{SpooledData, SpooledTempFile};

/// Archives up to this size stay in memory; larger ones spill to an unnamed temp file.
pub const SPOOL_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// Why a folder or file could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}: no such file or folder", .0.display())]
    NotFound(PathBuf),
    #[error("{}: is a symbolic link; Sluice uploads only regular files and folders (copy the link's target into the folder instead)", .0.display())]
    Symlink(PathBuf),
    #[error("{}: is neither a regular file nor a folder", .0.display())]
    NotAFile(PathBuf),
    #[error("{}: the name is not valid UTF-8", .0.display())]
    NonUtf8Name(PathBuf),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_owned(), source }
}

/// What went into an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// The single top-level entry: the folder's or file's basename.
    pub top: String,
    /// Regular files packed.
    pub files: u64,
    /// Their total size, before compression.
    pub bytes: u64,
}

/// A finished archive, in memory or in a temp file positioned at its start.
#[derive(Debug)]
pub enum PackedArchive {
    Memory(Vec<u8>),
    File { file: File, len: u64 },
}

/// Packs `root` (a folder or a single file) into memory or, past [`SPOOL_LIMIT_BYTES`], a temp
/// file. Blocking: call it from `spawn_blocking`.
pub fn pack(root: &Path) -> Result<(PackedArchive, ArchiveSummary), ArchiveError> {
    let spool = SpooledTempFile::new(SPOOL_LIMIT_BYTES);
    let (spool, summary) = write_archive(root, spool)?;
    let tmp = Path::new("<temp file>");
    let packed = match spool.into_inner() {
        SpooledData::InMemory(cursor) => PackedArchive::Memory(cursor.into_inner()),
        SpooledData::OnDisk(mut file) => {
            let len = file.stream_position().map_err(io_err(tmp))?;
            file.rewind().map_err(io_err(tmp))?;
            PackedArchive::File { file, len }
        }
    };
    Ok((packed, summary))
}

/// Writes the deterministic tar.gz of `root` to `out` and returns `out` with a summary.
pub fn write_archive<W: Write>(root: &Path, out: W) -> Result<(W, ArchiveSummary), ArchiveError> {
    let meta = std::fs::symlink_metadata(root).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ArchiveError::NotFound(root.to_owned()),
        _ => ArchiveError::Io { path: root.to_owned(), source: e },
    })?;
    let top = top_name(root)?;
    let gz = GzBuilder::new().mtime(0).write(out, Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut summary = ArchiveSummary { top: top.clone(), files: 0, bytes: 0 };
    if meta.file_type().is_symlink() {
        return Err(ArchiveError::Symlink(root.to_owned()));
    } else if meta.is_file() {
        append_file(&mut tar, root, &top, &mut summary)?;
    } else if meta.is_dir() {
        append_tree(&mut tar, root, &top, &mut summary)?;
    } else {
        return Err(ArchiveError::NotAFile(root.to_owned()));
    }
    let out = tar.into_inner().and_then(|gz| gz.finish()).map_err(io_err(Path::new("<archive>")))?;
    Ok((out, summary))
}

/// The basename of `root`, resolving `.` and `..` to the real folder's name.
fn top_name(root: &Path) -> Result<String, ArchiveError> {
    let name = match root.file_name() {
        Some(n) => n.to_owned(),
        None => {
            let abs = root.canonicalize().map_err(io_err(root))?;
            abs.file_name().map(|n| n.to_owned()).ok_or_else(|| ArchiveError::NotAFile(abs.clone()))?
        }
    };
    name.into_string().map_err(|_| ArchiveError::NonUtf8Name(root.to_owned()))
}

fn append_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    top: &str,
    summary: &mut ArchiveSummary,
) -> Result<(), ArchiveError> {
    // Sorted by name at each level: a stable depth-first order on every machine.
    let walk = walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_owned();
            ArchiveError::Io { path, source: e.into() }
        })?;
        let path = entry.path();
        let rel = path.strip_prefix(root).expect("walkdir yields paths under its root");
        let mut name = top.to_owned();
        for part in rel.components() {
            let part = part.as_os_str().to_str().ok_or_else(|| ArchiveError::NonUtf8Name(path.to_owned()))?;
            name.push('/');
            name.push_str(part);
        }
        let kind = entry.file_type();
        if kind.is_symlink() {
            return Err(ArchiveError::Symlink(path.to_owned()));
        } else if kind.is_dir() {
            let mut header = header(EntryType::Directory, 0, 0o755);
            tar.append_data(&mut header, format!("{name}/"), io::empty()).map_err(io_err(path))?;
        } else if kind.is_file() {
            append_file(tar, path, &name, summary)?;
        } else {
            return Err(ArchiveError::NotAFile(path.to_owned()));
        }
    }
    Ok(())
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
    summary: &mut ArchiveSummary,
) -> Result<(), ArchiveError> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let mut header = header(EntryType::Regular, len, 0o644);
    // `take` keeps the entry at the size in its header even if the file grows meanwhile.
    tar.append_data(&mut header, name, file.take(len)).map_err(io_err(path))?;
    summary.files += 1;
    summary.bytes += len;
    Ok(())
}

fn header(kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path) -> PathBuf {
        let root = dir.join("model");
        std::fs::create_dir_all(root.join("1/sub")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(root.join("config.pbtxt"), "name: \"iris\"\n").unwrap();
        std::fs::write(root.join("1/model.onnx"), vec![7u8; 10_000]).unwrap();
        std::fs::write(root.join("1/sub/b.txt"), "b").unwrap();
        std::fs::write(root.join("1/sub/a.txt"), "a").unwrap();
        root
    }

    fn pack_vec(root: &Path) -> (Vec<u8>, ArchiveSummary) {
        write_archive(root, Vec::new()).unwrap()
    }

    fn entries(bytes: &[u8]) -> Vec<(String, u32, u64, u64)> {
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn same_tree_gives_same_bytes() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (bytes_a, sum_a) = pack_vec(&tree(a.path()));
        // Same content written in another order, with other timestamps.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let root_b = b.path().join("model");
        std::fs::create_dir_all(root_b.join("empty")).unwrap();
        std::fs::create_dir_all(root_b.join("1/sub")).unwrap();
        std::fs::write(root_b.join("1/sub/a.txt"), "a").unwrap();
        std::fs::write(root_b.join("1/sub/b.txt"), "b").unwrap();
        std::fs::write(root_b.join("1/model.onnx"), vec![7u8; 10_000]).unwrap();
        std::fs::write(root_b.join("config.pbtxt"), "name: \"iris\"\n").unwrap();
        let (bytes_b, sum_b) = pack_vec(&root_b);
        assert_eq!(bytes_a, bytes_b);
        assert_eq!(sum_a, ArchiveSummary { top: "model".into(), files: 4, bytes: 10_000 + 13 + 2 });
        assert_eq!(sum_a, sum_b);
        assert_eq!(&bytes_a[4..8], &[0, 0, 0, 0], "gzip mtime is zero");
    }

    #[test]
    fn entries_are_sorted_and_normalised() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, _) = pack_vec(&tree(dir.path()));
        let got = entries(&bytes);
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "model/",
                "model/1/",
                "model/1/model.onnx",
                "model/1/sub/",
                "model/1/sub/a.txt",
                "model/1/sub/b.txt",
                "model/config.pbtxt",
                "model/empty/"
            ]
        );
        for (name, mode, mtime, uid) in &got {
            assert_eq!(*mode, if name.ends_with('/') { 0o755 } else { 0o644 }, "{name}");
            assert_eq!((*mtime, *uid), (0, 0), "{name}");
        }
    }

    #[test]
    fn a_single_file_is_its_own_top_entry() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.onnx");
        std::fs::write(&file, "onnx").unwrap();
        let (bytes, summary) = pack_vec(&file);
        assert_eq!(summary, ArchiveSummary { top: "model.onnx".into(), files: 1, bytes: 4 });
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut entry = ar.entries().unwrap().next().unwrap().unwrap();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        assert_eq!((entry.path().unwrap().to_str().unwrap(), text.as_str()), ("model.onnx", "onnx"));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = tree(dir.path());
        std::os::unix::fs::symlink("/etc/passwd", root.join("1/passwd")).unwrap();
        let err = write_archive(&root, Vec::new()).unwrap_err();
        assert!(matches!(&err, ArchiveError::Symlink(p) if p.ends_with("1/passwd")), "{err:?}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        assert!(matches!(write_archive(&link, Vec::new()), Err(ArchiveError::Symlink(_))));
    }

    #[test]
    fn missing_paths_say_so() {
        let err = write_archive(Path::new("/no/such/model"), Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "/no/such/model: no such file or folder");
    }

    #[test]
    fn pack_spills_nothing_for_small_trees() {
        let dir = tempfile::tempdir().unwrap();
        let root = tree(dir.path());
        let (packed, _) = pack(&root).unwrap();
        let PackedArchive::Memory(bytes) = packed else { panic!("small archive went to disk") };
        assert_eq!(bytes, pack_vec(&root).0);
    }
}
