#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! SigV4 signing against AWS's published test vectors (`tests/fixtures/sigv4/`, see its
//! README for the source): for every case, the headers `sign` adds are exactly the ones in
//! the expected signed request.

use std::path::Path;

use idlehands_translate::bedrock::{AwsCredentials, SigningRequest, sign};
use serde_json::Value;

struct Case {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// `request.txt`: request line, `Name:value` headers, a blank line, the body.
fn parse_request(text: &str) -> Case {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let mut first = lines.next().unwrap().split(' ');
    let method = first.next().unwrap().to_string();
    let path = first.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let host = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .unwrap();
    Case {
        method,
        url: format!("https://{host}{path}"),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// The headers a signer adds, from `header-signed-request.txt`, lower-cased and sorted.
fn expected_added(signed: &str, original: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = signed
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .filter(|(k, v)| {
            !original
                .iter()
                .any(|(ok, ov)| ok.eq_ignore_ascii_case(k) && ov == v)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_vector_signs_as_aws_publishes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sigv4");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 22, "{cases:?}");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let read = |f: &str| std::fs::read_to_string(case.join(f)).unwrap();
        let context: Value = serde_json::from_str(&read("context.json")).unwrap();
        let req = parse_request(&read("request.txt"));
        let creds = AwsCredentials {
            access_key_id: context["credentials"]["access_key_id"]
                .as_str()
                .unwrap()
                .to_string(),
            secret_access_key: context["credentials"]["secret_access_key"]
                .as_str()
                .unwrap()
                .to_string(),
            session_token: context["credentials"]["token"].as_str().map(str::to_string),
        };
        let amz_date = context["timestamp"]
            .as_str()
            .unwrap()
            .replace(['-', ':'], "");
        let mut got = sign(
            &SigningRequest {
                method: &req.method,
                url: &req.url,
                headers: &req.headers,
                body: &req.body,
                region: context["region"].as_str().unwrap(),
                service: context["service"].as_str().unwrap(),
                amz_date: &amz_date,
            },
            &creds,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        got.sort();
        assert_eq!(
            got,
            expected_added(&read("header-signed-request.txt"), &req.headers),
            "{name}"
        );
    }
}
