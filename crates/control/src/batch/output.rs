//! A job's files: the committed mini-batches' rows (`parts/<index>.rows`), the merge into
//! `output_file_name`, and the archive `job download` fetches. Every file appears whole or not
//! at all (written to a temporary name, synced, then renamed).

use std::io::Write;
use std::path::{Path, PathBuf};

/// `<job dir>/parts/<index>.rows`.
pub fn part_path(job_dir: &Path, idx: i64) -> PathBuf {
    job_dir.join("parts").join(format!("{idx}.rows"))
}

/// Writes `contents` to `target` through a temporary file in the same folder, synced before the
/// rename so the file survives a power cut once it has its name.
fn write_atomically(
    target: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = target.parent().ok_or_else(|| std::io::Error::other("no parent folder"))?;
    std::fs::create_dir_all(dir)?;
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir)?;
    write(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(target).map_err(|e| e.error)?;
    // The rename itself is durable once the folder is synced.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A mini-batch's rows as a worker sends them: a list (each row is written followed by `\n`),
/// or one text block whose rows already end in `\n` (a missing last one is added).
pub enum Rows {
    Lines(Vec<String>),
    Text(String),
}

/// Writes one mini-batch's rows, replacing a copy an earlier, uncommitted attempt left.
pub async fn write_part(job_dir: PathBuf, idx: i64, rows: Rows) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        write_atomically(&part_path(&job_dir, idx), |f| {
            let mut out = std::io::BufWriter::new(f);
            match &rows {
                Rows::Lines(lines) => {
                    for row in lines {
                        out.write_all(row.as_bytes())?;
                        out.write_all(b"\n")?;
                    }
                }
                Rows::Text(text) => {
                    out.write_all(text.as_bytes())?;
                    if !text.is_empty() && !text.ends_with('\n') {
                        out.write_all(b"\n")?;
                    }
                }
            }
            out.flush()
        })
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Concatenates the parts of `indexes` (input order) into `target`.
pub async fn merge(job_dir: PathBuf, indexes: Vec<i64>, target: PathBuf) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        write_atomically(&target, |f| {
            let mut out = std::io::BufWriter::new(f);
            for idx in &indexes {
                let part = part_path(&job_dir, *idx);
                let mut input = std::fs::File::open(&part)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", part.display())))?;
                std::io::copy(&mut input, &mut out)?;
            }
            out.flush()
        })
    })
    .await
    .map_err(std::io::Error::other)?
}

/// A gzip'd tar of the files in `dir` (relative names, regular files and folders only).
pub async fn archive(dir: PathBuf) -> std::io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        if dir.is_dir() {
            let mut stack = vec![dir.clone()];
            let mut files = Vec::new();
            while let Some(d) = stack.pop() {
                for entry in std::fs::read_dir(&d)? {
                    let entry = entry?;
                    let kind = entry.file_type()?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".tmp") && name.starts_with('.') {
                        continue; // a merge in progress
                    }
                    if kind.is_dir() {
                        stack.push(entry.path());
                    } else if kind.is_file() {
                        files.push(entry.path());
                    }
                }
            }
            files.sort();
            for f in files {
                let rel = f.strip_prefix(&dir).map_err(std::io::Error::other)?;
                tar.append_path_with_name(&f, rel)?;
            }
        }
        tar.into_inner()?.finish()
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parts_merge_in_the_given_order_and_replace_old_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().to_owned();
        write_part(job.clone(), 1, Rows::Lines(vec!["stale".into()])).await.unwrap();
        write_part(job.clone(), 1, Rows::Lines(vec!["b 1".into(), "b 2".into()])).await.unwrap();
        write_part(job.clone(), 0, Rows::Text("a 1".into())).await.unwrap();
        write_part(job.clone(), 2, Rows::Text(String::new())).await.unwrap();
        let out = job.join("out/predictions.csv");
        merge(job.clone(), vec![0, 1, 2], out.clone()).await.unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a 1\nb 1\nb 2\n");
        let leftovers: Vec<_> = std::fs::read_dir(job.join("parts")).unwrap().filter_map(Result::ok).collect();
        assert_eq!(leftovers.len(), 3, "no temporary files stay behind");
        assert!(merge(job.clone(), vec![7], job.join("x.csv")).await.is_err(), "a missing part is an error");
        let tgz = archive(job.join("out")).await.unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&tgz[..]));
        let names: Vec<String> =
            tar.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["predictions.csv"]);
    }
}
