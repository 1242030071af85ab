//! `multipart/form-data` (RFC 7578) as the OpenAI audio upload uses it: the boundary from the
//! content type, the parts' names, and one text field replaced in place (the gateway swaps the
//! model name) with every other byte kept.

use bytes::{Bytes, BytesMut};

/// One part: its field name, file name, and where its content lies in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    /// The content's byte range in the body.
    pub start: usize,
    pub end: usize,
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut it = content_type.split(';');
    let kind = it.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    it.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
    .filter(|b| !b.is_empty() && b.len() <= 70)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|i| i + from)
}

/// A quoted or bare parameter of a `Content-Disposition` header.
fn param(header: &str, key: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The parts of `body`, or why it is not a well-formed form.
pub fn parts(body: &[u8], boundary: &str) -> Result<Vec<Part>, &'static str> {
    let delim = format!("--{boundary}");
    let mut pos = find(body, delim.as_bytes(), 0).ok_or("no boundary line")?;
    let mut out = Vec::new();
    loop {
        pos += delim.len();
        if body.get(pos..pos + 2) == Some(b"--") {
            return Ok(out);
        }
        if body.get(pos..pos + 2) != Some(b"\r\n") {
            return Err("a boundary line is not followed by CRLF");
        }
        pos += 2;
        let head_end =
            find(body, b"\r\n\r\n", pos).ok_or("a part has no blank line after its headers")?;
        let head =
            std::str::from_utf8(&body[pos..head_end]).map_err(|_| "part headers are not UTF-8")?;
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                name = param(v, "name");
                filename = param(v, "filename");
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_string());
            }
        }
        let start = head_end + 4;
        let next = find(body, format!("\r\n{delim}").as_bytes(), start)
            .ok_or("a part is not closed by a boundary line")?;
        out.push(Part {
            name: name.ok_or("a part has no name")?,
            filename,
            content_type,
            start,
            end: next,
        });
        pos = next + 2;
    }
}

/// `body` with the content of field `name` replaced by `value`; `None` if there is no such
/// field.
pub fn replace_field(body: &[u8], parts: &[Part], name: &str, value: &str) -> Option<Bytes> {
    let p = parts.iter().find(|p| p.name == name)?;
    let mut out = BytesMut::with_capacity(body.len() + value.len());
    out.extend_from_slice(&body[..p.start]);
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&body[p.end..]);
    Some(out.freeze())
}

/// A text field's value.
pub fn text<'b>(body: &'b [u8], parts: &[Part], name: &str) -> Option<&'b str> {
    let p = parts.iter().find(|p| p.name == name)?;
    std::str::from_utf8(&body[p.start..p.end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--not-it\x00\xff\r\n--XyZ--\r\n";

    #[test]
    fn parts_and_a_replaced_field() {
        assert_eq!(
            boundary("multipart/form-data; boundary=\"XyZ\"").as_deref(),
            Some("XyZ")
        );
        assert_eq!(boundary("application/json"), None);
        let p = parts(BODY, "XyZ").unwrap_or_default();
        assert_eq!(p.len(), 2);
        assert_eq!(text(BODY, &p, "model"), Some("whisper"));
        assert_eq!(p[1].filename.as_deref(), Some("a.wav"));
        assert_eq!(&BODY[p[1].start..p[1].end], b"RIFF\r\n--not-it\x00\xff");
        let out = replace_field(BODY, &p, "model", "whisper-1").unwrap_or_default();
        let q = parts(&out, "XyZ").unwrap_or_default();
        assert_eq!(text(&out, &q, "model"), Some("whisper-1"));
        assert_eq!(&out[q[1].start..q[1].end], &BODY[p[1].start..p[1].end]);
        assert!(parts(b"--XyZ\r\nno blank line", "XyZ").is_err());
    }
}
