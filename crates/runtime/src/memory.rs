//! Giving start-up code back to the page cache.
//!
//! The `sluice` executable is large (it carries the gateway, the control plane, the ONNX, Python
//! and LLM replicas), and a process only runs a small part of it once it is serving. Every page of
//! code the process ever ran stays mapped, and counts in its resident set, until the process exits:
//! start-up (argument parsing, migrations, model loading, ONNX Runtime's session building) leaves
//! about 15 MB of code pages in the server and 20 MB in an ONNX replica that serving never touches
//! again.
//!
//! [`release_code_pages`] unmaps those pages (`madvise(MADV_DONTNEED)`) from the process once it is
//! ready. They stay in the page cache; the code a request runs afterwards faults back in (a minor
//! fault, no disk read) on first use. Only mappings that are exactly the file's bytes are released:
//! read-only private mappings of executables and shared libraries with no copy-on-write page in
//! them, so relocated data (RELRO) and model files mapped by the process are left alone.

/// What [`release_code_pages`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings released.
    pub mappings: usize,
    /// Resident bytes of those mappings before they were released.
    pub bytes: u64,
}

/// Unmaps the resident pages of this process's code (see the module documentation). Returns what was
/// released; on systems without `/proc/self/smaps` it does nothing.
pub fn release_code_pages() -> Released {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return Released::default();
    };
    let mut released = Released::default();
    for mapping in releasable(&parse(&smaps)) {
        if advise_dontneed(mapping.start, mapping.end) {
            released.mappings += 1;
            released.bytes += mapping.rss_kb * 1024;
        }
    }
    released
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // madvise is a syscall on memory the compiler cannot see; the range is checked below.
fn advise_dontneed(start: usize, end: usize) -> bool {
    // SAFETY: the range is one whole mapping of this process, read from /proc/self/smaps, that is
    // read-only and holds only the file's own pages (no private copy): dropping its page table
    // entries loses nothing, as the next access maps the same file page again. Other threads that
    // run code in it meanwhile only take a minor fault.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn advise_dontneed(_start: usize, _end: usize) -> bool {
    false
}

/// One mapping of `/proc/self/smaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    perms: String,
    path: String,
    rss_kb: u64,
    anonymous_kb: u64,
}

fn parse(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some(key) = first.strip_suffix(':') {
            let Some(last) = out.last_mut() else { continue };
            let kb = fields.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            match key {
                "Rss" => last.rss_kb = kb,
                "Anonymous" => last.anonymous_kb = kb,
                _ => {}
            }
            continue;
        }
        // A header: `start-end perms offset dev inode [path]`.
        let Some((start, end)) = first.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        let perms = fields.next().unwrap_or("").to_string();
        let path = fields.nth(3).map(str::to_string).unwrap_or_default();
        out.push(Mapping { start, end, perms, path, rss_kb: 0, anonymous_kb: 0 });
    }
    out
}

/// The mappings that hold only a code file's own pages: read-only, private, file-backed, of a file
/// that is mapped executable somewhere (an executable or shared library, not a model file), with no
/// private copy of any page (a copy-on-write page is anonymous), and something resident. A page can be
/// dirty without being a copy: a binary just written by the linker is dirty in the page cache until
/// it is written back, and the page cache keeps it.
fn releasable(mappings: &[Mapping]) -> Vec<&Mapping> {
    let code_files: std::collections::HashSet<&str> =
        mappings.iter().filter(|m| m.perms == "r-xp" && m.path.starts_with('/')).map(|m| m.path.as_str()).collect();
    mappings
        .iter()
        .filter(|m| {
            (m.perms == "r-xp" || m.perms == "r--p")
                && code_files.contains(m.path.as_str())
                && !m.path.ends_with(" (deleted)")
                && m.anonymous_kb == 0
                && m.rss_kb > 0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c1000000 r--p 00000000 fd:01 100 /usr/bin/sluice
Rss:                4096 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
55d0c1000000-55d0c3000000 r-xp 01000000 fd:01 100 /usr/bin/sluice
Rss:               14000 kB
Anonymous:             0 kB
Private_Dirty:     10000 kB
55d0c3000000-55d0c3100000 r--p 03000000 fd:01 100 /usr/bin/sluice
Rss:                1024 kB
Anonymous:          1024 kB
Private_Dirty:      1024 kB
55d0c3100000-55d0c3200000 rw-p 03100000 fd:01 100 /usr/bin/sluice
Rss:                 512 kB
Anonymous:           512 kB
Private_Dirty:       512 kB
7f0000000000-7f0005000000 r--p 00000000 fd:01 200 /models/m.gguf
Rss:               80000 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
7f1000000000-7f1000100000 r-xp 00000000 00:00 0 [vdso]
Rss:                   8 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
7f2000000000-7f2000100000 rw-p 00000000 00:00 0
Rss:                 100 kB
Anonymous:           100 kB
Private_Dirty:       100 kB
";

    #[test]
    fn only_clean_code_file_mappings_are_released() {
        let maps = parse(SMAPS);
        assert_eq!(maps.len(), 7);
        assert_eq!(maps[1].start, 0x55d0c1000000);
        assert_eq!(maps[1].rss_kb, 14000);
        assert_eq!(maps[6].path, "");
        let picked: Vec<(&str, &str)> = releasable(&maps).iter().map(|m| (m.perms.as_str(), m.path.as_str())).collect();
        // The executable's read-only data and code (dirty in the page cache, as after a build, but
        // not copied); not its relocated (dirty) read-only part, not its
        // writable data, not a model file mapped read-only, not the vDSO, not anonymous memory.
        assert_eq!(picked, vec![("r--p", "/usr/bin/sluice"), ("r-xp", "/usr/bin/sluice")]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_drops_resident_code_and_the_process_keeps_running() {
        let resident_code = || {
            let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
            releasable(&parse(&smaps)).iter().map(|m| m.rss_kb).sum::<u64>()
        };
        let before = resident_code();
        assert!(before > 0, "the test binary has resident code");
        let released = release_code_pages();
        assert!(released.mappings > 0 && released.bytes > 0, "{released:?}");
        // Code runs again after the release (it faults back in), and only what runs comes back.
        let after = resident_code();
        assert!(after < before, "resident code {after} kB after the release, {before} kB before");
        let v: Vec<u64> = (0..1000).map(|i| i * 3).collect();
        assert_eq!(v.iter().sum::<u64>(), 1_498_500);
    }
}
