//! Replica logs on disk. Each replica's stdout and stderr, and the platform's notes about it,
//! are lines `{time} {stdout|stderr|platform} {text}` (the CRI log layout without its tag) in
//! `{replica}.log`, which is rotated to `{replica}.log.1` when it passes its bound: a replica's
//! logs never take more than twice the bound. Read back as the last lines or followed.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::backend::LogEntry;

/// Longer lines are split: a process that never writes a newline cannot grow memory.
const MAX_LINE: usize = 16 * 1024;

/// The streams a log line comes from.
pub(crate) const STDOUT: &str = "stdout";
pub(crate) const STDERR: &str = "stderr";
pub(crate) const PLATFORM: &str = "platform";

/// Now, as `2024-05-01T12:00:00.123456Z` (fixed width, so that times sort as text).
pub(crate) fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// A line of a replica log, split into its parts. A line without the prefix (written by an
/// older version) is stdout without a time.
pub(crate) fn parse(line: &str) -> (&str, &str, &str) {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(time), Some(stream), text)
            if time.len() == 27 && time.ends_with('Z') && [STDOUT, STDERR, PLATFORM].contains(&stream) =>
        {
            (time, stream, text.unwrap_or(""))
        }
        _ => ("", STDOUT, line),
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    // Logs may hold whatever a model prints: readable by the platform's user only.
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

fn rotated(path: &Path) -> PathBuf {
    path.with_extension("log.1")
}

/// Appends lines to a replica's log, rotating it when it passes `max_bytes`.
pub(crate) struct Writer {
    path: PathBuf,
    max_bytes: u64,
    file: File,
    size: u64,
}

impl Writer {
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Writer> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Writer { path: path.to_path_buf(), max_bytes, file, size })
    }

    pub fn line(&mut self, stream: &str, text: &str) -> io::Result<()> {
        let line = format!("{} {stream} {}\n", now(), text.trim_end_matches(['\r', '\n']));
        self.file.write_all(line.as_bytes())?;
        self.size += line.len() as u64;
        if self.size > self.max_bytes {
            std::fs::rename(&self.path, rotated(&self.path))?;
            self.file = open_append(&self.path)?;
            self.size = 0;
        }
        Ok(())
    }
}

/// Writes a note of the platform into a replica's log (why it restarts, how it started).
pub(crate) fn note(path: &Path, text: &str) {
    if let Ok(mut f) = open_append(path) {
        let _ = writeln!(f, "{} {PLATFORM} {text}", now());
    }
}

/// The platform's note in the log of a replica whose output is not kept.
pub(crate) const OUTPUT_NOT_KEPT: &str =
    "container logging is disabled (disableContainerLogging): this replica's stdout and stderr are not kept";

/// Copies a process's stdout and stderr into its log, line by line, until both are closed.
/// Unless `keep`, the lines are read (so that the process never blocks on a full pipe) and
/// dropped.
pub(crate) async fn pump(
    path: PathBuf,
    max_bytes: u64,
    keep: bool,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
) {
    let mut writer = match Writer::open(&path, max_bytes) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot open the replica log {}: {e}", path.display());
            return;
        }
    };
    let out = stdout.and_then(|s| tokio::process::ChildStdout::from_std(s).ok());
    let err = stderr.and_then(|s| tokio::process::ChildStderr::from_std(s).ok());
    let (mut out, mut err) = (out.map(Lines::new), err.map(Lines::new));
    loop {
        let (stream, line) = tokio::select! {
            line = next(&mut out) => (STDOUT, line),
            line = next(&mut err) => (STDERR, line),
        };
        match line {
            Some(_) if !keep => {}
            Some(text) => {
                if let Err(e) = writer.line(stream, &text) {
                    tracing::warn!("cannot write the replica log {}: {e}", path.display());
                }
            }
            None if stream == STDOUT => out = None,
            None => err = None,
        }
        if out.is_none() && err.is_none() {
            return;
        }
    }
}

async fn next<R: AsyncRead + Unpin>(lines: &mut Option<Lines<R>>) -> Option<String> {
    match lines {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}

/// Lines of a byte stream, split at [`MAX_LINE`]; the last one without its newline.
struct Lines<R> {
    reader: R,
    pending: Vec<u8>,
    done: bool,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    fn new(reader: R) -> Lines<R> {
        Lines { reader, pending: Vec::new(), done: false }
    }

    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            if self.pending.len() >= MAX_LINE {
                let line: Vec<u8> = self.pending.drain(..MAX_LINE).collect();
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            if self.done {
                if self.pending.is_empty() {
                    return None;
                }
                return Some(String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned());
            }
            let mut buf = [0u8; 8192];
            match self.reader.read(&mut buf).await {
                Ok(0) | Err(_) => self.done = true,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }
}

/// The text of the last `n` lines a replica's process wrote since `offset` of its log (the
/// platform's own notes left out), for a crash message.
pub(crate) fn tail_since(path: &Path, offset: u64, n: usize) -> Vec<String> {
    const WINDOW: u64 = 16 * 1024;
    let Ok(mut file) = File::open(path) else { return Vec::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = if len < offset { 0 } else { offset.max(len.saturating_sub(WINDOW)) };
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if file.take(WINDOW).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<String> = text
        .lines()
        .map(parse)
        .filter(|(_, stream, text)| *stream != PLATFORM && !text.trim().is_empty() && !is_stack_frame(text))
        .map(|(_, _, text)| text.trim_end().to_string())
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// A line of a stack trace (Rust's numbered frames and `at` lines, Java's `at`, Go's
/// goroutine frames): left out of a crash's last lines, so that they keep what the program
/// said, not where it was.
fn is_stack_frame(line: &str) -> bool {
    let t = line.trim_start();
    let indented = t.len() < line.len();
    let numbered =
        t.split_once(": ").is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    t == "stack backtrace:"
        || t.starts_with("note: Some details are omitted")
        || (indented && (t.starts_with("at ") || numbered || t.starts_with("... ")))
}

/// The size of a replica's log now: where the lines of its next start begin.
pub(crate) fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The last `n` lines of a replica's log (its rotated part first), as entries.
pub(crate) fn last(path: &Path, replica: &str, n: usize) -> Vec<LogEntry> {
    let mut lines: std::collections::VecDeque<String> = std::collections::VecDeque::with_capacity(n);
    for file in [rotated(path), path.to_path_buf()] {
        let Ok(f) = File::open(&file) else { continue };
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            if lines.len() == n {
                lines.pop_front();
            }
            if n > 0 {
                lines.push_back(line);
            }
        }
    }
    lines.iter().map(|l| entry(replica, l)).collect()
}

fn entry(replica: &str, line: &str) -> LogEntry {
    let (time, stream, text) = parse(line);
    LogEntry { replica: replica.to_string(), time: time.into(), stream: stream.into(), text: text.into() }
}

/// The replica logs in a deployment's directory (`only` one replica), by replica id.
pub(crate) fn in_dir(dir: &Path, only: Option<&str>) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .filter(|(id, _)| only.is_none_or(|r| r == id))
        .collect();
    found.sort();
    found
}

/// Reads what is appended to a replica's log, across rotations.
pub(crate) struct Follower {
    path: PathBuf,
    replica: String,
    /// Inode and offset of what was read so far.
    at: Option<(u64, u64)>,
    partial: String,
}

impl Follower {
    /// Follows from the current end of the log.
    pub fn from_end(path: &Path, replica: &str) -> Follower {
        let at = std::fs::metadata(path).ok().map(|m| (m.ino(), m.len()));
        Follower {
            path: path.to_path_buf(),
            replica: replica.to_string(),
            at: at.or(Some((0, 0))),
            partial: String::new(),
        }
    }

    /// Follows from the start of the log (a replica that started after following began).
    pub fn from_start(path: &Path, replica: &str) -> Follower {
        Follower { path: path.to_path_buf(), replica: replica.to_string(), at: None, partial: String::new() }
    }

    /// The complete lines appended since the last call.
    pub fn poll(&mut self) -> Vec<LogEntry> {
        let Ok(meta) = std::fs::metadata(&self.path) else { return Vec::new() };
        let (ino, mut offset) = self.at.unwrap_or((meta.ino(), 0));
        let mut out = Vec::new();
        if ino != meta.ino() {
            // Rotated: the rest of the old file, then the new one from its start.
            if let Ok(m) = std::fs::metadata(rotated(&self.path))
                && m.ino() == ino
            {
                let old = rotated(&self.path);
                out.extend(self.read(&old, offset).0);
            }
            self.partial.clear();
            offset = 0;
        } else if meta.len() < offset {
            offset = 0;
        }
        let path = self.path.clone();
        let (lines, end) = self.read(&path, offset);
        out.extend(lines);
        self.at = Some((meta.ino(), end));
        out
    }

    fn read(&mut self, path: &Path, offset: u64) -> (Vec<LogEntry>, u64) {
        let Ok(mut f) = File::open(path) else { return (Vec::new(), offset) };
        if f.seek(SeekFrom::Start(offset)).is_err() {
            return (Vec::new(), offset);
        }
        let mut buf = Vec::new();
        let read = f.take(4 << 20).read_to_end(&mut buf).unwrap_or(0);
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut entries = Vec::new();
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            entries.push(entry(&self.replica, line.trim_end_matches('\n')));
        }
        (entries, offset + read as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_rotated_and_read_back_across_the_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let mut w = Writer::open(&path, 300).unwrap();
        let mut follower = Follower::from_end(&path, "r");
        for i in 0..10 {
            w.line(STDOUT, &format!("line {i}")).unwrap();
        }
        note(&path, "restarting");
        // At most the bound in each of the two files.
        assert!(size(&path) <= 300 + 60 && size(&rotated(&path)) <= 300 + 60);
        let all: Vec<String> = last(&path, "r", 100).into_iter().map(|e| e.text).collect();
        let followed: Vec<String> = follower.poll().into_iter().map(|e| e.text).collect();
        assert!(all.ends_with(&["line 9".to_string(), "restarting".to_string()]), "{all:?}");
        assert!(followed.ends_with(&["line 9".to_string(), "restarting".to_string()]), "{followed:?}");
        assert_eq!(
            last(&path, "r", 2).iter().map(|e| e.stream.as_str()).collect::<Vec<_>>(),
            [STDOUT, PLATFORM]
        );
        let e = &last(&path, "r", 1)[0];
        assert_eq!((e.replica.as_str(), e.time.len()), ("r", 27));
        // Crash messages show what the process wrote, not the platform's notes.
        assert_eq!(tail_since(&path, 0, 1), ["line 9"]);
        w.line(STDERR, "late").unwrap();
        assert_eq!(follower.poll().iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), ["late"]);
    }

    #[test]
    fn stack_frames_are_told_from_what_a_program_said() {
        let frames = [
            "stack backtrace:",
            "   0: rust_begin_unwind",
            "             at ./src/main.rs:4:5",
            "\tat Main.main(Main.java:3)",
        ];
        for frame in frames {
            assert!(is_stack_frame(frame), "{frame}");
        }
        for said in [
            "thread 'main' panicked at src/main.rs:4:5:",
            "model.onnx: No such file or directory",
            "Error: 3: bad",
        ] {
            assert!(!is_stack_frame(said), "{said}");
        }
    }

    #[test]
    fn old_lines_without_a_prefix_are_stdout() {
        assert_eq!(parse("plain text"), ("", STDOUT, "plain text"));
        assert_eq!(
            parse("2024-05-01T12:00:00.123456Z stderr boom"),
            ("2024-05-01T12:00:00.123456Z", STDERR, "boom")
        );
    }

    #[tokio::test]
    async fn long_lines_are_split() {
        let data = vec![b'x'; MAX_LINE + 10];
        let mut lines = Lines::new(&data[..]);
        assert_eq!(lines.next().await.map(|l| l.len()), Some(MAX_LINE));
        assert_eq!(lines.next().await.map(|l| l.len()), Some(10));
        assert_eq!(lines.next().await, None);
    }
}
