//! Replica log files: timestamped, stream-tagged lines, rotated at a size cap, read back by tail.
//!
//! One file per replica slot, `<log_dir>/<set file stem>/replica-<index>.log`; when it would
//! pass the cap it becomes `replica-<index>.log.1` (replacing the older one) and a new file
//! starts, so a slot never holds more than twice the cap. Writes are single small appends to
//! the page cache, done inline; reads (`tail`) belong on a blocking thread.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// UTC, millisecond precision: `2025-05-01T12:00:00.123Z`.
const STAMP: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// A slot's log, shared by its stdout and stderr readers and by overlapping generations.
pub(crate) type SharedLog = Arc<Mutex<ReplicaLog>>;

/// The path of slot `index`'s current log file.
pub(crate) fn replica_log_path(set_dir: &Path, index: u32) -> PathBuf {
    set_dir.join(format!("replica-{index}.log"))
}

fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The append side of one slot's log. IO errors are reported once and then dropped: a full
/// disk must not take a serving replica down.
#[derive(Debug)]
pub(crate) struct ReplicaLog {
    path: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    size: u64,
    warned: bool,
}

impl ReplicaLog {
    pub(crate) fn new(path: PathBuf, max_bytes: u64) -> SharedLog {
        Arc::new(Mutex::new(Self { path, max_bytes: max_bytes.max(1), file: None, size: 0, warned: false }))
    }

    /// Appends `<timestamp> [g<generation> <stream>] <text>`.
    pub(crate) fn write(&mut self, generation: u64, stream: &str, text: &str) {
        let now = time::OffsetDateTime::now_utc();
        let stamp = now.format(STAMP).unwrap_or_else(|_| now.unix_timestamp().to_string());
        let line = format!("{stamp} [g{generation} {stream}] {text}\n");
        if let Err(error) = self.append(line.as_bytes()) {
            self.file = None;
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!(path = %self.path.display(), %error, "cannot write replica log");
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.file.is_some() && self.size + bytes.len() as u64 > self.max_bytes {
            self.file = None;
            std::fs::rename(&self.path, rotated(&self.path))?;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
                self.size = file.metadata()?.len();
                self.file.insert(file)
            }
        };
        file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

/// The last `lines` lines of a slot's log, reaching into the rotated file when the current one
/// is shorter. A missing file reads as empty.
pub(crate) fn tail(path: &Path, lines: usize) -> io::Result<Vec<String>> {
    let mut out = tail_file(path, lines)?;
    if out.len() < lines {
        let mut older = tail_file(&rotated(path), lines - out.len())?;
        older.append(&mut out);
        out = older;
    }
    Ok(out)
}

fn tail_file(path: &Path, lines: usize) -> io::Result<Vec<String>> {
    const CHUNK: u64 = 64 * 1024;
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if lines == 0 {
        return Ok(Vec::new());
    }
    let len = file.metadata()?.len();
    // Read backwards a chunk at a time until the buffer holds more than `lines` line ends.
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    while start > 0 && buf.iter().filter(|&&b| b == b'\n').count() <= lines {
        let step = CHUNK.min(start);
        start -= step;
        file.seek(SeekFrom::Start(start))?;
        let mut chunk = vec![0; step as usize];
        file.read_exact(&mut chunk)?;
        chunk.append(&mut buf);
        buf = chunk;
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    // A partial first line (when we stopped mid-file) is dropped by taking only the last ones.
    let keep = all.len().min(lines);
    Ok(all[all.len() - keep..].iter().map(|s| (*s).to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_lines(log: &SharedLog, range: std::ops::Range<usize>) {
        let mut log = log.lock().unwrap();
        for i in range {
            log.write(1, "stdout", &format!("line {i}"));
        }
    }

    #[test]
    fn lines_are_prefixed_and_tailed() {
        let dir = tempfile::tempdir().unwrap();
        let path = replica_log_path(&dir.path().join("set"), 0);
        let log = ReplicaLog::new(path.clone(), 1 << 20);
        write_lines(&log, 0..10);
        let last = tail(&path, 3).unwrap();
        assert_eq!(last.len(), 3);
        assert!(last[2].ends_with("[g1 stdout] line 9"), "{last:?}");
        assert!(last[0].ends_with("line 7"));
        assert!(last[0].starts_with("20"), "timestamp first: {last:?}");
        assert_eq!(tail(&path, 100).unwrap().len(), 10);
        assert!(tail(&dir.path().join("missing.log"), 5).unwrap().is_empty());
    }

    #[test]
    fn files_rotate_at_the_cap_keeping_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica-0.log");
        let log = ReplicaLog::new(path.clone(), 500);
        write_lines(&log, 0..100);
        let current = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(rotated(&path)).unwrap().len();
        assert!(current <= 500 && old <= 500, "{current} {old}");
        // The tail spans both files and ends at the newest line.
        let last = tail(&path, 12).unwrap();
        assert_eq!(last.len(), 12);
        assert!(last[11].ends_with("line 99"));
        assert!(last[0].ends_with("line 88"));
    }

    #[test]
    fn tail_reads_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        let body: String = (0..20_000).map(|i| format!("{i:08}\n")).collect();
        std::fs::write(&path, body).unwrap();
        let last = tail(&path, 15_000).unwrap();
        assert_eq!(last.len(), 15_000);
        assert_eq!(last[0], "00005000");
        assert_eq!(last[14_999], "00019999");
    }
}
