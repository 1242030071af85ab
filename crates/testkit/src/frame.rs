//! Server-sent-event framing written by the testkit itself (never by the gateway's wire crate,
//! so a framing bug on either side shows), and the shapes real servers give it: CRLF line ends
//! (some Python and .NET stacks), frames split across TCP writes (every server under load), and
//! keep-alive comments between events (OpenRouter, vLLM behind nginx, Anthropic's `ping` aside).

use axum::body::Bytes;

/// How a fake lays out its SSE frames on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Framing {
    /// `data: ...\n\n`, one frame per write.
    #[default]
    Lf,
    /// `data: ...\r\n\r\n`.
    Crlf,
    /// Every frame cut into two writes in the middle of its line.
    Split,
    /// A `: keep-alive` comment before every frame.
    KeepAlive,
}

/// One `data:` frame.
pub fn data(payload: &str) -> Bytes {
    Bytes::from(format!("data: {payload}\n\n"))
}

/// One named event frame.
pub fn event(name: &str, payload: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {payload}\n\n"))
}

/// The frames as they go out under `framing`.
pub fn shape(frames: Vec<Bytes>, framing: Framing) -> Vec<Bytes> {
    match framing {
        Framing::Lf => frames,
        Framing::Crlf => frames
            .into_iter()
            .map(|f| Bytes::from(String::from_utf8_lossy(&f).replace('\n', "\r\n")))
            .collect(),
        Framing::Split => frames
            .into_iter()
            .flat_map(|f| {
                let mid = (f.len() / 2).max(1).min(f.len());
                [f.slice(..mid), f.slice(mid..)]
            })
            .filter(|b| !b.is_empty())
            .collect(),
        Framing::KeepAlive => frames
            .into_iter()
            .flat_map(|f| [Bytes::from_static(b": keep-alive\n\n"), f])
            .collect(),
    }
}

/// The `data:` payloads of an SSE body, read the way the specification says (any line end,
/// comments skipped), for the testkit's own checks.
pub fn payloads(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    text.split("\n\n")
        .filter_map(|frame| {
            let data: Vec<&str> = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<Bytes> {
        vec![data("{\"a\":1}"), event("ping", "{}"), data("[DONE]")]
    }

    #[test]
    fn every_framing_carries_the_same_payloads() {
        let plain: Vec<u8> = frames().concat();
        let want = payloads(&plain);
        assert_eq!(want, ["{\"a\":1}", "{}", "[DONE]"]);
        for framing in [Framing::Crlf, Framing::Split, Framing::KeepAlive] {
            let shaped = shape(frames(), framing);
            assert_eq!(payloads(&shaped.concat()), want, "{framing:?}");
        }
    }

    #[test]
    fn shapes_differ_on_the_wire_as_named() {
        let crlf = shape(frames(), Framing::Crlf).concat();
        assert!(crlf.windows(4).any(|w| w == b"\r\n\r\n"));
        assert!(!crlf.windows(2).any(|w| w[0] != b'\r' && w[1] == b'\n'));
        let split = shape(frames(), Framing::Split);
        assert_eq!(split.len(), 6);
        assert!(!split[0].ends_with(b"\n\n"));
        let kept = shape(frames(), Framing::KeepAlive);
        assert_eq!(kept.len(), 6);
        assert_eq!(&kept[0][..], b": keep-alive\n\n");
    }
}
