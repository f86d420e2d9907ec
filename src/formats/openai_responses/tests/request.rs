//! `parse_request`: client bodies, fixtures and the 400s for bad ones.

use super::*;

const CODEX_EXPECTED: &str = include_str!("../../../../tests/fixtures/openai_responses/codex_request.expected.json");
const PARSE_CASES: &str = include_str!("../../../../tests/fixtures/openai_responses/parse_cases.json");
const BAD_REQUESTS: &str = include_str!("../../../../tests/fixtures/openai_responses/bad_requests.json");

fn check_parse(name: &str, request: &Value, expected: &Value) {
    let got = parse(&request.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want: ChatRequest = serde_json::from_value(expected.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(got, want, "{name}");
}

#[test]
fn codex_request_parses() {
    let request: Value = serde_json::from_str(CODEX).unwrap();
    let expected: Value = serde_json::from_str(CODEX_EXPECTED).unwrap();
    check_parse("codex", &request, &expected);
}

#[test]
fn parse_cases() {
    let cases: Vec<Value> = serde_json::from_str(PARSE_CASES).unwrap();
    assert!(cases.len() >= 4);
    for case in &cases {
        check_parse(case["name"].as_str().unwrap(), &case["request"], &case["expected"]);
    }
}

#[test]
fn bad_requests_are_400_naming_the_field() {
    let cases: Vec<Value> = serde_json::from_str(BAD_REQUESTS).unwrap();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let body = match case.get("raw") {
            Some(raw) => raw.as_str().unwrap().to_string(),
            None => case["request"].to_string(),
        };
        let err = parse(&body).expect_err(name);
        assert_eq!(err.status, 400, "{name}: {err}");
        let want = case["error"].as_str().unwrap();
        assert!(err.message.contains(want), "{name}: {:?} does not contain {want:?}", err.message);
    }
}

#[test]
fn model_from_context_wins() {
    let ctx = ParseContext { model: Some("from-url".into()), ..Default::default() };
    let req = parse_request(br#"{"input":"hi"}"#, &ctx).unwrap();
    assert_eq!(req.model, "from-url");
}

#[test]
fn codex_request_survives_build_and_reparse() {
    let first = parse(CODEX).unwrap();
    let body = build_request(&first, "gpt-5-codex").unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["include"], json!(["reasoning.encrypted_content"]));
    assert_eq!(body["store"], json!(false));
    assert!(body.get("instructions").is_some());
    let second = parse(&body.to_string()).unwrap();
    assert_eq!(second, first);
}
