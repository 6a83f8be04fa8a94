//! The log file: `natter.log` grows until a line would take it past
//! `rotate_bytes` or a `rotate_every` boundary (UTC, counted from the Unix
//! epoch) has passed; then it is renamed `natter.log.<n>` (n one more than
//! the highest there) and a new one begins. After every rotation and
//! before every write the oldest rotated files are deleted until at most
//! `max_files` files (the current one included) and `max_total_bytes`
//! bytes (the current one and the line about to be written included)
//! remain.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Parses `log.rotate_every`: `never`, `hourly`, `daily`, or a whole number
/// followed by `s`, `m`, `h` or `d`. `None`: no rotation by time.
pub fn parse_every(s: &str) -> Result<Option<u64>, String> {
    let s = s.trim();
    let bad =
        || format!("`{s}`: use never, hourly, daily, or a number with s, m, h or d (e.g. 6h)");
    match s {
        "never" => return Ok(None),
        "hourly" => return Ok(Some(3600)),
        "daily" => return Ok(Some(86_400)),
        _ => {}
    }
    let unit = match s.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
    match n.checked_mul(unit) {
        Some(secs) if secs >= 1 => Ok(Some(secs)),
        _ => Err(bad()),
    }
}

/// The limits a rotating file keeps.
#[derive(Clone, Debug)]
pub struct Caps {
    pub rotate_bytes: u64,
    /// Seconds between time rotations; `None`: by size only.
    pub every_secs: Option<u64>,
    pub max_files: u32,
    pub max_total_bytes: u64,
}

/// The rotated files, oldest first: (index, size).
type Rotated = Vec<(u64, u64)>;

pub struct RotatingFile {
    path: PathBuf,
    caps: Caps,
    file: Option<File>,
    size: u64,
    rotated: Rotated,
    /// When the current file must be rotated by time (seconds since the epoch).
    next_boundary: Option<u64>,
}

impl RotatingFile {
    /// Opens (appends to) `path`, taking stock of its rotated files.
    pub fn open(path: &Path, caps: Caps, now_secs: u64) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = RotatingFile {
            path: path.to_owned(),
            next_boundary: caps.every_secs.map(|p| next_boundary(now_secs, p)),
            caps,
            file: None,
            size: 0,
            rotated: Vec::new(),
        };
        f.reopen()?;
        Ok(f)
    }

    /// Opens the path again (after an external rename, or a failed write).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = None;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        self.rotated = self.scan()?;
        Ok(())
    }

    /// Writes one whole line, rotating and deleting first as the caps say.
    pub fn write_line(&mut self, line: &[u8], now_secs: u64) -> io::Result<()> {
        if self.file.is_none() {
            self.reopen()?;
        }
        // A line longer than a whole file is cut, so the caps still hold.
        let line = if line.len() as u64 > self.caps.rotate_bytes {
            let mut cut = line[..self.caps.rotate_bytes as usize - 1].to_vec();
            cut.push(b'\n');
            std::borrow::Cow::Owned(cut)
        } else {
            std::borrow::Cow::Borrowed(line)
        };
        let len = line.len() as u64;
        let by_time = self.next_boundary.is_some_and(|b| now_secs >= b);
        if self.size > 0 && (self.size + len > self.caps.rotate_bytes || by_time) {
            self.rotate()?;
        }
        if by_time {
            self.next_boundary = self.caps.every_secs.map(|p| next_boundary(now_secs, p));
        }
        self.delete_over_caps(len)?;
        let file = self.file.as_mut().expect("opened above");
        if let Err(e) = file.write_all(&line) {
            // Whatever part went out is not known: open and measure again.
            self.file = None;
            return Err(e);
        }
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let index = self.rotated.last().map_or(1, |(i, _)| i + 1);
        std::fs::rename(&self.path, self.rotated_path(index))?;
        self.rotated.push((index, self.size));
        self.size = 0;
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        Ok(())
    }

    /// Deletes the oldest rotated files until `incoming` more bytes fit.
    fn delete_over_caps(&mut self, incoming: u64) -> io::Result<()> {
        let keep = over_caps(&self.rotated, self.size + incoming, &self.caps);
        let gone: Vec<(u64, u64)> = self.rotated.drain(..self.rotated.len() - keep).collect();
        for (index, _) in gone {
            match std::fs::remove_file(self.rotated_path(index)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn rotated_path(&self, index: u64) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{index}"));
        PathBuf::from(p)
    }

    /// The `<name>.<n>` files beside the log, oldest (lowest n) first.
    fn scan(&self) -> io::Result<Rotated> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(index) = file_name
                .to_str()
                .and_then(|f| f.strip_prefix(name))
                .and_then(|f| f.strip_prefix('.'))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            found.push((index, entry.metadata()?.len()));
        }
        found.sort_unstable();
        Ok(found)
    }
}

/// How many of the newest `rotated` files may stay beside a current file
/// of `current` bytes.
fn over_caps(rotated: &[(u64, u64)], current: u64, caps: &Caps) -> usize {
    let mut keep = 0;
    let mut total = current;
    for (_, size) in rotated.iter().rev() {
        if keep + 1 >= caps.max_files as usize || total + size > caps.max_total_bytes {
            break;
        }
        keep += 1;
        total += size;
    }
    keep
}

/// The first multiple of `period` after `now`.
fn next_boundary(now: u64, period: u64) -> u64 {
    (now / period + 1) * period
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(rotate_bytes: u64, max_files: u32, max_total_bytes: u64) -> Caps {
        Caps {
            rotate_bytes,
            every_secs: None,
            max_files,
            max_total_bytes,
        }
    }

    #[test]
    fn rotate_every_forms() {
        assert_eq!(parse_every("never"), Ok(None));
        assert_eq!(parse_every("hourly"), Ok(Some(3600)));
        assert_eq!(parse_every("daily"), Ok(Some(86_400)));
        assert_eq!(parse_every("90s"), Ok(Some(90)));
        assert_eq!(parse_every("15m"), Ok(Some(900)));
        assert_eq!(parse_every("6h"), Ok(Some(21_600)));
        assert_eq!(parse_every("2d"), Ok(Some(172_800)));
        for bad in ["", "0s", "h", "5", "5w", "-1h", "1.5h", "weekly"] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn caps_keep_the_newest_files_that_fit() {
        let rotated = [(1, 100), (2, 100), (3, 100), (4, 100)];
        // max_files counts the current file.
        assert_eq!(over_caps(&rotated, 10, &caps(100, 3, 10_000)), 2);
        assert_eq!(over_caps(&rotated, 10, &caps(100, 1, 10_000)), 0);
        // Bytes: 50 current + 100 + 100 = 250 <= 260; one more would be 350.
        assert_eq!(over_caps(&rotated, 50, &caps(100, 10, 260)), 2);
        assert_eq!(over_caps(&rotated, 50, &caps(100, 10, 250)), 2);
        assert_eq!(over_caps(&rotated, 50, &caps(100, 10, 249)), 1);
        assert_eq!(over_caps(&[], 50, &caps(100, 10, 100)), 0);
    }

    #[test]
    fn boundaries_are_multiples_of_the_period() {
        assert_eq!(next_boundary(0, 3600), 3600);
        assert_eq!(next_boundary(3599, 3600), 3600);
        assert_eq!(next_boundary(3600, 3600), 7200);
    }

    #[test]
    fn files_rotate_by_size_and_keep_both_caps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("natter.log");
        let mut f = RotatingFile::open(&path, caps(100, 3, 300), 0).unwrap();
        for i in 0..100 {
            f.write_line(format!("line {i:04} .........\n").as_bytes(), 0)
                .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        // 20-byte lines, 5 to a file: 20 files were made, the last 2 rotated kept.
        assert_eq!(names, ["natter.log", "natter.log.18", "natter.log.19"]);
        let total: u64 = names
            .iter()
            .map(|n| std::fs::metadata(dir.path().join(n)).unwrap().len())
            .sum();
        assert!(total <= 300, "{total}");
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.ends_with("line 0099 .........\n"), "{current}");
        assert!(current.starts_with("line 0095"), "{current}");
        // A new start carries on from the files it finds.
        drop(f);
        let mut f = RotatingFile::open(&path, caps(100, 3, 300), 0).unwrap();
        f.write_line(b"after a restart, 20\n", 0).unwrap();
        assert!(dir.path().join("natter.log.20").exists());
        assert!(!dir.path().join("natter.log.18").exists());
    }

    #[test]
    fn files_rotate_at_time_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("natter.log");
        let mut c = caps(1_000_000, 10, 10_000_000);
        c.every_secs = Some(3600);
        let mut f = RotatingFile::open(&path, c, 100).unwrap();
        f.write_line(b"one\n", 100).unwrap();
        f.write_line(b"two\n", 3599).unwrap();
        f.write_line(b"three\n", 3600).unwrap();
        f.write_line(b"four\n", 7000).unwrap();
        f.write_line(b"five\n", 7300).unwrap();
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("natter.log.1"), "one\ntwo\n");
        assert_eq!(read("natter.log.2"), "three\nfour\n");
        assert_eq!(read("natter.log"), "five\n");
    }

    #[test]
    fn a_line_longer_than_a_file_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("natter.log");
        let mut f = RotatingFile::open(&path, caps(10, 2, 20), 0).unwrap();
        f.write_line(b"0123456789abcdef\n", 0).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"012345678\n");
    }
}
