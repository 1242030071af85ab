//! Markdown in the terminal chat: headings, lists, quotes, rules, fenced code blocks and inline
//! bold, italic, code and links, as terminal styles. Block structure is read line by line (so
//! a streamed answer is shown a line at a time, as it completes); inline markup is parsed by
//! `pulldown-cmark`. Fenced code blocks are set apart with their language named and highlighted
//! by `syntect` (Sublime Text grammars) when it knows the language.

use std::sync::LazyLock;

use pulldown_cmark::{Event, Parser, Tag, TagEnd};
use syntect::easy::HighlightLines;
use syntect::highlighting::ThemeSet;
use syntect::parsing::SyntaxSet;

use super::screen::{BOLD, CYAN, DIM, RESET};

const YELLOW: &str = "\x1b[33m";
const ITALIC: &str = "\x1b[3m";
const NO_ITALIC: &str = "\x1b[23m";
const NO_BOLD: &str = "\x1b[22m";
const UNDERLINE: &str = "\x1b[4m";
const NO_UNDERLINE: &str = "\x1b[24m";

static SYNTAXES: LazyLock<SyntaxSet> = LazyLock::new(SyntaxSet::load_defaults_nonewlines);
static THEMES: LazyLock<ThemeSet> = LazyLock::new(ThemeSet::load_defaults);

/// An open fenced code block: its highlighter, when the language is known.
pub struct CodeBlock {
    highlighter: Option<HighlightLines<'static>>,
}

impl CodeBlock {
    fn open(lang: &str) -> Self {
        let syntax = (!lang.is_empty())
            .then(|| SYNTAXES.find_syntax_by_token(lang))
            .flatten();
        let theme = THEMES.themes.get("base16-ocean.dark");
        let highlighter = match (syntax, theme) {
            (Some(s), Some(t)) => Some(HighlightLines::new(s, t)),
            _ => None,
        };
        Self { highlighter }
    }

    fn line(&mut self, line: &str) -> String {
        if let Some(h) = &mut self.highlighter
            && let Ok(ranges) = h.highlight_line(line, &SYNTAXES)
        {
            return format!(
                "{}{RESET}",
                syntect::util::as_24_bit_terminal_escaped(&ranges, false)
            );
        }
        format!("{YELLOW}{line}{RESET}")
    }
}

/// Renders a streamed answer: whole lines as they complete, the rest on [`Self::finish`].
#[derive(Default)]
pub struct MarkdownStream {
    pending: String,
    /// Inside a fenced code block.
    code: Option<CodeBlock>,
}

impl MarkdownStream {
    /// Takes a delta; returns the rendered text of the lines it completed.
    pub fn push(&mut self, delta: &str) -> String {
        self.pending.push_str(delta);
        let mut out = String::new();
        while let Some(i) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=i).collect();
            out.push_str(&render_line(
                line.trim_end_matches(['\n', '\r']),
                &mut self.code,
            ));
            out.push('\n');
        }
        out
    }

    /// The rendered rest (a last line without its newline), and a reset for the next answer.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        let out = if rest.is_empty() {
            String::new()
        } else {
            render_line(&rest, &mut self.code)
        };
        self.code = None;
        out
    }
}

/// A whole message (an anton progress line, say), rendered.
pub fn render(text: &str) -> String {
    let mut code = None;
    text.lines()
        .map(|l| render_line(l, &mut code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line, given (and updating) whether it is inside a fenced code block.
pub fn render_line(line: &str, code: &mut Option<CodeBlock>) -> String {
    let trimmed = line.trim_start();
    if let Some(rest) = trimmed
        .strip_prefix("```")
        .or_else(|| trimmed.strip_prefix("~~~"))
    {
        return match code.take() {
            Some(_) => format!("{DIM}└─{RESET}"),
            None => {
                let lang = rest.trim();
                *code = Some(CodeBlock::open(lang));
                let shown = if lang.is_empty() { "code" } else { lang };
                format!("{DIM}┌─ {shown}{RESET}")
            }
        };
    }
    if let Some(block) = code {
        return format!("{DIM}│{RESET} {}", block.line(line));
    }
    let indent = &line[..line.len() - trimmed.len()];
    let hashes = trimmed.chars().take_while(|c| *c == '#').count();
    if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
        return format!("{BOLD}{CYAN}{}{RESET}", inline(trimmed[hashes..].trim()));
    }
    if matches!(trimmed, "---" | "***" | "___") {
        return format!("{DIM}{}{RESET}", "─".repeat(40));
    }
    if let Some(rest) = trimmed
        .strip_prefix("> ")
        .or(trimmed.strip_prefix('>').filter(|r| r.is_empty()))
    {
        return format!("{indent}{DIM}│{RESET} {}", inline(rest));
    }
    for bullet in ["- ", "* ", "+ "] {
        if let Some(rest) = trimmed.strip_prefix(bullet) {
            return format!("{indent}{CYAN}•{RESET} {}", inline(rest));
        }
    }
    let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
    if digits > 0
        && let Some(rest) = trimmed[digits..]
            .strip_prefix(". ")
            .or_else(|| trimmed[digits..].strip_prefix(") "))
    {
        return format!(
            "{indent}{CYAN}{}.{RESET} {}",
            &trimmed[..digits],
            inline(rest)
        );
    }
    format!("{indent}{}", inline(trimmed))
}

/// Inline markup of one line: bold, italic, code spans, links.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut link: Vec<String> = Vec::new();
    for ev in Parser::new(text) {
        match ev {
            Event::Text(t) => out.push_str(&t),
            Event::Code(c) => out.push_str(&format!("{YELLOW}{c}{RESET}")),
            Event::Start(Tag::Strong) => out.push_str(BOLD),
            Event::End(TagEnd::Strong) => out.push_str(NO_BOLD),
            Event::Start(Tag::Emphasis) => out.push_str(ITALIC),
            Event::End(TagEnd::Emphasis) => out.push_str(NO_ITALIC),
            Event::Start(Tag::Link { dest_url, .. }) => {
                link.push(dest_url.to_string());
                out.push_str(UNDERLINE);
            }
            Event::End(TagEnd::Link) => {
                out.push_str(NO_UNDERLINE);
                if let Some(url) = link.pop()
                    && !out.ends_with(url.as_str())
                {
                    out.push_str(&format!(" {DIM}({url}){RESET}"));
                }
            }
            Event::SoftBreak => out.push(' '),
            Event::HardBreak => out.push('\n'),
            Event::Html(h) | Event::InlineHtml(h) => out.push_str(&h),
            Event::FootnoteReference(r) => out.push_str(&r),
            Event::TaskListMarker(done) => out.push_str(if done { "[x] " } else { "[ ] " }),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text without terminal styles.
    fn plain(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn blocks_and_inline_markup() {
        let md = "# Title\nSome **bold** and `code` and *it*.\n- one\n2. two\n> quoted\n```rust\nfn main() {}\n```\n[docs](https://x.test)";
        let r = render(md);
        assert_eq!(
            plain(&r),
            "Title\nSome bold and code and it.\n• one\n2. two\n│ quoted\n┌─ rust\n│ fn main() {}\n└─\ndocs (https://x.test)"
        );
        assert!(r.contains(&format!("{BOLD}bold{NO_BOLD}")));
        assert!(r.contains(&format!("{YELLOW}code{RESET}")));
        // A known language is highlighted (24-bit colours), an unknown one plain.
        assert!(render("```rust\nfn main() {}\n```").contains("\x1b[38;2;"));
        assert!(!render("```nolang\nfn main() {}\n```").contains("\x1b[38;2;"));
        // Markup inside code blocks is left alone.
        assert_eq!(
            plain(&render("```\n**not bold**\n```")),
            "┌─ code\n│ **not bold**\n└─"
        );
    }

    #[test]
    fn streams_a_line_at_a_time() {
        let mut s = MarkdownStream::default();
        assert_eq!(s.push("## He"), "");
        assert_eq!(plain(&s.push("ading\nand **mo")), "Heading\n");
        assert_eq!(plain(&s.finish()), "and **mo");
        assert_eq!(plain(&s.push("```\nx\n")), "┌─ code\n│ x\n");
        // A new answer starts outside any code block.
        s.finish();
        assert_eq!(plain(&s.push("y\n")), "y\n");
    }
}
