#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The event-stream decoder against AWS's published test vectors (`tests/fixtures/eventstream/`,
//! see its README for the source): every positive vector decodes to the headers and payload
//! AWS lists, read whole or a byte at a time, and encodes back to the same bytes; every
//! negative vector is refused with the error AWS names.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use idlehands_translate::TranslateError;
use idlehands_translate::bedrock::{EventMessage, EventStreamDecoder, HeaderValue};
use serde_json::Value;

fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eventstream")
        .join(kind)
}

/// The case names in `encoded/<sign>`, each with its bytes and `decoded/<sign>` text.
fn cases(sign: &str) -> Vec<(String, Vec<u8>, String)> {
    let mut names: Vec<String> = std::fs::read_dir(dir(&format!("encoded/{sign}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let encoded = std::fs::read(dir(&format!("encoded/{sign}/{name}"))).unwrap();
            let decoded = std::fs::read_to_string(dir(&format!("decoded/{sign}/{name}"))).unwrap();
            (name, encoded, decoded)
        })
        .collect()
}

fn b64(v: &Value) -> Vec<u8> {
    STANDARD.decode(v.as_str().unwrap()).unwrap()
}

/// A header of `decoded/positive/*` in this crate's terms; `type` is the wire type byte.
fn header(h: &Value) -> (String, HeaderValue) {
    let value = &h["value"];
    let int = || value.as_i64().unwrap();
    let v = match h["type"].as_u64().unwrap() {
        0 | 1 => HeaderValue::Bool(value.as_bool().unwrap()),
        2 => HeaderValue::Byte(i8::try_from(int()).unwrap()),
        3 => HeaderValue::Short(i16::try_from(int()).unwrap()),
        4 => HeaderValue::Int(i32::try_from(int()).unwrap()),
        5 => HeaderValue::Long(int()),
        6 => HeaderValue::Bytes(b64(value)),
        7 => HeaderValue::String(String::from_utf8(b64(value)).unwrap()),
        8 => HeaderValue::Timestamp(int()),
        9 => HeaderValue::Uuid(b64(value).try_into().unwrap()),
        other => panic!("unknown header type {other}"),
    };
    (h["name"].as_str().unwrap().to_string(), v)
}

#[test]
fn positive_vectors_decode_to_what_aws_lists() {
    let cases = cases("positive");
    assert_eq!(cases.len(), 5, "the five positive vectors");
    for (name, bytes, decoded) in cases {
        let want: Value = serde_json::from_str(&decoded).unwrap();
        assert_eq!(
            want["total_length"].as_u64().unwrap(),
            bytes.len() as u64,
            "{name}"
        );
        let expected = EventMessage {
            headers: want["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(header)
                .collect(),
            payload: b64(&want["payload"]),
        };

        let mut dec = EventStreamDecoder::new();
        let whole = dec.push(&bytes).unwrap();
        assert_eq!(whole, vec![expected.clone()], "{name}");
        assert_eq!(dec.pending(), 0, "{name}");

        let mut dec = EventStreamDecoder::new();
        let mut bytewise = Vec::new();
        for b in &bytes {
            bytewise.extend(dec.push(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(bytewise, vec![expected.clone()], "{name} a byte at a time");

        assert_eq!(
            expected.encode(),
            bytes,
            "{name} encodes back to AWS's bytes"
        );
    }
}

#[test]
fn negative_vectors_are_refused_with_the_named_error() {
    let cases = cases("negative");
    assert_eq!(cases.len(), 4, "the four negative vectors");
    for (name, bytes, named) in cases {
        let named = named.trim().to_ascii_lowercase();
        match EventStreamDecoder::new().push(&bytes) {
            Err(TranslateError::Untranslatable { reason, .. }) => {
                assert_eq!(reason, format!("event stream: {named}"), "{name}");
            }
            other => panic!("{name}: expected '{named}', got {other:?}"),
        }
    }
}
