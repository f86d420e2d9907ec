//! The stream grammar checker rejects broken Responses streams.

use super::*;
use crate::sse::SseEvent;

fn reframe(events: &[SseEvent], renumber: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, ev) in events.iter().enumerate() {
        let mut data = ev.data.clone();
        if renumber {
            if let Ok(mut v) = serde_json::from_str::<Value>(&data) {
                v["sequence_number"] = json!(n);
                data = v.to_string();
            }
        }
        sse::frame(&mut out, ev.event.as_deref(), &data);
    }
    out
}

fn set(ev: &mut SseEvent, key: &str, value: Value) {
    let mut v: Value = serde_json::from_str(&ev.data).unwrap();
    v[key] = value;
    ev.data = v.to_string();
}

#[test]
fn validate_rejects_broken_streams() {
    let good = sse::parse(&encode(&sequences()[0].1)).unwrap();
    assert!(validate_stream(&reframe(&good, true)).is_ok());
    let find = |name: &str| good.iter().position(|e| e.event.as_deref() == Some(name)).unwrap();
    type Mutation = Box<dyn Fn(&mut Vec<SseEvent>)>;
    let text_delta = find("response.output_text.delta");
    let first_added = find("response.output_item.added");
    let cases: Vec<(&str, bool, Mutation, &str)> = vec![
        ("missing terminal", true, Box::new(|e| drop(e.pop())), "ends without"),
        ("empty stream", true, Box::new(|e| e.clear()), "ends without"),
        ("bad JSON", true, Box::new(move |e| e[text_delta].data = "{oops".into()), "not JSON"),
        ("bad index", true, Box::new(move |e| set(&mut e[first_added], "output_index", json!(3))), "output_index"),
        (
            "delta before its item",
            true,
            Box::new(move |e| {
                let d = e.remove(text_delta);
                e.insert(2, d);
            }),
            "never added",
        ),
        ("sequence gap", false, Box::new(move |e| drop(e.remove(text_delta))), "sequence_number"),
        (
            "item not done before completed",
            true,
            Box::new(|e| {
                let i = e.iter().rposition(|x| x.event.as_deref() == Some("response.output_item.done")).unwrap();
                e.remove(i);
            }),
            "not done",
        ),
        ("event after terminal", true, Box::new(|e| e.push(e[2].clone())), "follows the terminal"),
        (
            "type differs from event name",
            true,
            Box::new(move |e| e[text_delta].event = Some("response.refusal.delta".into())),
            "differs",
        ),
        ("missing event name", true, Box::new(move |e| e[text_delta].event = None), "no event name"),
        ("not starting with created", true, Box::new(|e| drop(e.remove(0))), "starts with"),
        (
            "delta after its part closed",
            true,
            Box::new(move |e| {
                let d = e[text_delta].clone();
                let i = e.iter().position(|x| x.event.as_deref() == Some("response.content_part.done")).unwrap();
                e.insert(i + 1, d);
            }),
            "not open",
        ),
        (
            "unknown event",
            true,
            Box::new(move |e| {
                e[text_delta].event = Some("response.bogus".into());
                set(&mut e[text_delta], "type", json!("response.bogus"));
            }),
            "unknown event",
        ),
        (
            "wrong terminal status",
            true,
            Box::new(|e| {
                let last = e.len() - 1;
                let mut v: Value = serde_json::from_str(&e[last].data).unwrap();
                v["response"]["status"] = json!("in_progress");
                e[last].data = v.to_string();
            }),
            "status",
        ),
    ];
    for (name, renumber, mutate, want) in cases {
        let mut events = good.clone();
        mutate(&mut events);
        let err = validate_stream(&reframe(&events, renumber)).expect_err(name);
        assert!(err.contains(want), "{name}: {err}");
    }
    assert!(validate_stream(b"event: response.created\ndata: {}").is_err());
}
