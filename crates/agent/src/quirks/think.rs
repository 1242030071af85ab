//! Reasoning written inline in `content` between `<think>`, `<thinking>` or `<reasoning>`
//! tags (Qwen3, DeepSeek-R1 distills and others behind llama-server or Ollama without a
//! reasoning parser) is split out so it is shown and stored as reasoning, not as the answer.
//! The splitter works on streamed pieces: a tag cut across two chunks is held back until it
//! can be told apart from ordinary text.

const TAGS: &[&str] = &["think", "thinking", "reasoning"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Reasoning(String),
}

#[derive(Debug, Default)]
pub struct ThinkSplitter {
    pending: String,
    /// The tag whose closing form ends the current reasoning span.
    inside: Option<&'static str>,
    /// Just after a tag: the newline models put after `<think>`/`</think>` is layout.
    trim_next: bool,
    /// Whether any tag was seen yet.
    seen_tag: bool,
    /// A closing tag came with no opening one (the template put `<think>` in the prompt, as
    /// DeepSeek-R1 distills and QwQ do): the text before it was reasoning.
    orphan_close: bool,
}

impl ThinkSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one piece of `content`; returns what can be shown now.
    pub fn push(&mut self, chunk: &str) -> Vec<Piece> {
        self.pending.push_str(chunk);
        let mut out = Vec::new();
        loop {
            match self.inside {
                Some(tag) => {
                    let close = format!("</{tag}>");
                    if let Some(pos) = self.pending.find(&close) {
                        let body: String = self.pending.drain(..pos).collect();
                        self.pending.drain(..close.len());
                        self.emit(&mut out, body, true);
                        self.inside = None;
                        self.trim_next = true;
                        continue;
                    }
                    let keep = partial_suffix(&self.pending, &[close.as_str()]);
                    let body: String = self.pending.drain(..self.pending.len() - keep).collect();
                    self.emit(&mut out, body, true);
                }
                None => {
                    if !self.seen_tag
                        && let Some((pos, len)) = TAGS
                            .iter()
                            .filter_map(|t| {
                                let close = format!("</{t}>");
                                self.pending.find(&close).map(|p| (p, close.len()))
                            })
                            .min_by_key(|(p, _)| *p)
                        && !TAGS
                            .iter()
                            .any(|t| self.pending[..pos].contains(&format!("<{t}>")))
                    {
                        let body: String = self.pending.drain(..pos).collect();
                        self.pending.drain(..len);
                        self.emit(&mut out, body, true);
                        self.seen_tag = true;
                        self.orphan_close = true;
                        self.trim_next = true;
                        continue;
                    }
                    let found = TAGS
                        .iter()
                        .filter_map(|t| {
                            let open = format!("<{t}>");
                            self.pending.find(&open).map(|p| (p, *t, open.len()))
                        })
                        .min_by_key(|(p, _, _)| *p);
                    if let Some((pos, tag, len)) = found {
                        let before: String = self.pending.drain(..pos).collect();
                        self.pending.drain(..len);
                        self.emit(&mut out, before, false);
                        self.seen_tag = true;
                        self.inside = Some(tag);
                        self.trim_next = true;
                        continue;
                    }
                    let mut opens: Vec<String> = TAGS.iter().map(|t| format!("<{t}>")).collect();
                    if !self.seen_tag {
                        opens.extend(TAGS.iter().map(|t| format!("</{t}>")));
                    }
                    let refs: Vec<&str> = opens.iter().map(String::as_str).collect();
                    let keep = partial_suffix(&self.pending, &refs);
                    let text: String = self.pending.drain(..self.pending.len() - keep).collect();
                    self.emit(&mut out, text, false);
                }
            }
            return out;
        }
    }

    /// Whether a closing tag with no opening one was met since the last call: the text
    /// shown before it was reasoning after all, and the caller should move it there.
    pub fn take_orphan_close(&mut self) -> bool {
        std::mem::take(&mut self.orphan_close)
    }

    /// The end of the content: whatever was held back. An unclosed span stays reasoning
    /// (the model ran out of tokens while thinking).
    pub fn finish(&mut self) -> Vec<Piece> {
        let rest = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        let reasoning = self.inside.is_some();
        self.emit(&mut out, rest, reasoning);
        out
    }

    fn emit(&mut self, out: &mut Vec<Piece>, mut s: String, reasoning: bool) {
        if self.trim_next {
            let t = s.trim_start_matches(['\n', '\r']);
            if t.is_empty() {
                // Only layout so far: keep trimming what comes next.
                return;
            }
            s = t.to_string();
            self.trim_next = false;
        }
        if s.is_empty() {
            return;
        }
        // Merge with the previous piece of the same kind so callers see fewer fragments.
        match (out.last_mut(), reasoning) {
            (Some(Piece::Reasoning(r)), true) => r.push_str(&s),
            (Some(Piece::Text(t)), false) => t.push_str(&s),
            (_, true) => out.push(Piece::Reasoning(s)),
            (_, false) => out.push(Piece::Text(s)),
        }
    }
}

/// Length of the longest suffix of `s` that is a proper prefix of one of `tags`.
fn partial_suffix(s: &str, tags: &[&str]) -> usize {
    let Some(lt) = s.rfind('<') else {
        return 0;
    };
    let tail = &s[lt..];
    if tags
        .iter()
        .any(|t| t.len() > tail.len() && t.starts_with(tail))
    {
        tail.len()
    } else {
        0
    }
}

/// Split a whole (non-streamed) content string: `(text, reasoning)`.
pub fn split(content: &str) -> (String, String) {
    let mut s = ThinkSplitter::new();
    let mut pieces = s.push(content);
    pieces.extend(s.finish());
    let mut text = String::new();
    let mut reasoning = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => text.push_str(&t),
            Piece::Reasoning(r) => reasoning.push_str(&r),
        }
    }
    (text, reasoning)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_chunks(content: &str, size: usize) -> (String, String) {
        let chars: Vec<char> = content.chars().collect();
        let mut s = ThinkSplitter::new();
        let mut pieces = Vec::new();
        for c in chars.chunks(size) {
            pieces.extend(s.push(&c.iter().collect::<String>()));
        }
        pieces.extend(s.finish());
        let mut text = String::new();
        let mut reasoning = String::new();
        for p in pieces {
            match p {
                Piece::Text(t) => text.push_str(&t),
                Piece::Reasoning(r) => reasoning.push_str(&r),
            }
        }
        (text, reasoning)
    }

    #[test]
    fn all_three_tag_names_are_split_whole_and_at_every_chunk_size() {
        for tag in ["think", "thinking", "reasoning"] {
            let content = format!("<{tag}>\nThe user wants 2+2.\n</{tag}>\n\nIt is 4.");
            assert_eq!(
                split(&content),
                ("It is 4.".to_string(), "The user wants 2+2.\n".to_string()),
                "{tag}"
            );
            for size in 1..=content.len() {
                assert_eq!(
                    by_chunks(&content, size),
                    ("It is 4.".to_string(), "The user wants 2+2.\n".to_string()),
                    "{tag} in chunks of {size}"
                );
            }
        }
    }

    #[test]
    fn text_that_only_looks_like_a_tag_is_kept() {
        let content = "Use a <div> or x < y; see <thinker> and <think";
        for size in 1..=content.len() {
            assert_eq!(
                by_chunks(content, size),
                (content.to_string(), String::new())
            );
        }
    }

    #[test]
    fn an_unclosed_span_is_reasoning_and_text_before_a_span_stays_text() {
        assert_eq!(
            split("Let me see. <think>hmm, cut off"),
            ("Let me see. ".to_string(), "hmm, cut off".to_string())
        );
    }

    #[test]
    fn the_first_piece_streams_before_the_close_tag_arrives() {
        let mut s = ThinkSplitter::new();
        assert_eq!(
            s.push("<think>step one"),
            vec![Piece::Reasoning("step one".into())]
        );
        assert_eq!(
            s.push(" and two</th"),
            vec![Piece::Reasoning(" and two".into())]
        );
        assert_eq!(s.push("ink>Done"), vec![Piece::Text("Done".into())]);
        assert!(s.finish().is_empty());
    }

    #[test]
    fn a_closing_tag_without_an_opening_one_ends_reasoning() {
        let mut s = ThinkSplitter::new();
        assert_eq!(
            s.push("The user greets. "),
            vec![Piece::Text("The user greets. ".into())]
        );
        assert_eq!(s.push("Reply.</th"), vec![Piece::Text("Reply.".into())]);
        assert_eq!(s.push("ink>\n\nHi!"), vec![Piece::Text("Hi!".into())]);
        assert!(s.take_orphan_close());
        assert!(!s.take_orphan_close());
        // Once a tag was seen, a later stray closing tag is text.
        assert_eq!(
            split("<think>a</think>b</think>c"),
            ("b</think>c".into(), "a".into())
        );
    }
}
