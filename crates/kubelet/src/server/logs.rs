//! Container logs read back from the CRI log files the runtime writes (`kubectl logs`), with
//! upstream's options: `tailLines`, `sinceSeconds` /
//! `sinceTime`, `timestamps`, `limitBytes`, `follow` and `previous`.
//!
//! Each file line is `<RFC 3339 time> <stdout|stderr> <P|F> <content>`: `F` ends a line (its
//! newline is not in the file), `P` is a part of a longer line that goes on in the next entry.
//! Output joins the parts again; with `timestamps` each line starts with the time of its first
//! entry, formatted as Go's RFC3339Nano (as upstream's kubelet prints it).

use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

/// How often a followed log is checked for new lines (and its container for having ended).
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How many bytes of output are gathered before they are sent on.
const BATCH: usize = 32 * 1024;

/// Which output of the container an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One parsed entry of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// When the runtime read it.
    pub time: Timestamp,
    /// Which stream.
    pub stream: Stream,
    /// A part of a line that continues in the next entry (`P`).
    pub partial: bool,
    /// The text, without a newline.
    pub content: &'a [u8],
}

/// Parses one line of a CRI log file (with or without its newline); `None` when it is not one.
pub fn parse_entry(line: &[u8]) -> Option<Entry<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?.parse::<Timestamp>().ok()?;
    let stream = match fields.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    // Tags are `:`-separated; the first says whether the line is complete.
    let partial = match fields.next()?.split(|b| *b == b':').next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = fields.next().unwrap_or_default();
    Some(Entry {
        time,
        stream,
        partial,
        content,
    })
}

/// What `GET /containerLogs` was asked for (upstream's PodLogOptions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming until the container ends.
    pub follow: bool,
    /// The previous instance of the container instead of the current one.
    pub previous: bool,
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// Only the last this many lines.
    pub tail_lines: Option<u64>,
    /// Only lines logged at or after this time.
    pub since: Option<Timestamp>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

/// Go's `strconv.ParseBool`, which upstream's query decoding uses.
pub fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value {value:?} for {name}: not a boolean")),
    }
}

impl LogOptions {
    /// Reads the options from query parameters; `now` anchors `sinceSeconds`.
    pub fn from_query(pairs: &[(String, String)], now: Timestamp) -> Result<LogOptions, String> {
        let mut opts = LogOptions::default();
        let number = |name: &str, value: &str| {
            value
                .parse::<i64>()
                .map_err(|_| format!("invalid value {value:?} for {name}: not an integer"))
        };
        let mut since_seconds = None;
        for (name, value) in pairs {
            match name.as_str() {
                "follow" => opts.follow = parse_bool(name, value)?,
                "previous" => opts.previous = parse_bool(name, value)?,
                "timestamps" => opts.timestamps = parse_bool(name, value)?,
                "tailLines" => {
                    let n = number(name, value)?;
                    if n < 0 {
                        return Err(format!(
                            "tailLines: Invalid value: {n}: must be greater than or equal to 0"
                        ));
                    }
                    opts.tail_lines = Some(n as u64);
                }
                "limitBytes" => {
                    let n = number(name, value)?;
                    if n < 1 {
                        return Err(format!("limitBytes: Invalid value: {n}: must be greater than 0"));
                    }
                    opts.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n = number(name, value)?;
                    if n < 1 {
                        return Err(format!("sinceSeconds: Invalid value: {n}: must be greater than 0"));
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => {
                    let t = value
                        .parse::<Timestamp>()
                        .map_err(|e| format!("invalid value {value:?} for sinceTime: {e}"))?;
                    opts.since = Some(t);
                }
                _ => {}
            }
        }
        if let Some(seconds) = since_seconds {
            if opts.since.is_some() {
                return Err("at most one of `sinceTime` or `sinceSeconds` may be specified".into());
            }
            opts.since = now.checked_sub(jiff::SignedDuration::from_secs(seconds)).ok();
        }
        Ok(opts)
    }
}

/// Turns entries into the bytes a client sees: parts joined into lines, lines before `since`
/// dropped, timestamps prepended, output cut at the byte limit.
#[derive(Debug)]
pub struct Formatter {
    timestamps: bool,
    since: Option<Timestamp>,
    remaining: Option<u64>,
    line_start: bool,
}

impl Formatter {
    /// A formatter for these options.
    pub fn new(opts: &LogOptions) -> Formatter {
        Formatter {
            timestamps: opts.timestamps,
            since: opts.since,
            remaining: opts.limit_bytes,
            line_start: true,
        }
    }

    /// Appends what `entry` shows to `out`; false once the byte limit is reached (and nothing
    /// more may be written).
    pub fn write(&mut self, entry: &Entry<'_>, out: &mut Vec<u8>) -> bool {
        let at_start = std::mem::replace(&mut self.line_start, !entry.partial);
        if self.since.is_some_and(|since| entry.time < since) {
            return true;
        }
        let mut line = Vec::with_capacity(entry.content.len() + 40);
        if self.timestamps && at_start {
            line.extend_from_slice(entry.time.to_string().as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(entry.content);
        if !entry.partial {
            line.push(b'\n');
        }
        match &mut self.remaining {
            None => {
                out.extend_from_slice(&line);
                true
            }
            Some(remaining) => {
                let n = (line.len() as u64).min(*remaining) as usize;
                out.extend_from_slice(&line[..n]);
                *remaining -= n as u64;
                *remaining > 0
            }
        }
    }
}

/// The offset at which the last `n` lines of the file begin (0 when it has fewer).
pub fn tail_offset<F: Read + Seek>(file: &mut F, n: u64) -> io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    if n == 0 {
        return Ok(len);
    }
    let mut buf = vec![0u8; 32 * 1024];
    let mut end = len;
    // The newline that ends the last line does not start one.
    let mut wanted = n;
    let mut first = true;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        for (i, b) in chunk.iter().enumerate().rev() {
            if *b != b'\n' {
                first = false;
                continue;
            }
            if first {
                first = false;
                continue;
            }
            wanted -= 1;
            if wanted == 0 {
                return Ok(start + i as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

/// Reads complete lines of the log at `path`, from the first of the last `tail` lines (all of
/// them when None), and sends them in batches. Without `running` it
/// stops at the end of the file; with it, it keeps waiting for more until `running` says the
/// container ended (then reads what is left) or the receiver goes away.
pub async fn read_lines(
    path: PathBuf,
    tail: Option<u64>,
    running: Option<Box<dyn Fn() -> bool + Send>>,
    tx: mpsc::Sender<Vec<Vec<u8>>>,
) -> io::Result<()> {
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        // Nothing logged yet.
        Err(e) if e.kind() == io::ErrorKind::NotFound && running.is_none() => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut file = file.into_std().await;
    let offset = tokio::task::spawn_blocking(move || -> io::Result<(std::fs::File, u64)> {
        let offset = match tail {
            Some(n) => tail_offset(&mut file, n)?,
            None => 0,
        };
        Ok((file, offset))
    })
    .await
    .map_err(io::Error::other)??;
    let (file, offset) = offset;
    let mut file = tokio::fs::File::from_std(file);
    file.seek(SeekFrom::Start(offset)).await?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut line = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut ending = false;
    loop {
        let n = reader.read_until(b'\n', &mut line).await?;
        if n > 0 && line.ends_with(b"\n") {
            batch_bytes += line.len();
            batch.push(std::mem::take(&mut line));
            if batch_bytes >= BATCH {
                if tx.send(std::mem::take(&mut batch)).await.is_err() {
                    return Ok(());
                }
                batch_bytes = 0;
            }
            continue;
        }
        // The end of what is written so far (a line may be half-written).
        if !batch.is_empty() {
            if tx.send(std::mem::take(&mut batch)).await.is_err() {
                return Ok(());
            }
            batch_bytes = 0;
        }
        let still_running = running.as_ref().is_some_and(|r| r());
        if ending || !still_running {
            if running.is_none() || ending {
                if !line.is_empty() {
                    let _ = tx.send(vec![std::mem::take(&mut line)]).await;
                }
                return Ok(());
            }
            // The container ended: one more pass for what it wrote last.
            ending = true;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = tx.closed() => return Ok(()),
        }
    }
}

/// Formats batches of lines into response bytes until the limit is reached.
pub async fn format_lines(opts: LogOptions, mut lines: mpsc::Receiver<Vec<Vec<u8>>>, out: mpsc::Sender<Bytes>) {
    let mut formatter = Formatter::new(&opts);
    while let Some(batch) = lines.recv().await {
        let mut buf = Vec::new();
        let mut more = true;
        for line in &batch {
            match parse_entry(line) {
                Some(entry) => more = formatter.write(&entry, &mut buf),
                None => tracing::debug!("skipping a malformed log line"),
            }
            if !more {
                break;
            }
        }
        if !buf.is_empty() && out.send(Bytes::from(buf)).await.is_err() {
            return;
        }
        if !more {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2024-01-02T03:04:05.100000000Z stdout F one\n\
                       2024-01-02T03:04:06.2Z stderr F two\n\
                       2024-01-02T03:04:07Z stdout P thr\n\
                       2024-01-02T03:04:08Z stdout F ee\n\
                       2024-01-02T03:04:09Z stdout F \n";

    fn render(opts: &LogOptions, log: &str) -> String {
        let mut f = Formatter::new(opts);
        let mut out = Vec::new();
        for line in log.split_inclusive('\n') {
            if !f.write(&parse_entry(line.as_bytes()).unwrap(), &mut out) {
                break;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn entries_are_parsed() {
        let e = parse_entry(b"2024-01-02T03:04:05.123456789Z stderr P x y \n").unwrap();
        assert_eq!(e.stream, Stream::Stderr);
        assert!(e.partial);
        assert_eq!(e.content, b"x y ");
        assert_eq!(e.time.to_string(), "2024-01-02T03:04:05.123456789Z");
        let e = parse_entry(b"2024-01-02T03:04:05Z stdout F:extra tag\n").unwrap();
        assert!(!e.partial);
        assert_eq!(e.content, b"tag");
        assert_eq!(parse_entry(b"2024-01-02T03:04:05Z stdout F").unwrap().content, b"");
        assert!(parse_entry(b"garbage").is_none());
        assert!(parse_entry(b"2024-01-02T03:04:05Z stdin F x").is_none());
    }

    #[test]
    fn lines_are_joined_and_stamped_as_upstream() {
        assert_eq!(render(&LogOptions::default(), LOG), "one\ntwo\nthree\n\n");
        let stamped = LogOptions {
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            render(&stamped, LOG),
            "2024-01-02T03:04:05.1Z one\n2024-01-02T03:04:06.2Z two\n2024-01-02T03:04:07Z three\n2024-01-02T03:04:09Z \n"
        );
    }

    #[test]
    fn since_and_limit_apply() {
        let since = LogOptions {
            since: Some("2024-01-02T03:04:06Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(render(&since, LOG), "two\nthree\n\n");
        let limited = LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(render(&limited, LOG), "one\ntw");
    }

    #[test]
    fn options_come_from_the_query() {
        let now: Timestamp = "2024-01-02T03:00:00Z".parse().unwrap();
        let q = |s: &str| serde_urlencoded::from_str::<Vec<(String, String)>>(s).unwrap();
        let opts = LogOptions::from_query(
            &q("follow=true&tailLines=2&timestamps=1&sinceSeconds=60&limitBytes=10&previous=false"),
            now,
        )
        .unwrap();
        assert_eq!(
            opts,
            LogOptions {
                follow: true,
                previous: false,
                timestamps: true,
                tail_lines: Some(2),
                since: Some("2024-01-02T02:59:00Z".parse().unwrap()),
                limit_bytes: Some(10),
            }
        );
        assert!(LogOptions::from_query(&q("tailLines=-1"), now).is_err());
        assert!(LogOptions::from_query(&q("follow=maybe"), now).is_err());
        assert!(LogOptions::from_query(&q("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z"), now).is_err());
        let t = LogOptions::from_query(&q("sinceTime=2024-01-01T00:00:00Z"), now).unwrap();
        assert_eq!(t.since, Some("2024-01-01T00:00:00Z".parse().unwrap()));
    }

    #[test]
    fn tails_count_lines_from_the_end() {
        let text = b"a\nbb\nccc\n";
        let mut c = io::Cursor::new(&text[..]);
        assert_eq!(tail_offset(&mut c, 0).unwrap(), 9);
        assert_eq!(tail_offset(&mut c, 1).unwrap(), 5);
        assert_eq!(tail_offset(&mut c, 2).unwrap(), 2);
        assert_eq!(tail_offset(&mut c, 3).unwrap(), 0);
        assert_eq!(tail_offset(&mut c, 10).unwrap(), 0);
        // A half-written last line counts as a line.
        let mut c = io::Cursor::new(&b"a\nbb\ncc"[..]);
        assert_eq!(tail_offset(&mut c, 1).unwrap(), 5);
        // Across read blocks.
        let long: Vec<u8> = (0..20_000).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
        let mut c = io::Cursor::new(&long[..]);
        let at = tail_offset(&mut c, 3).unwrap() as usize;
        assert_eq!(&long[at..], b"line 19997\nline 19998\nline 19999\n");
    }

    #[tokio::test]
    async fn files_are_read_whole_tailed_and_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, LOG).unwrap();
        let collect = |tail: Option<u64>| {
            let path = path.clone();
            async move {
                let (tx, mut rx) = mpsc::channel(4);
                let reader = tokio::spawn(read_lines(path, tail, None, tx));
                let mut lines = Vec::new();
                while let Some(batch) = rx.recv().await {
                    lines.extend(batch);
                }
                reader.await.unwrap().unwrap();
                lines
            }
        };
        assert_eq!(collect(None).await.len(), 5);
        let last = collect(Some(2)).await;
        assert_eq!(last.len(), 2);
        assert!(last[0].ends_with(b"stdout F ee\n"));

        // Following: lines written later arrive; the end of the container ends the stream.
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = running.clone();
        let (tx, mut rx) = mpsc::channel(4);
        let reader = tokio::spawn(read_lines(
            path.clone(),
            Some(0),
            Some(Box::new(move || flag.load(std::sync::atomic::Ordering::Relaxed))),
            tx,
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, b"2024-01-02T03:04:10Z stdout F later\n").unwrap();
        let batch = rx.recv().await.unwrap();
        assert_eq!(batch, [b"2024-01-02T03:04:10Z stdout F later\n".to_vec()]);
        std::io::Write::write_all(&mut f, b"2024-01-02T03:04:11Z stdout F last\n").unwrap();
        running.store(false, std::sync::atomic::Ordering::Relaxed);
        let mut rest = Vec::new();
        while let Some(batch) = rx.recv().await {
            rest.extend(batch);
        }
        assert_eq!(rest, [b"2024-01-02T03:04:11Z stdout F last\n".to_vec()]);
        reader.await.unwrap().unwrap();
    }
}
