//! Reading a `multipart/form-data` upload (RFC 7578) as the fake audio API does: written here,
//! not shared with the gateway, so a framing mistake in the gateway's form handling fails.

/// One field of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub filename: Option<String>,
    pub content: Vec<u8>,
}

impl Field {
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.content).ok()
    }
}

/// The boundary of a `multipart/form-data` content type (RFC 2046: at most 70 characters).
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| (1..=70).contains(&b.len()))
}

/// The fields of `body`, or why the real API would call it malformed.
pub fn fields(body: &[u8], boundary: &str) -> Result<Vec<Field>, String> {
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    // The first delimiter may start the body without the CRLF before it.
    let mut rest: Vec<u8> = b"\r\n".to_vec();
    rest.extend_from_slice(body);
    let chunks = split(&rest, &delimiter);
    let Some((_, sections)) = chunks.split_first() else {
        return Err("no boundary line".to_string());
    };
    if sections.is_empty() {
        return Err("no boundary line".to_string());
    }
    let mut out = Vec::new();
    for (i, section) in sections.iter().enumerate() {
        if section.starts_with(b"--") {
            return Ok(out);
        }
        let section = section
            .strip_prefix(b"\r\n")
            .ok_or("a boundary line is not followed by CRLF")?;
        if i + 1 == sections.len() {
            return Err("the form is not closed by a final boundary".to_string());
        }
        let blank = find(section, b"\r\n\r\n").ok_or("a part has no blank line")?;
        let head = String::from_utf8_lossy(&section[..blank]);
        let disposition = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
            .map(|(_, v)| v.to_string())
            .ok_or("a part has no Content-Disposition")?;
        let name = quoted(&disposition, "name").ok_or("a part has no name")?;
        out.push(Field {
            name,
            filename: quoted(&disposition, "filename"),
            content: section[blank + 4..].to_vec(),
        });
    }
    Err("the form is not closed by a final boundary".to_string())
}

fn quoted(header: &str, key: &str) -> Option<String> {
    header
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn split<'a>(hay: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = hay;
    while let Some(i) = find(rest, delimiter) {
        out.push(&rest[..i]);
        rest = &rest[i + delimiter.len()..];
    }
    out.push(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--not\x00\xff\r\n--XyZ--\r\n";

    #[test]
    fn reads_text_and_file_fields() {
        let b = boundary("multipart/form-data; boundary=\"XyZ\"").unwrap();
        let f = fields(BODY, &b).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].name.as_str(), f[0].text()),
            ("model", Some("whisper-1"))
        );
        assert_eq!(f[1].filename.as_deref(), Some("a.wav"));
        assert_eq!(f[1].content, b"RIFF\r\n--not\x00\xff");
    }

    #[test]
    fn refuses_what_is_not_a_closed_form() {
        assert!(boundary("application/json").is_none());
        let open = &BODY[..BODY.len() - 9];
        assert!(fields(open, "XyZ").unwrap_err().contains("not closed"));
        assert!(fields(b"hello", "XyZ").unwrap_err().contains("no boundary"));
    }
}
