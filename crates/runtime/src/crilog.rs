//! The CRI log format the kubelet reads (`kubectl logs`): one entry per line,
//!
//! ```text
//! 2016-10-06T00:17:09.669794202Z stdout F a complete line
//! 2016-10-06T00:17:09.669794203Z stderr P the first 16 KiB of a longer line…
//! ```
//!
//! `F` marks the end of a line (the newline itself is not written), `P` a part of a line that
//! continues in the next entry of that stream. Output that ends without a newline is written as
//! `F` at the end.
//!
//! Logs rotate as upstream's kubelet rotates them (`containerLogMaxSize` 10 MiB,
//! `containerLogMaxFiles` 5): a full `N.log` is renamed `N.log.<UTC time>`, the oldest rotated
//! files beyond the limit are removed, and writing goes on in a fresh `N.log`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;

/// The longest content of one entry; longer lines are split into partial entries.
pub(crate) const MAX_ENTRY: usize = 16 * 1024;

/// Which output of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// Splits a byte stream into log entries: `(partial, content)`.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Takes more output; returns the entries it completes.
    pub fn push(&mut self, data: &[u8]) -> Vec<(bool, Vec<u8>)> {
        self.pending.extend_from_slice(data);
        let mut entries = Vec::new();
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let mut line = &self.pending[start..start + end];
            while line.len() > MAX_ENTRY {
                entries.push((true, line[..MAX_ENTRY].to_vec()));
                line = &line[MAX_ENTRY..];
            }
            entries.push((false, line.to_vec()));
            start += end + 1;
        }
        // More than an entry's worth without a newline: write it as partial entries now.
        while self.pending.len() - start > MAX_ENTRY {
            entries.push((true, self.pending[start..start + MAX_ENTRY].to_vec()));
            start += MAX_ENTRY;
        }
        self.pending.drain(..start);
        entries
    }

    /// The output ended: what is left, as a final entry.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// The size at which a log file is rotated.
pub(crate) const MAX_LOG_SIZE: u64 = 10 * 1024 * 1024;
/// How many files a container's log keeps, the current one included.
pub(crate) const MAX_LOG_FILES: usize = 5;

/// A container's log file that rotates itself when it grows past its size limit.
#[derive(Debug)]
pub(crate) struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: usize,
}

impl RotatingLog {
    /// Opens (appending to) the log at `path` with upstream's limits.
    pub fn open(path: &Path) -> io::Result<RotatingLog> {
        RotatingLog::with_limits(path, MAX_LOG_SIZE, MAX_LOG_FILES)
    }

    fn with_limits(path: &Path, max_size: u64, max_files: usize) -> io::Result<RotatingLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// Appends whole entries, rotating first when they would not fit.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + data.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let stamp = Timestamp::now().strftime("%Y%m%d-%H%M%S%.6f").to_string();
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::fs::rename(&self.path, self.path.with_file_name(format!("{name}.{stamp}")))?;
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(self.path.parent().unwrap_or(Path::new(".")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{name}.")))
            })
            .collect();
        rotated.sort();
        let excess = rotated.len().saturating_sub(self.max_files - 1);
        for old in rotated.iter().take(excess) {
            let _ = std::fs::remove_file(old);
        }
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Appends one formatted entry to `out`.
pub(crate) fn format_entry(out: &mut Vec<u8>, time: &str, stream: Stream, partial: bool, content: &[u8]) {
    out.extend_from_slice(time.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Copies `reader` (a pipe from the container, or its terminal) into the log until it ends, one
/// write per read so entries of the two streams do not interleave, and hands each read to `tap`
/// as it came. Write errors lose output but do not stop the reading, so the container never
/// blocks on a full pipe.
pub(crate) fn copy(mut reader: impl Read, stream: Stream, log: &Mutex<RotatingLog>, mut tap: impl FnMut(&[u8])) {
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A broken pipe ends the output like EOF.
            Err(_) => 0,
        };
        let done = n == 0;
        let entries = if done {
            splitter.finish().map(|c| vec![(false, c)]).unwrap_or_default()
        } else {
            splitter.push(&buf[..n])
        };
        if !entries.is_empty() {
            let time = Timestamp::now().to_string();
            let mut out = Vec::new();
            for (partial, content) in &entries {
                format_entry(&mut out, &time, stream, *partial, content);
            }
            if let Ok(mut file) = log.lock() {
                let _ = file.write(&out);
            }
        }
        if done {
            return;
        }
        // After the log: whoever saw output may rely on the log holding every complete line
        // of it.
        tap(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(entries: Vec<(bool, Vec<u8>)>) -> Vec<(bool, String)> {
        entries
            .into_iter()
            .map(|(p, c)| (p, String::from_utf8(c).unwrap()))
            .collect()
    }

    #[test]
    fn lines_are_split_and_joined_across_reads() {
        let mut s = LineSplitter::default();
        assert_eq!(texts(s.push(b"one\ntw")), [(false, "one".to_string())]);
        assert_eq!(
            texts(s.push(b"o\n\nthree")),
            [(false, "two".to_string()), (false, String::new())]
        );
        assert_eq!(s.finish().as_deref(), Some(&b"three"[..]));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_lines_become_partial_entries() {
        let mut s = LineSplitter::default();
        let mut line = vec![b'a'; MAX_ENTRY * 2 + 10];
        line.push(b'\n');
        let entries = s.push(&line);
        let shape: Vec<(bool, usize)> = entries.iter().map(|(p, c)| (*p, c.len())).collect();
        assert_eq!(shape, [(true, MAX_ENTRY), (true, MAX_ENTRY), (false, 10)]);

        // Without a newline, a full entry's worth waits for one more byte.
        let mut s = LineSplitter::default();
        assert!(s.push(&vec![b'b'; MAX_ENTRY]).is_empty());
        assert_eq!(texts(s.push(b"\n")), [(false, "b".repeat(MAX_ENTRY))]);
        let entries = s.push(&vec![b'c'; MAX_ENTRY + 1]);
        assert_eq!(entries.len(), 1);
        assert!(entries[0].0);
        assert_eq!(s.finish().as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn entries_have_the_cri_format() {
        let mut out = Vec::new();
        format_entry(&mut out, "2024-01-02T03:04:05.123456789Z", Stream::Stderr, true, b"x y");
        format_entry(&mut out, "2024-01-02T03:04:05Z", Stream::Stdout, false, b"");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2024-01-02T03:04:05.123456789Z stderr P x y\n2024-01-02T03:04:05Z stdout F \n"
        );
        // jiff writes RFC 3339 in UTC with up to nanoseconds, as Go's RFC3339Nano.
        let time = "2024-01-02T03:04:05.120Z".parse::<Timestamp>().unwrap().to_string();
        assert_eq!(time, "2024-01-02T03:04:05.12Z");
    }

    #[test]
    fn logs_rotate_and_keep_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = RotatingLog::with_limits(&path, 100, 3).unwrap();
        for i in 0..20 {
            log.write(format!("entry {i:02} {}\n", "x".repeat(30)).as_bytes())
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "the current file and two rotated ones: {names:?}");
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.len() <= 100);
        assert!(current.ends_with(&format!("entry 19 {}\n", "x".repeat(30))));
    }

    #[test]
    fn copy_writes_both_streams_to_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = Mutex::new(RotatingLog::open(&path).unwrap());
        let mut tapped = Vec::new();
        copy(&b"hello\nworld"[..], Stream::Stdout, &log, |data| {
            tapped.extend_from_slice(data)
        });
        copy(&b"oops\n"[..], Stream::Stderr, &log, |data| {
            tapped.extend_from_slice(data)
        });
        assert_eq!(tapped, b"hello\nworldoops\n");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with(" stdout F hello"));
        assert!(lines[1].ends_with(" stdout F world"));
        assert!(lines[2].ends_with(" stderr F oops"));
        lines[0].split(' ').next().unwrap().parse::<Timestamp>().unwrap();
    }
}
