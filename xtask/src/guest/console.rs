//! The host side of the serial console: classifying the guest's lines.
//!
//! The guest talks to the host through three kinds of marker lines:
//! - `@@OUT@@ <text>`: `<text>` is a result line for the host (appended to `--output`);
//! - `@@VFIO-GUEST-EXIT@@ <code>`: the test binary exited with `<code>`;
//! - `@@VFIO-GUEST-SETUP-FAILED@@ <reason>`: `/init` could not prepare the guest.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Prefix of result lines meant for the host.
pub const OUT_PREFIX: &str = "@@OUT@@ ";
/// Marker printed by `/init` after the test binary exits, followed by its exit code.
pub const EXIT_MARKER: &str = "@@VFIO-GUEST-EXIT@@";
/// Marker printed by `/init` when it cannot prepare the guest, followed by the reason.
pub const SETUP_FAILED_MARKER: &str = "@@VFIO-GUEST-SETUP-FAILED@@";

/// Removes terminal control sequences (SeaBIOS resets and clears the screen with
/// `ESC c` and `ESC [2J`) so echoing the console does not wipe the user's terminal.
pub fn strip_control(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut bytes = line.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if b != 0x1b {
            out.push(b);
            continue;
        }
        match bytes.next() {
            // CSI: parameters and intermediates up to a final byte in 0x40..=0x7e.
            Some(b'[') => {
                for c in bytes.by_ref() {
                    if (0x40..=0x7e).contains(&c) {
                        break;
                    }
                }
            }
            // Character-set selection takes one more byte.
            Some(b'(' | b')') => {
                bytes.next();
            }
            // Any other two-byte escape (ESC c, ESC 7, ...).
            _ => {}
        }
    }
    out
}

/// How many console lines to keep for error messages.
const TAIL_LINES: usize = 20;

/// What one console line means to the host.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A result line, without its prefix.
    Out(&'a str),
    /// The test binary's exit code.
    Exit(i32),
    /// Guest setup failed, with the reason.
    SetupFailed(&'a str),
    /// Anything else (kernel log, the test's ordinary output).
    Other,
}

/// Classifies one line (without its line terminator).
pub fn classify(line: &str) -> Line<'_> {
    let line = line.trim_start_matches('\r');
    if let Some(rest) = line.strip_prefix(OUT_PREFIX) {
        return Line::Out(rest);
    }
    if let Some((_, rest)) = line.split_once(EXIT_MARKER) {
        if let Ok(code) = rest.trim().parse() {
            return Line::Exit(code);
        }
    }
    if let Some((_, rest)) = line.split_once(SETUP_FAILED_MARKER) {
        return Line::SetupFailed(rest.trim());
    }
    Line::Other
}

/// Collects what the host needs from the console while it streams by.
#[derive(Debug)]
pub struct Console {
    tail: VecDeque<String>,
    output: Option<(PathBuf, File)>,
    /// The test binary's exit code, once the exit marker was seen.
    pub exit_code: Option<i32>,
    /// Why guest setup failed, if it did.
    pub setup_failed: Option<String>,
    /// The kernel's first `Kernel panic` line, if it panicked.
    pub panic: Option<String>,
}

impl Console {
    /// Starts collecting; result lines go to `output` (created afresh) if given.
    pub fn new(output: Option<&Path>) -> Result<Self> {
        let output = match output {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let file = File::create(path)
                    .with_context(|| format!("creating output file {}", path.display()))?;
                Some((path.to_path_buf(), file))
            }
            None => None,
        };
        Ok(Self {
            tail: VecDeque::with_capacity(TAIL_LINES),
            output,
            exit_code: None,
            setup_failed: None,
            panic: None,
        })
    }

    /// Feeds one console line (without its terminator).
    pub fn feed(&mut self, line: &str) -> Result<()> {
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.trim_end_matches('\r').to_owned());
        match classify(line) {
            Line::Out(text) => {
                if let Some((path, file)) = &mut self.output {
                    writeln!(file, "{}", text.trim_end_matches('\r'))
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
            Line::Exit(code) => self.exit_code = Some(code),
            Line::SetupFailed(reason) => self.setup_failed = Some(reason.to_owned()),
            Line::Other => {
                if self.panic.is_none() && line.contains("Kernel panic") {
                    self.panic = Some(line.trim().to_owned());
                }
            }
        }
        Ok(())
    }

    /// The last console lines, for error messages.
    pub fn tail(&self) -> String {
        let mut text = String::new();
        for line in &self.tail {
            text.push_str("    ");
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_terminal_control() {
        assert_eq!(
            strip_control(b"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)\n"),
            b"SeaBIOS (version 1.16)\n"
        );
        assert_eq!(strip_control(b"\x1b(Bplain"), b"plain");
        assert_eq!(strip_control(b"no escapes"), b"no escapes");
        assert_eq!(strip_control(b"trailing\x1b"), b"trailing");
    }

    #[test]
    fn classifies_markers() {
        assert_eq!(
            classify("@@OUT@@ {\"ok\":true}"),
            Line::Out("{\"ok\":true}")
        );
        assert_eq!(classify("\r@@OUT@@ x"), Line::Out("x"));
        assert_eq!(classify("@@VFIO-GUEST-EXIT@@ 3"), Line::Exit(3));
        assert_eq!(
            classify("[ 1.0] noise@@VFIO-GUEST-EXIT@@ 0\r"),
            Line::Exit(0)
        );
        assert_eq!(classify("@@VFIO-GUEST-EXIT@@ x"), Line::Other);
        assert_eq!(
            classify("@@VFIO-GUEST-SETUP-FAILED@@ insmod vfio failed"),
            Line::SetupFailed("insmod vfio failed")
        );
        assert_eq!(classify("hello @@OUT@@ x"), Line::Other);
    }

    #[test]
    fn writes_output_and_keeps_tail() {
        let dir = std::env::temp_dir().join(format!("xtask-console-{}", std::process::id()));
        let path = dir.join("out.json");
        let mut console = Console::new(Some(&path)).unwrap();
        for i in 0..30 {
            console.feed(&format!("line {i}")).unwrap();
        }
        console.feed("@@OUT@@ {\"a\":1}\r").unwrap();
        console.feed("@@OUT@@ {\"b\":2}").unwrap();
        console.feed("@@VFIO-GUEST-EXIT@@ 7").unwrap();
        assert_eq!(console.panic, None);
        console
            .feed("[ 2.3] Kernel panic - not syncing: sysrq triggered crash")
            .unwrap();
        assert!(
            console
                .panic
                .as_deref()
                .unwrap()
                .ends_with("sysrq triggered crash")
        );
        assert_eq!(console.exit_code, Some(7));
        let tail = console.tail();
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(!tail.contains("line 12\n"));
        assert!(tail.contains("line 29\n"));
        drop(console);
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written, "{\"a\":1}\n{\"b\":2}\n");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
