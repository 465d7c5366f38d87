//! Output conventions shared by all commands (spec: cli §1): message classes
//! and verbosity, Go-compatible JSON, sizes, durations and text tables.
//!
//! Every message goes through [`write_stdout`] / [`write_stderr`], which
//! never panic: like restic, a message that cannot be written to stderr is
//! dropped, and a failed write to stdout is reported once on stderr
//! (`write failed: ...`) while the command goes on. A stdout whose reader
//! went away (`restix dump ... | head`) is remembered; the command still
//! finishes (snapshot written, lock removed) and [`crate::run`] then ends
//! the process by SIGPIPE, as restic (Go) is ended by it.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout's reader has gone away (EPIPE).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// Set once a stdout write failure was reported on stderr.
static STDOUT_FAILURE_REPORTED: AtomicBool = AtomicBool::new(false);

/// True when a write to stdout found its reader gone (EPIPE).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Note a failed stdout write: EPIPE closes stdout for good; any other
/// error is reported on stderr once, in restic's words.
pub fn stdout_write_failed(error: &std::io::Error) {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    } else if !STDOUT_FAILURE_REPORTED.swap(true, Ordering::Relaxed) {
        write_stderr(&format!(
            "write failed: write /dev/stdout: {}\n",
            restix_engine::go_error::io_text(error)
        ));
    }
}

/// Write `text` to stdout (and flush); failures are noted, never fatal.
pub fn write_stdout(text: &str) {
    if stdout_closed() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let result = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if let Err(e) = result {
        stdout_write_failed(&e);
    }
}

/// Write `text` to stderr; a failure is ignored (restic ignores it too).
pub fn write_stderr(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// `text` and a newline (unless it has one) on stderr.
pub fn write_stderr_line(text: &str) {
    if text.ends_with('\n') {
        write_stderr(text);
    } else {
        write_stderr(&format!("{text}\n"));
    }
}

/// True when stdout is a pipe or socket whose reader has gone away (the
/// next write would fail with EPIPE); commands that write stdout through
/// their own writer end up here with their error text instead of EPIPE.
pub fn stdout_reader_gone() -> bool {
    if stdout_closed() {
        return true;
    }
    let mut poll = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: `poll` points to one valid pollfd for the duration of the
    // call; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready == 1 && poll.revents & libc::POLLERR != 0 && is_pipe_or_socket()
}

/// stdout is a FIFO or a socket (not a file or a terminal).
fn is_pipe_or_socket() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata("/dev/stdout")
        .is_ok_and(|m| m.file_type().is_fifo() || m.file_type().is_socket())
}

/// True when `error` (or a cause) is a write to a reader that went away.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

use serde::Serialize;

/// Prints messages by class (spec: cli §1.1 table): `S` always, `P` at
/// verbosity ≥ 1, `PT` also needs a terminal, `V` ≥ 2, `VV` ≥ 3, `E` stderr.
#[derive(Debug, Clone)]
pub struct Printer {
    pub verbosity: u8,
    pub json: bool,
    pub stdout_is_terminal: bool,
    /// `RESTIC_PROGRESS_FPS`, read once (see [`crate::progress_rate`]).
    pub progress_fps: Option<f64>,
}

impl Printer {
    pub fn new(verbosity: u8, json: bool) -> Self {
        Printer {
            verbosity,
            json,
            stdout_is_terminal: std::io::stdout().is_terminal(),
            progress_fps: crate::progress_rate::fps_from_env(),
        }
    }

    /// How often a progress display redraws (`None`: no periodic update),
    /// restic's rule ([`crate::progress_rate::progress_interval`]).
    pub fn progress_interval(&self, show: bool, json: bool) -> Option<std::time::Duration> {
        crate::progress_rate::progress_interval(
            self.progress_fps,
            show,
            json,
            self.stdout_is_terminal,
        )
    }

    fn out(&self, text: &str) {
        if text.ends_with('\n') {
            write_stdout(text);
        } else {
            write_stdout(&format!("{text}\n"));
        }
    }

    /// Class `S`: important output, even with `-q`.
    pub fn important(&self, text: &str) {
        self.out(text);
    }

    /// Class `P`: normal messages (hidden by `-q` and in JSON mode).
    pub fn print(&self, text: &str) {
        if self.verbosity >= 1 && !self.json {
            self.out(text);
        }
    }

    /// Class `PT`: normal messages only shown on a terminal.
    pub fn print_terminal(&self, text: &str) {
        if self.stdout_is_terminal {
            self.print(text);
        }
    }

    /// Class `V`.
    pub fn verbose(&self, text: &str) {
        if self.verbosity >= 2 && !self.json {
            self.out(text);
        }
    }

    /// Class `VV`.
    pub fn very_verbose(&self, text: &str) {
        if self.verbosity >= 3 && !self.json {
            self.out(text);
        }
    }

    /// Class `E`: warnings and errors on stderr, always.
    pub fn error(&self, text: &str) {
        write_stderr_line(text);
    }

    /// One JSON document (compact, Go escaping) on stdout.
    pub fn json_line<T: Serialize>(&self, value: &T) {
        self.out(&to_go_json(value));
    }

    /// One JSON document on stderr (error lines in JSON mode).
    pub fn json_error_line<T: Serialize>(&self, value: &T) {
        self.error(&to_go_json(value));
    }
}

/// serde_json formatter that escapes like Go's `encoding/json` with HTML
/// escaping on (spec: cli §1.3): `<`, `>`, `&`, U+2028, U+2029.
struct GoFormatter<F> {
    inner: F,
}

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for GoFormatter<F> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (index, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..index])?;
            writer.write_all(escape.as_bytes())?;
            start = index + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    // Delegate the layout-relevant methods so pretty printing keeps working.
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.inner.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.inner.begin_object_key(w, first)
    }
    fn end_object_key<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_object_key(w)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.inner.end_object_value(w)
    }
    fn write_f64<W: ?Sized + Write>(&mut self, w: &mut W, value: f64) -> std::io::Result<()> {
        w.write_all(format_go_float(value).as_bytes())
    }
}

/// Go's float64 JSON encoding: shortest round-trip decimal, `'f'` notation
/// unless |x| < 1e-6 or ≥ 1e21 (spec: cli §1.3).
pub fn format_go_float(value: f64) -> String {
    if !value.is_finite() {
        return "0".to_string();
    }
    let abs = value.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust `{:e}` gives e.g. `1e-7`; Go writes `1e-07` (two-digit exponent).
        let formatted = format!("{value:e}");
        if let Some((mantissa, exponent)) = formatted.split_once('e') {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("+", exponent),
            };
            let digits = if digits.len() < 2 {
                format!("0{digits}")
            } else {
                digits.to_string()
            };
            return format!("{mantissa}e{sign}{digits}");
        }
        return formatted;
    }
    // Rust's Display is the shortest round-trip representation in 'f' form.
    format!("{value}")
}

/// Compact JSON like Go's `json.Marshal` (no trailing newline).
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut buffer = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(
        &mut buffer,
        GoFormatter {
            inner: serde_json::ser::CompactFormatter,
        },
    );
    if value.serialize(&mut serializer).is_err() {
        return "null".to_string();
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// Indented JSON like Go's `json.MarshalIndent(v, "", "  ")`.
pub fn to_go_json_indent<T: Serialize + ?Sized>(value: &T) -> String {
    indent_json(&to_go_json(value))
}

/// Re-indent compact JSON like Go's `json.Indent(dst, src, "", "  ")`,
/// keeping the key order of the input. Empty objects/arrays stay `{}`/`[]`.
pub fn indent_json(compact: &str) -> String {
    let mut out = String::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = compact.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let closing = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&closing) {
                    out.push(closing);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// `FormatBytes` (0.19 thresholds, `>=`), spec: cli §1.4.
pub fn format_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB * KIB * KIB {
        format!("{:.3} TiB", b / (KIB * KIB * KIB * KIB))
    } else if b >= KIB * KIB * KIB {
        format!("{:.3} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.3} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.3} KiB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// `FormatDuration`: `M:SS`, or `H:MM:SS` from one hour on.
pub fn format_duration(seconds: u64) -> String {
    let hours = seconds / 3600;
    let minutes = (seconds % 3600) / 60;
    let secs = seconds % 60;
    if hours > 0 {
        format!("{hours}:{minutes:02}:{secs:02}")
    } else {
        format!("{minutes}:{secs:02}")
    }
}

/// `FormatPercent`: `%3.2f%%`, capped at 100.
pub fn format_percent(done: u64, total: u64) -> String {
    let mut percent = if total == 0 {
        0.0
    } else {
        100.0 * done as f64 / total as f64
    };
    if percent > 100.0 {
        percent = 100.0;
    }
    format!("{percent:3.2}%")
}

/// Display width of a table cell (East-Asian wide characters count 2).
fn display_width(text: &str) -> usize {
    text.chars()
        .map(|c| {
            let cp = c as u32;
            let wide = (0x1100..=0x115F).contains(&cp)
                || (0x2E80..=0xA4CF).contains(&cp)
                || (0xAC00..=0xD7A3).contains(&cp)
                || (0xF900..=0xFAFF).contains(&cp)
                || (0xFE30..=0xFE4F).contains(&cp)
                || (0xFF00..=0xFF60).contains(&cp)
                || (0xFFE0..=0xFFE6).contains(&cp)
                || (0x1F300..=0x1F64F).contains(&cp)
                || (0x20000..=0x3FFFD).contains(&cp);
            if wide {
                2
            } else {
                1
            }
        })
        .sum()
}

/// restic's text table (spec: cli §10.3 "Table rules"): columns separated by
/// two spaces, each as wide as its widest cell, trailing blanks trimmed, dash
/// lines as wide as the table. A cell may hold several lines.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<Vec<String>>>,
    /// Blank line between rows (used when some row has several lines).
    pub blank_between_rows: bool,
    footer: Vec<String>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Add a row; each cell is a list of lines.
    pub fn add_row(&mut self, cells: Vec<Vec<String>>) {
        self.rows.push(cells);
    }

    pub fn add_footer(&mut self, line: impl Into<String>) {
        self.footer.push(line.into());
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| display_width(h)).collect();
        for row in &self.rows {
            for (column, cell) in row.iter().enumerate().take(columns) {
                for line in cell {
                    if let Some(width) = widths.get_mut(column) {
                        *width = (*width).max(display_width(line));
                    }
                }
            }
        }
        let render_line = |cells: Vec<&str>| -> String {
            let mut line = String::new();
            for (column, cell) in cells.iter().enumerate() {
                if column > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let width = widths.get(column).copied().unwrap_or(0);
                for _ in display_width(cell)..width {
                    line.push(' ');
                }
            }
            line.trim_end().to_string()
        };
        let total_width: usize = widths.iter().sum::<usize>() + 2 * columns.saturating_sub(1);
        let dashes = "-".repeat(total_width);
        let mut out = String::new();
        out.push_str(&render_line(
            self.headers.iter().map(String::as_str).collect(),
        ));
        out.push('\n');
        out.push_str(&dashes);
        out.push('\n');
        for (index, row) in self.rows.iter().enumerate() {
            if index > 0 && self.blank_between_rows {
                out.push('\n');
            }
            let height = row.iter().map(Vec::len).max().unwrap_or(0).max(1);
            for line_index in 0..height {
                let cells: Vec<&str> = (0..columns)
                    .map(|column| {
                        row.get(column)
                            .and_then(|cell| cell.get(line_index))
                            .map(String::as_str)
                            .unwrap_or("")
                    })
                    .collect();
                out.push_str(&render_line(cells));
                out.push('\n');
            }
        }
        out.push_str(&dashes);
        out.push('\n');
        for line in &self.footer {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Go's `%v` of a string slice: `[a b]`.
pub fn go_slice(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%v` of restic's `[]TagList`: `[[a b] [c]]`.
pub fn go_tag_lists(groups: &[Vec<String>]) -> String {
    let inner: Vec<String> = groups.iter().map(|g| go_slice(g)).collect();
    go_slice(&inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_json_escaping_and_floats() {
        #[derive(Serialize)]
        struct Sample {
            text: String,
            float: f64,
            whole: f64,
            tiny: f64,
        }
        let json = to_go_json(&Sample {
            text: "<a&b>\u{2028}é".into(),
            float: 0.228653904,
            whole: 1.0,
            tiny: 1e-7,
        });
        assert_eq!(
            json,
            r#"{"text":"\u003ca\u0026b\u003e\u2028é","float":0.228653904,"whole":1,"tiny":1e-07}"#
        );
        assert_eq!(format_go_float(0.0), "0");
        assert_eq!(format_go_float(1e21), "1e+21");
        assert_eq!(format_go_float(123456.5), "123456.5");
    }

    #[test]
    fn indented_json_matches_go() {
        #[derive(Serialize)]
        struct Mac {
            k: &'static str,
            r: &'static str,
        }
        #[derive(Serialize)]
        struct MasterKey {
            mac: Mac,
            encrypt: &'static str,
        }
        let value = MasterKey {
            mac: Mac { k: "a", r: "b" },
            encrypt: "c",
        };
        assert_eq!(
            to_go_json_indent(&value),
            "{\n  \"mac\": {\n    \"k\": \"a\",\n    \"r\": \"b\"\n  },\n  \"encrypt\": \"c\"\n}"
        );
    }

    #[test]
    fn indent_keeps_order() {
        assert_eq!(
            indent_json(r#"{"mac":{"k":"a,:{","r":"b"},"encrypt":"c","e":[],"o":{},"l":[1,2]}"#),
            "{\n  \"mac\": {\n    \"k\": \"a,:{\",\n    \"r\": \"b\"\n  },\n  \"encrypt\": \"c\",\n  \"e\": [],\n  \"o\": {},\n  \"l\": [\n    1,\n    2\n  ]\n}"
        );
    }

    #[test]
    fn sizes_durations_percent() {
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.000 KiB");
        assert_eq!(format_bytes(5006), "4.889 KiB");
        assert_eq!(format_bytes(1_294_336), "1.234 MiB");
        assert_eq!(format_bytes(3 << 30), "3.000 GiB");
        assert_eq!(format_duration(5), "0:05");
        assert_eq!(format_duration(3725), "1:02:05");
        assert_eq!(format_percent(1, 2), "50.00%");
        assert_eq!(format_percent(5, 0), "0.00%");
        assert_eq!(format_percent(3, 2), "100.00%");
    }

    #[test]
    fn table_layout() {
        let mut table = Table::new(&["ID", "Time", "Host      ", "Tags      ", "Paths"]);
        let cell = |s: &str| vec![s.to_string()];
        table.add_row(vec![
            cell("e4f98107"),
            cell("2026-11-22 18:57:04"),
            cell("vm"),
            vec![],
            cell("/tmp/rx/data"),
        ]);
        table.add_row(vec![
            cell("c76e118b"),
            cell("2026-11-22 18:57:16"),
            cell("myhost"),
            cell("t1,t2"),
            cell("/tmp/rx/data"),
        ]);
        table.add_footer("2 snapshots");
        assert_eq!(
            table.render(),
            "ID        Time                 Host        Tags        Paths\n\
             -------------------------------------------------------------------\n\
             e4f98107  2026-11-22 18:57:04  vm                      /tmp/rx/data\n\
             c76e118b  2026-11-22 18:57:16  myhost      t1,t2       /tmp/rx/data\n\
             -------------------------------------------------------------------\n\
             2 snapshots\n"
        );
    }
}
