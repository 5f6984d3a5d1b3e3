//! Golden ("precise-output") files, in the style of cranelift's filetests: a
//! test produces a text, and the text must equal a committed file.
//!
//! - Without `LAURELC_BLESS`, a difference (or a missing file) is a failure
//!   whose message is a line diff (`-` the golden file, `+` what was
//!   produced, two lines of context) ending in "run with `LAURELC_BLESS=1` to
//!   accept".
//! - With `LAURELC_BLESS=1`, every golden file is rewritten with what was
//!   produced (created, with its directories, when missing) and the check
//!   passes.
//!
//! A test collects all its comparisons in a [`Golden`] and calls
//! [`Golden::finish`] once, so a run reports every differing file, not only
//! the first:
//!
//! ```no_run
//! let mut golden = laurel_tests::golden::Golden::new();
//! golden.check(std::path::Path::new("tests/golden/a.txt"), "produced text\n");
//! golden.finish();
//! ```
//!
//! Golden files say what is produced; whether it is right is for the numeric
//! tests to say.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The environment variable that switches blessing on (value `1`).
pub const BLESS_VAR: &str = "LAURELC_BLESS";

/// Whether `LAURELC_BLESS=1` is set: golden files are to be rewritten.
#[must_use]
pub fn bless_enabled() -> bool {
    std::env::var_os(BLESS_VAR).is_some_and(|v| v == "1")
}

/// What [`compare`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The golden file holds exactly what was produced.
    Same,
    /// Blessing: the golden file was written (it was missing or differed).
    Blessed,
    /// The golden file is missing (not blessing).
    Missing,
    /// The golden file differs (not blessing); the line diff.
    Differs(String),
}

/// Compares `actual` with the golden file `path`; when blessing, writes
/// `actual` to `path` if it is missing or differs. An I/O error other than
/// a missing file (an unreadable file, a failed write) is an `Err`.
pub fn compare(path: &Path, actual: &str) -> std::io::Result<Outcome> {
    compare_with(path, actual, bless_enabled())
}

/// [`compare`] with the bless switch given explicitly.
pub fn compare_with(path: &Path, actual: &str, bless: bool) -> std::io::Result<Outcome> {
    let expected = match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if expected.as_deref() == Some(actual) {
        return Ok(Outcome::Same);
    }
    if bless {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, actual)?;
        return Ok(Outcome::Blessed);
    }
    Ok(match expected {
        None => Outcome::Missing,
        Some(expected) => Outcome::Differs(line_diff(&expected, actual, 2)),
    })
}

/// A set of golden comparisons that fails once, at [`Golden::finish`], with
/// every problem found.
#[derive(Debug)]
pub struct Golden {
    bless: bool,
    failures: Vec<String>,
    blessed: Vec<PathBuf>,
    checked: usize,
}

impl Default for Golden {
    fn default() -> Self {
        Self::new()
    }
}

impl Golden {
    /// A collector that blesses when `LAURELC_BLESS=1` is set.
    #[must_use]
    pub fn new() -> Self {
        Self::with_bless(bless_enabled())
    }

    /// A collector with the bless switch given explicitly.
    #[must_use]
    pub fn with_bless(bless: bool) -> Self {
        Self {
            bless,
            failures: Vec::new(),
            blessed: Vec::new(),
            checked: 0,
        }
    }

    /// Whether this collector rewrites golden files.
    #[must_use]
    pub fn blessing(&self) -> bool {
        self.bless
    }

    /// Compares `actual` with the golden file `path` (see [`compare`]).
    pub fn check(&mut self, path: &Path, actual: &str) {
        self.checked += 1;
        match compare_with(path, actual, self.bless) {
            Ok(Outcome::Same) => {}
            Ok(Outcome::Blessed) => self.blessed.push(path.to_path_buf()),
            Ok(Outcome::Missing) => self.failures.push(format!(
                "{}: golden file is missing; run with {BLESS_VAR}=1 to create it",
                path.display()
            )),
            Ok(Outcome::Differs(diff)) => self.failures.push(format!(
                "{}: output differs from the golden file (- golden, + produced):\n{diff}\
                 run with {BLESS_VAR}=1 to accept",
                path.display()
            )),
            Err(e) => self
                .failures
                .push(format!("{}: cannot read or write: {e}", path.display())),
        }
    }

    /// Records a failure that is not a comparison (a golden file without a
    /// source, a command that could not run, ...). It fails even when
    /// blessing.
    pub fn fail(&mut self, message: impl Into<String>) {
        self.failures.push(message.into());
    }

    /// The paths written so far by blessing.
    #[must_use]
    pub fn blessed(&self) -> &[PathBuf] {
        &self.blessed
    }

    /// Panics with every failure recorded, if any; when blessing, prints
    /// the files rewritten.
    pub fn finish(self) {
        for p in &self.blessed {
            eprintln!("blessed {}", p.display());
        }
        assert!(
            self.failures.is_empty(),
            "{} golden problem(s), {} file(s) compared:\n\n{}",
            self.failures.len(),
            self.checked,
            self.failures.join("\n\n")
        );
    }
}

/// One line of an edit script: kept, removed from the old text, or added by
/// the new one; with the line's index in its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    Keep(usize, usize),
    Del(usize),
    Ins(usize),
}

/// The edit script from `a` to `b`: a longest common subsequence of lines
/// (common prefix and suffix stripped, then the classic dynamic programme on
/// what is left).
fn edit_script(old: &[&str], new: &[&str]) -> Vec<Edit> {
    let prefix = old.iter().zip(new).take_while(|(x, y)| x == y).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let old_mid = &old[prefix..old.len() - suffix];
    let new_mid = &new[prefix..new.len() - suffix];
    let (rows, cols) = (old_mid.len(), new_mid.len());
    let width = cols + 1;
    // lcs[r * width + c]: the LCS length of old_mid[r..] and new_mid[c..].
    let mut lcs = vec![0u32; (rows + 1) * width];
    for r in (0..rows).rev() {
        for c in (0..cols).rev() {
            lcs[r * width + c] = if old_mid[r] == new_mid[c] {
                lcs[(r + 1) * width + c + 1] + 1
            } else {
                lcs[(r + 1) * width + c].max(lcs[r * width + c + 1])
            };
        }
    }
    let mut out: Vec<Edit> = (0..prefix).map(|p| Edit::Keep(p, p)).collect();
    let (mut r, mut c) = (0, 0);
    while r < rows || c < cols {
        if r < rows && c < cols && old_mid[r] == new_mid[c] {
            out.push(Edit::Keep(prefix + r, prefix + c));
            r += 1;
            c += 1;
        } else if c < cols && (r == rows || lcs[r * width + c + 1] >= lcs[(r + 1) * width + c]) {
            out.push(Edit::Ins(prefix + c));
            c += 1;
        } else {
            out.push(Edit::Del(prefix + r));
            r += 1;
        }
    }
    out.extend((0..suffix).map(|s| Edit::Keep(old.len() - suffix + s, new.len() - suffix + s)));
    // Within a run of changes, removals first, then additions.
    let mut at = 0;
    while at < out.len() {
        if matches!(out[at], Edit::Keep(..)) {
            at += 1;
            continue;
        }
        let end = out[at..]
            .iter()
            .position(|e| matches!(e, Edit::Keep(..)))
            .map_or(out.len(), |p| at + p);
        out[at..end].sort_by_key(|e| match *e {
            Edit::Del(i) => (0, i),
            Edit::Ins(j) => (1, j),
            Edit::Keep(..) => (2, 0),
        });
        at = end;
    }
    out
}

/// A unified line diff from `expected` to `actual`: hunks headed
/// `@@ -LINE,COUNT +LINE,COUNT @@`, then ` ` context, `-` expected-only and
/// `+` actual-only lines, `context` lines of context around each change.
/// Empty when the texts are equal. A difference in the final newline alone
/// shows as `\ no newline at end of file` after the line concerned.
#[must_use]
pub fn line_diff(expected: &str, actual: &str, context: usize) -> String {
    if expected == actual {
        return String::new();
    }
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let a_nl = expected.is_empty() || expected.ends_with('\n');
    let b_nl = actual.is_empty() || actual.ends_with('\n');
    let mut edits = edit_script(&a, &b);
    // Only the final newline differs: show the last line as changed.
    if a_nl != b_nl
        && edits.iter().all(|e| matches!(e, Edit::Keep(..)))
        && let Some(Edit::Keep(i, j)) = edits.pop()
    {
        edits.push(Edit::Del(i));
        edits.push(Edit::Ins(j));
    }
    let changed: Vec<usize> = edits
        .iter()
        .enumerate()
        .filter(|(_, e)| !matches!(e, Edit::Keep(..)))
        .map(|(k, _)| k)
        .collect();
    let mut out = String::new();
    let mut c = 0;
    while c < changed.len() {
        // A hunk: changes closer than 2·context apart share it.
        let start = changed[c].saturating_sub(context);
        let mut last = changed[c];
        while c + 1 < changed.len() && changed[c + 1] <= last + 2 * context + 1 {
            c += 1;
            last = changed[c];
        }
        c += 1;
        let end = (last + context + 1).min(edits.len());
        let hunk = &edits[start..end];
        let first_a = hunk.iter().find_map(|e| match *e {
            Edit::Keep(i, _) | Edit::Del(i) => Some(i),
            Edit::Ins(_) => None,
        });
        let first_b = hunk.iter().find_map(|e| match *e {
            Edit::Keep(_, j) | Edit::Ins(j) => Some(j),
            Edit::Del(_) => None,
        });
        let count_a = hunk.iter().filter(|e| !matches!(e, Edit::Ins(_))).count();
        let count_b = hunk.iter().filter(|e| !matches!(e, Edit::Del(_))).count();
        // An empty side starts after the line before it, as in `diff -u`.
        let pos = |first: Option<usize>, count: usize, before: usize| {
            if count == 0 {
                before
            } else {
                first.unwrap_or(0) + 1
            }
        };
        let before_a = edits[..start]
            .iter()
            .filter(|e| !matches!(e, Edit::Ins(_)))
            .count();
        let before_b = edits[..start]
            .iter()
            .filter(|e| !matches!(e, Edit::Del(_)))
            .count();
        let _ = writeln!(
            out,
            "@@ -{},{count_a} +{},{count_b} @@",
            pos(first_a, count_a, before_a),
            pos(first_b, count_b, before_b)
        );
        for e in hunk {
            match *e {
                Edit::Keep(i, _) => {
                    let _ = writeln!(out, " {}", a[i]);
                }
                Edit::Del(i) => {
                    let _ = writeln!(out, "-{}", a[i]);
                    if i + 1 == a.len() && !a_nl {
                        out.push_str("\\ no newline at end of file\n");
                    }
                }
                Edit::Ins(j) => {
                    let _ = writeln!(out, "+{}", b[j]);
                    if j + 1 == b.len() && !b_nl {
                        out.push_str("\\ no newline at end of file\n");
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(line_diff("a\nb\n", "a\nb\n", 2), "");
    }

    #[test]
    fn one_changed_line_with_context() {
        let a = "1\n2\n3\n4\n5\n6\n7\n";
        let b = "1\n2\n3\nfour\n5\n6\n7\n";
        assert_eq!(
            line_diff(a, b, 2),
            "@@ -2,5 +2,5 @@\n 2\n 3\n-4\n+four\n 5\n 6\n"
        );
    }

    #[test]
    fn insertions_deletions_and_separate_hunks() {
        let a = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let b = "a\nc\nd\ne\nf\ng\nh\ni\nj\nk\n";
        assert_eq!(
            line_diff(a, b, 1),
            "@@ -1,3 +1,2 @@\n a\n-b\n c\n@@ -10,1 +9,2 @@\n j\n+k\n"
        );
        // Into and out of the empty text.
        assert_eq!(line_diff("", "x\n", 2), "@@ -0,0 +1,1 @@\n+x\n");
        assert_eq!(line_diff("x\n", "", 2), "@@ -1,1 +0,0 @@\n-x\n");
    }

    #[test]
    fn final_newline_only() {
        assert_eq!(
            line_diff("a\nb\n", "a\nb", 2),
            "@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ no newline at end of file\n"
        );
    }

    #[test]
    fn compare_blesses_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("g.txt");
        assert_eq!(compare_with(&path, "x\n", false).unwrap(), Outcome::Missing);
        assert_eq!(compare_with(&path, "x\n", true).unwrap(), Outcome::Blessed);
        assert_eq!(compare_with(&path, "x\n", false).unwrap(), Outcome::Same);
        assert_eq!(
            compare_with(&path, "y\n", false).unwrap(),
            Outcome::Differs("@@ -1,1 +1,1 @@\n-x\n+y\n".into())
        );
        let mut g = Golden::with_bless(false);
        g.check(&path, "x\n");
        g.finish();
    }
}
