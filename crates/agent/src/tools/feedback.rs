//! What `edit` tells the model when it fails or succeeds. A small model cannot correct an
//! edit from "not found" alone: it needs to see the file as it is, with line numbers, near the
//! place it meant. So a failed edit shows the region most like `oldText`, an ambiguous one
//! lists where the text occurs, and a successful one shows the changed lines in context.

/// Lines of context shown around a region.
pub const CONTEXT_LINES: usize = 3;
/// Matches listed for an ambiguous edit before "... and N more".
pub const MAX_LISTED_MATCHES: usize = 10;
/// Below this similarity the closest region is not worth showing as a near miss.
pub const MIN_SIMILARITY: f64 = 0.3;
/// The search for the closest region compares at most this many lines of `oldText`, so a
/// huge `oldText` against a huge file stays cheap.
const MAX_COMPARED_LINES: usize = 60;

/// `first..=last` (1-based) with `ctx` lines either side, each as `  N| text`; lines inside
/// the region are marked with `>`.
pub fn numbered(lines: &[&str], first: usize, last: usize, ctx: usize) -> String {
    if lines.is_empty() {
        return "(the file is empty)\n".into();
    }
    let from = first.saturating_sub(ctx).max(1);
    let to = (last + ctx).min(lines.len());
    let width = to.to_string().len();
    let mut out = String::new();
    for n in from..=to {
        let mark = if (first..=last).contains(&n) {
            '>'
        } else {
            ' '
        };
        out.push_str(&format!("{mark}{n:>width$}| {}\n", lines[n - 1]));
    }
    out
}

/// The 1-based line a byte offset falls on.
pub fn line_at(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// Lines `text` spans when it starts at `byte` in `file` (1-based, inclusive).
pub fn span(file: &str, byte: usize, text: &str) -> (usize, usize) {
    let first = line_at(file, byte);
    let body = text.strip_suffix('\n').unwrap_or(text);
    (first, first + body.matches('\n').count())
}

/// The region of `file` most like `old`: `(first, last, similarity)`, lines 1-based, the
/// similarity in 0..=1 (1 means equal once leading and trailing whitespace is ignored).
pub fn closest_region(file: &str, old: &str) -> Option<(usize, usize, f64)> {
    let lines: Vec<&str> = file.lines().collect();
    let wanted: Vec<&str> = old
        .trim_matches('\n')
        .lines()
        .take(MAX_COMPARED_LINES)
        .collect();
    if lines.is_empty() || wanted.is_empty() {
        return None;
    }
    let n = wanted.len().min(lines.len());
    let total_lines = old.trim_matches('\n').lines().count();
    let mut best: Option<(usize, f64)> = None;
    for start in 0..=lines.len() - n {
        let score: f64 = wanted
            .iter()
            .take(n)
            .zip(&lines[start..start + n])
            .map(|(a, b)| line_similarity(a, b))
            .sum::<f64>()
            / wanted.len() as f64;
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((start, score));
        }
    }
    best.map(|(start, score)| {
        let last = (start + total_lines).min(lines.len());
        (start + 1, last, score)
    })
}

/// Dice coefficient over character bigrams of the trimmed lines.
fn line_similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (a.trim(), b.trim());
    if a == b {
        return 1.0;
    }
    let bigrams = |s: &str| -> Vec<(char, char)> {
        let c: Vec<char> = s.chars().collect();
        c.windows(2).map(|w| (w[0], w[1])).collect()
    };
    let (x, mut y) = (bigrams(a), bigrams(b));
    if x.is_empty() || y.is_empty() {
        return 0.0;
    }
    let total = x.len() + y.len();
    let mut common = 0;
    for g in &x {
        if let Some(i) = y.iter().position(|h| h == g) {
            y.swap_remove(i);
            common += 1;
        }
    }
    (2 * common) as f64 / total as f64
}

/// The error for an `oldText` that is not in the file.
pub fn not_found(path: &str, file: &str, old: &str) -> String {
    let mut s = format!(
        "Could not find oldText in {path}: it must match the file exactly, whitespace and indentation included.\n"
    );
    let lines: Vec<&str> = file.lines().collect();
    match closest_region(file, old) {
        Some((first, last, score)) if score >= MIN_SIMILARITY => {
            let why = if score >= 0.999 {
                " (it differs from oldText only in whitespace or indentation)".to_string()
            } else {
                format!(" ({:.0}% similar)", score * 100.0)
            };
            s.push_str(&format!(
                "The closest text is at lines {first}-{last}{why}:\n{}",
                numbered(&lines, first, last, CONTEXT_LINES)
            ));
            s.push_str(
                "Call edit again with oldText copied from these lines (without the line numbers and the `| ` prefix).",
            );
        }
        _ => {
            s.push_str(&format!(
                "Nothing in the file looks like oldText. The file has {} lines; read it first (read with path \"{path}\") and copy oldText from what it shows.",
                lines.len()
            ));
        }
    }
    s
}

/// The error for an `oldText` that occurs more than once.
pub fn ambiguous(path: &str, file: &str, old: &str) -> String {
    let lines: Vec<&str> = file.lines().collect();
    let starts: Vec<usize> = file.match_indices(old).map(|(i, _)| i).collect();
    let mut s = format!(
        "oldText occurs {} times in {path}; an edit must say which one:\n",
        starts.len()
    );
    // One entry per line, with a count where the text occurs more than once on it.
    let mut at: Vec<(usize, usize)> = Vec::new();
    for &b in &starts {
        let n = line_at(file, b);
        match at.last_mut() {
            Some((l, c)) if *l == n => *c += 1,
            _ => at.push((n, 1)),
        }
    }
    for &(n, count) in at.iter().take(MAX_LISTED_MATCHES) {
        let times = if count > 1 {
            format!(" ({count} times)")
        } else {
            String::new()
        };
        s.push_str(&format!(
            "  line {n}{times}: {}\n",
            lines.get(n - 1).map(|l| l.trim()).unwrap_or("")
        ));
    }
    if at.len() > MAX_LISTED_MATCHES {
        s.push_str(&format!(
            "  ... and {} more lines\n",
            at.len() - MAX_LISTED_MATCHES
        ));
    }
    s.push_str(
        "Add neighbouring lines to oldText so it occurs once, or pass \"replace_all\": true to replace every occurrence.",
    );
    s
}

/// The success text: where the new text landed, shown with context.
pub fn edited(path: &str, updated: &str, regions: &[(usize, usize)]) -> String {
    let lines: Vec<&str> = updated.lines().collect();
    let what = if regions.len() == 1 {
        "1 occurrence".to_string()
    } else {
        format!("{} occurrences", regions.len())
    };
    let mut s = format!("Edited {path}: replaced {what}. The changed lines (marked >) now read:\n");
    for &(first, last) in regions.iter().take(MAX_LISTED_MATCHES) {
        // A deletion leaves no line of its own: show where it was.
        let last = last.max(first).min(lines.len().max(1));
        let first = first.min(last);
        s.push_str(&numbered(&lines, first, last, CONTEXT_LINES));
        s.push_str("---\n");
    }
    if regions.len() > MAX_LISTED_MATCHES {
        s.push_str(&format!(
            "... and {} more\n",
            regions.len() - MAX_LISTED_MATCHES
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n";

    #[test]
    fn the_closest_region_is_found_and_shown_with_line_numbers() {
        let msg = not_found("calc.py", FILE, "def add(a, b):\n  return a + b\n");
        assert!(msg.contains("lines 1-2"), "{msg}");
        assert!(msg.contains(">1| def add(a, b):"), "{msg}");
        assert!(msg.contains(">2|     return a - b"), "{msg}");
        assert!(msg.contains(" 5| def mul(a, b):"), "{msg}");
    }

    #[test]
    fn a_whitespace_only_difference_is_named() {
        let msg = not_found("calc.py", FILE, "def mul(a, b):\n  return a * b");
        assert!(msg.contains("lines 5-6"), "{msg}");
        assert!(msg.contains("only in whitespace"), "{msg}");
    }

    #[test]
    fn unrelated_text_says_to_read_the_file() {
        let msg = not_found("calc.py", FILE, "zzzz qqqq xxxx");
        assert!(
            msg.contains("Nothing in the file looks like oldText"),
            "{msg}"
        );
        assert!(msg.contains("6 lines"), "{msg}");
    }

    #[test]
    fn ambiguous_lists_each_line_and_offers_replace_all() {
        let msg = ambiguous("calc.py", FILE, "(a, b)");
        assert!(msg.contains("occurs 2 times"), "{msg}");
        assert!(msg.contains("line 1: def add(a, b):"), "{msg}");
        assert!(msg.contains("line 5: def mul(a, b):"), "{msg}");
        assert!(msg.contains("\"replace_all\": true"), "{msg}");
        let same_line = ambiguous("d.txt", "x x\n", "x");
        assert!(same_line.contains("line 1 (2 times): x x"), "{same_line}");
    }

    #[test]
    fn spans_and_lines() {
        assert_eq!(line_at(FILE, 0), 1);
        assert_eq!(line_at(FILE, FILE.find("return a *").unwrap_or(0)), 6);
        assert_eq!(span(FILE, 0, "def add(a, b):\n    return"), (1, 2));
        assert_eq!(span(FILE, 0, "def add(a, b):\n"), (1, 1));
    }

    #[test]
    fn an_edit_is_shown_in_context() {
        let s = edited("calc.py", FILE, &[(2, 2)]);
        assert!(s.contains("replaced 1 occurrence"), "{s}");
        assert!(s.contains(">2|     return a - b"), "{s}");
        assert!(s.contains(" 5| def mul"), "{s}");
        assert!(!s.contains(" 6|"), "{s}");
    }
}
