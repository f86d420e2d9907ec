//! The NEW-API-compatible management API through the bridge (issue 17): the envelope,
//! paging, users and roles, tokens, and the security rules across roles and users — a common
//! user touching another user's things or an admin route gets 403/404 in the envelope and
//! nothing changes; an API token never authorises an admin operation.

mod common;

use ailurus::config::Config;
use common::mgmt::{Cred, Mgmt};
use serde_json::{json, Value};

#[tokio::test]
async fn status_self_and_the_envelope() {
    let m = Mgmt::start(1, Config::default()).await;
    let (s, v) = m.call(&Cred::None, "GET", "/api/status", None).await;
    assert_eq!((s, v["success"].as_bool(), v["data"]["quota_per_unit"].as_i64()), (200, Some(true), Some(500_000)));
    assert_eq!(v["message"], "", "{v}");
    for (cred, want) in [(m.bearer("alice"), "alice"), (m.access("root"), "root"), (m.access("ada"), "ada")] {
        let (s, v) = m.call(&cred, "GET", "/api/user/self", None).await;
        assert_eq!((s, v["data"]["username"].as_str()), (200, Some(want)), "{v}");
        assert_eq!(v["data"]["quota"].as_i64(), Some(1_000_000));
    }
    let (_, v) = m.call(&m.access("root"), "GET", "/api/user/self", None).await;
    assert_eq!((v["data"]["role"].as_i64(), v["data"]["id"].as_i64()), (Some(100), Some(1)));
    // Unknown routes of a known family: 404 in the envelope; unknown families: the bridge's 404.
    let (s, v) = m.call(&m.bearer("alice"), "PATCH", "/api/user/self", None).await;
    assert_eq!((s, v["success"].as_bool()), (404, Some(false)), "{v}");
    // The access token needs New-Api-User, and the right one.
    let Cred::Access(t, _) = m.access("ada") else { unreachable!() };
    for cred in [Cred::Access(t.clone(), String::new()), Cred::Access(t.clone(), "1".into())] {
        let (s, v) = m.call(&cred, "GET", "/api/user/self", None).await;
        assert_eq!((s, v["success"].as_bool()), (401, Some(false)), "{v}");
    }
    assert!(!v_contains_secret(&m, &v));
}

/// Whether `v` shows any person's token.
fn v_contains_secret(m: &Mgmt, v: &Value) -> bool {
    let text = v.to_string();
    m.people
        .values()
        .any(|(t, c)| text.contains(t.as_str()) || matches!(c, Cred::Access(a, _) if text.contains(a.as_str())))
}

#[tokio::test]
async fn access_tokens_come_from_get_user_token_and_a_common_user_stays_common() {
    let m = Mgmt::start(1, Config::default()).await;
    // alice (API token) makes her access token as NEW-API does, and uses it.
    let (s, v) = m.call(&m.bearer("alice"), "GET", "/api/user/token", None).await;
    assert_eq!(s, 200, "{v}");
    let access = v["data"].as_str().unwrap().to_string();
    let id = m.users.get("alice").await.unwrap().unwrap().id.to_string();
    let alice = Cred::Access(access.clone(), id);
    let (s, v) = m.call(&alice, "GET", "/api/user/self", None).await;
    assert_eq!((s, v["data"]["username"].as_str()), (200, Some("alice")));
    let (s, _) = m.call(&alice, "GET", "/api/user/", None).await;
    assert_eq!(s, 403);
    // A new one replaces it.
    let (_, v) = m.call(&alice, "GET", "/api/user/token", None).await;
    assert_ne!(v["data"].as_str(), Some(access.as_str()));
    let (s, _) = m.call(&alice, "GET", "/api/user/self", None).await;
    assert_eq!(s, 401, "the old access token no longer works");
    // An admin's API token cannot mint an admin access token.
    let (s, v) = m.call(&m.bearer("ada"), "GET", "/api/user/token", None).await;
    assert_eq!((s, v["success"].as_bool()), (403, Some(false)), "{v}");
}

/// One request of the security table: who, method, path, body, the status wanted.
struct Case {
    who: &'static str,
    method: &'static str,
    path: String,
    body: Option<Value>,
    want: u16,
}

fn case(who: &'static str, method: &'static str, path: &str, body: Option<Value>, want: u16) -> Case {
    Case { who, method, path: path.to_string(), body, want }
}

/// The users, tokens and balances as they are, to compare before and after.
async fn snapshot(m: &Mgmt) -> Value {
    let users: Vec<Value> =
        m.users.list().await.unwrap().into_iter().map(|u| json!([u.id, u.username, u.role, u.status])).collect();
    let tokens: Vec<Value> = m
        .tokens
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, r)| json!([r.id, r.user_id, r.name, r.status, r.quota_limit, r.models, r.expires_at]))
        .collect();
    let mut balances = Vec::new();
    for who in ["root", "ada", "alice", "bob"] {
        let b = m.balance(who).await;
        balances.push(json!([who, b.total, b.used, b.group]));
    }
    json!({"users": users, "tokens": tokens, "balances": balances})
}

#[tokio::test]
async fn across_roles_and_users_a_refusal_changes_nothing() {
    let m = Mgmt::start(1, Config::default()).await;
    let alice_token = m.tokens.list().await.unwrap().into_iter().find(|(_, r)| r.user_id == "alice").unwrap().1.id;
    let root_id = m.users.get("root").await.unwrap().unwrap().id;
    let ada_id = m.users.get("ada").await.unwrap().unwrap().id;
    let alice_id = m.users.get("alice").await.unwrap().unwrap().id;
    let t = |id: &str| format!("/api/token/{id}");
    let cases = [
        // A common user (API token): no admin route, nothing of bob's.
        case("bob", "GET", "/api/user/", None, 403),
        case("bob", "GET", "/api/user/search?keyword=a", None, 403),
        case("bob", "GET", &format!("/api/user/{alice_id}"), None, 403),
        case("bob", "POST", "/api/user/", Some(json!({"username": "mallory", "role": 100})), 403),
        case("bob", "PUT", "/api/user/", Some(json!({"id": alice_id, "quota": 5})), 403),
        case("bob", "DELETE", &format!("/api/user/{alice_id}"), None, 403),
        case("bob", "POST", "/api/user/manage", Some(json!({"id": alice_id, "action": "disable"})), 403),
        case("bob", "GET", &t(&alice_token), None, 404),
        case("bob", "PUT", "/api/token/", Some(json!({"id": alice_token, "name": "mine", "status": 2})), 404),
        case("bob", "DELETE", &t(&alice_token), None, 404),
        case("bob", "GET", "/api/token/?user=alice", None, 403),
        case("bob", "POST", "/api/token/", Some(json!({"name": "x", "user_id": "alice"})), 403),
        // An admin's API token is a common user's rights.
        case("ada", "GET", "/api/user/", None, 403),
        case("ada", "PUT", "/api/user/", Some(json!({"id": alice_id, "quota": 5})), 403),
        case("ada", "GET", &t(&alice_token), None, 404),
        // An admin (access token) does not reach root or its own rank.
        case("ada!", "GET", &format!("/api/user/{root_id}"), None, 403),
        case("ada!", "PUT", "/api/user/", Some(json!({"id": root_id, "status": 2})), 403),
        case("ada!", "DELETE", &format!("/api/user/{root_id}"), None, 403),
        case("ada!", "POST", "/api/user/", Some(json!({"username": "eve", "role": 10})), 403),
        case("ada!", "PUT", "/api/user/", Some(json!({"id": alice_id, "role": 100})), 403),
        case("ada!", "POST", "/api/user/manage", Some(json!({"id": alice_id, "action": "promote"})), 403),
        case("ada!", "PUT", "/api/user/", Some(json!({"id": ada_id, "role": 100})), 403),
        case("ada!", "GET", "/api/token/?user=root", None, 403),
        // No credential, a wrong one.
        case("-", "GET", "/api/user/self", None, 401),
        case("-", "GET", "/api/token/", None, 401),
        case("-", "POST", "/api/token/", Some(json!({"name": "x"})), 401),
        case("?", "GET", "/api/user/", None, 401),
        // Bad input.
        case("alice", "POST", "/api/token/", Some(json!("not an object")), 400),
        case("alice", "GET", "/api/token/?p=x", None, 400),
        case("root!", "POST", "/api/user/", Some(json!({"username": "bad name!"})), 400),
        case("root!", "POST", "/api/user/", Some(json!({"username": "alice"})), 409),
        case("root!", "GET", "/api/user/999", None, 404),
    ];
    let before = snapshot(&m).await;
    for c in &cases {
        let cred = match c.who {
            "-" => Cred::None,
            "?" => Cred::Bearer("sk-ail-forged0000000000000000000000000000000000".into()),
            w if w.ends_with('!') => m.access(w.trim_end_matches('!')),
            w => m.bearer(w),
        };
        let (s, v) = m.call(&cred, c.method, &c.path, c.body.clone()).await;
        assert_eq!(s, c.want, "{} {} {} → {v}", c.who, c.method, c.path);
        assert_eq!((v["success"].as_bool(), v["message"].is_string()), (Some(false), true), "{v}");
        assert!(!v_contains_secret(&m, &v), "{v}");
    }
    assert_eq!(snapshot(&m).await, before, "a refused request changed something");
}

#[tokio::test]
async fn admins_manage_users_and_everyone_their_tokens() {
    let m = Mgmt::start(1, Config::default()).await;
    let root = m.access("root");
    let ada = m.access("ada");
    // Users: list (paged), search, create, get, update, manage, delete.
    let (s, v) = m.call(&root, "GET", "/api/user/?p=1&page_size=3", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["data"]["total"].as_i64(), v["data"]["page_size"].as_i64()), (Some(4), Some(3)));
    assert_eq!(v["data"]["items"].as_array().unwrap().len(), 3);
    let (_, v) = m.call(&root, "GET", "/api/user/?p=2&page_size=3", None).await;
    assert_eq!(v["data"]["items"][0]["username"], "bob", "{v}");
    let (_, v) = m.call(&ada, "GET", "/api/user/search?keyword=ali", None).await;
    assert_eq!(v["data"]["items"].as_array().map(Vec::len), Some(1), "{v}");
    let (s, v) = m.call(&ada, "POST", "/api/user/", Some(json!({"username": "carol", "display_name": "Carol"}))).await;
    assert_eq!((s, v["data"]["role"].as_i64()), (200, Some(1)), "{v}");
    let carol = v["data"]["id"].as_i64().unwrap();
    let (s, v) = m.call(&ada, "PUT", "/api/user/", Some(json!({"id": carol, "quota": 700, "group": "vip"}))).await;
    assert_eq!((s, v["data"]["quota"].as_i64(), v["data"]["group"].as_str()), (200, Some(700), Some("vip")), "{v}");
    let (_, v) = m.call(&ada, "POST", "/api/user/manage", Some(json!({"id": carol, "action": "disable"}))).await;
    assert_eq!(v["data"]["status"].as_i64(), Some(2), "{v}");
    let (_, v) = m.call(&root, "POST", "/api/user/manage", Some(json!({"id": carol, "action": "promote"}))).await;
    assert_eq!(v["data"]["role"].as_i64(), Some(10), "{v}");
    let (s, _) = m.call(&ada, "DELETE", &format!("/api/user/{carol}"), None).await;
    assert_eq!(s, 403, "carol is an admin now, ada's rank");
    let (s, _) = m.call(&root, "DELETE", &format!("/api/user/{carol}"), None).await;
    assert_eq!(s, 200);
    let (s, _) = m.call(&root, "GET", &format!("/api/user/{carol}"), None).await;
    assert_eq!(s, 404);

    // Tokens: alice creates, lists, changes and deletes her own.
    let alice = m.bearer("alice");
    let body = json!({"name": "ci", "remain_quota": 5000, "unlimited_quota": false, "expired_time": -1,
                      "model_limits_enabled": true, "model_limits": "mock*"});
    let (s, v) = m.call(&alice, "POST", "/api/token/", Some(body)).await;
    assert_eq!(s, 200, "{v}");
    let key = v["data"]["key"].as_str().unwrap().to_string();
    let id = v["data"]["id"].as_str().unwrap().to_string();
    assert_eq!((v["data"]["remain_quota"].as_i64(), v["data"]["model_limits"].as_str()), (Some(5000), Some("mock*")));
    let (_, v) = m.call(&alice, "GET", "/api/token/?p=1&page_size=1", None).await;
    assert_eq!((v["data"]["total"].as_i64(), v["data"]["items"][0]["id"].as_str()), (Some(2), Some(id.as_str())));
    assert!(!v.to_string().contains(&key), "a listed token never shows its key");
    // The new token works, until it is switched off.
    let (s, _) = m.call(&Cred::Bearer(key.clone()), "GET", "/api/user/self", None).await;
    assert_eq!(s, 200);
    let (s, v) = m.call(&alice, "PUT", "/api/token/?status_only=true", Some(json!({"id": id, "status": 2}))).await;
    assert_eq!((s, v["data"]["status"].as_i64()), (200, Some(2)), "{v}");
    let (s, _) = m.call(&Cred::Bearer(key.clone()), "GET", "/api/user/self", None).await;
    assert_eq!(s, 401);
    let (_, v) = m.call(&alice, "PUT", "/api/token/", Some(json!({"id": id, "status": 1, "name": "ci2"}))).await;
    assert_eq!((v["data"]["status"].as_i64(), v["data"]["name"].as_str()), (Some(1), Some("ci2")), "{v}");
    // An admin sees and changes alice's tokens.
    let (_, v) = m.call(&ada, "GET", "/api/token/?user=alice", None).await;
    assert_eq!(v["data"]["total"].as_i64(), Some(2), "{v}");
    let (s, _) = m.call(&ada, "DELETE", &format!("/api/token/{id}"), None).await;
    assert_eq!(s, 200);
    let (s, _) = m.call(&Cred::Bearer(key), "GET", "/api/user/self", None).await;
    assert_eq!(s, 401, "a deleted token is refused");
    let (_, v) = m.call(&alice, "GET", "/api/token/", None).await;
    assert_eq!(v["data"]["total"].as_i64(), Some(1), "{v}");
    // Search by name.
    let (s, v) = m.call(&alice, "GET", "/api/token/search?keyword=test", None).await;
    assert_eq!((s, v["data"]["items"].as_array().map(Vec::len)), (200, Some(1)), "{v}");
}

/// One chat through the bridge as `who`, with `model`.
async fn chat(m: &Mgmt, who: &str, model: &str) {
    let resp = m
        .http
        .post(format!("{}/v1/chat/completions", m.base))
        .header("Authorization", format!("Bearer {}", m.people[who].0))
        .body(json!({"model": model, "messages": [{"role": "user", "content": "log me"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap());
}

#[tokio::test]
async fn logs_page_newest_first_by_user_with_filters() {
    let m = Mgmt::start(1, Config::default()).await;
    for (who, model) in [("alice", "mock-a"), ("bob", "mock-b"), ("alice", "mock-b"), ("alice", "mock-c")] {
        chat(&m, who, model).await;
    }
    let alice_user = ailurus::bus::subjects::Token::new("user_id", "alice").unwrap();
    common::usage_records(&m.stack.client, &alice_user, 3, std::time::Duration::from_secs(20)).await;
    let bob_user = ailurus::bus::subjects::Token::new("user_id", "bob").unwrap();
    common::usage_records(&m.stack.client, &bob_user, 1, std::time::Duration::from_secs(20)).await;
    let alice = m.bearer("alice");
    let (s, v) = m.call(&alice, "GET", "/api/log/self?p=1&page_size=2&type=2", None).await;
    assert_eq!(s, 200, "{v}");
    let models: Vec<_> = v["data"]["items"].as_array().unwrap().iter().map(|i| i["model_name"].clone()).collect();
    assert_eq!(models, [json!("mock-c"), json!("mock-b")], "newest first: {v}");
    let (_, v) = m.call(&alice, "GET", "/api/log/self?p=2&page_size=2&type=2", None).await;
    assert_eq!(v["data"]["items"][0]["model_name"], "mock-a", "{v}");
    assert_eq!(v["data"]["items"].as_array().map(Vec::len), Some(1));
    let (_, v) = m.call(&alice, "GET", "/api/log/self?model_name=mock-b", None).await;
    assert_eq!((v["data"]["total"].as_i64(), v["data"]["complete"].as_bool()), (Some(1), Some(true)), "{v}");
    assert!(v["data"]["items"].as_array().unwrap().iter().all(|i| i["username"] == "alice"));
    let now = ailurus::bus::proof::now_secs();
    let (_, v) = m.call(&alice, "GET", &format!("/api/log/self?type=2&start_timestamp={}", now + 3600), None).await;
    assert_eq!(v["data"]["total"].as_i64(), Some(0), "{v}");
    let (_, v) = m.call(&alice, "GET", &format!("/api/log/self?type=2&end_timestamp={}", now - 3600), None).await;
    assert_eq!(v["data"]["total"].as_i64(), Some(0), "{v}");
    let (_, v) = m.call(&alice, "GET", "/api/log/self?type=2&status=2xx", None).await;
    assert_eq!(v["data"]["total"].as_i64(), Some(3), "{v}");
    let (_, v) = m.call(&alice, "GET", "/api/log/self/stat?type=2", None).await;
    let spent = common::quiet_balance(&m.quota, &alice_user).await.used;
    assert_eq!(v["data"]["quota"].as_i64(), Some(spent), "{v}");
    // Only an admin reads others' logs.
    for path in ["/api/log/", "/api/log/?username=bob", "/api/log/stat"] {
        let (s, v) = m.call(&alice, "GET", path, None).await;
        assert_eq!((s, v["success"].as_bool()), (403, Some(false)), "{path}: {v}");
    }
    let (_, v) = m.call(&m.access("ada"), "GET", "/api/log/?username=bob&type=2", None).await;
    assert_eq!((v["data"]["total"].as_i64(), v["data"]["items"][0]["model_name"].as_str()), (Some(1), Some("mock-b")));
    let (_, v) = m.call(&m.access("root"), "GET", "/api/log/?type=2&model_name=mock-b", None).await;
    assert_eq!(v["data"]["total"].as_i64(), Some(2), "{v}");
}

#[tokio::test]
async fn pricing_for_anyone_groups_for_admins() {
    let mut config = Config::default();
    config.pricing.groups.insert("vip".into(), 0.5);
    let m = Mgmt::start(1, config).await;
    let (s, v) = m.call(&Cred::None, "GET", "/api/pricing", None).await;
    assert_eq!(s, 200, "{v}");
    let mock = v["data"].as_array().unwrap().iter().find(|r| r["model_name"] == "mock*").cloned().unwrap();
    assert!(mock["input_usd_per_mtok"].as_f64().is_some() && mock["model_ratio"].is_number(), "{mock}");
    assert_eq!((v["group_ratio"]["vip"].as_f64(), v["group_ratio"]["default"].as_f64()), (Some(0.5), Some(1.0)));
    let (s, _) = m.call(&m.bearer("alice"), "GET", "/api/group/", None).await;
    assert_eq!(s, 403);
    let (s, v) = m.call(&m.access("ada"), "GET", "/api/group/", None).await;
    assert_eq!((s, v["data"].clone()), (200, json!(["default", "vip"])));
}

#[tokio::test]
async fn redemption_codes_credit_once_and_only_admins_make_them() {
    let m = Mgmt::start(1, Config::default()).await;
    let (s, _) = m.call(&m.bearer("alice"), "POST", "/api/redemption/", Some(json!({"quota": 5, "count": 1}))).await;
    assert_eq!(s, 403);
    let ada = m.access("ada");
    let (s, v) =
        m.call(&ada, "POST", "/api/redemption/", Some(json!({"name": "promo", "quota": 1234, "count": 2}))).await;
    assert_eq!(s, 200, "{v}");
    let codes: Vec<String> = v["data"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let (_, v) = m.call(&ada, "GET", "/api/redemption/?p=1&page_size=10", None).await;
    assert_eq!(v["data"]["total"].as_i64(), Some(2), "{v}");
    assert!(codes.iter().all(|c| !v.to_string().contains(c.as_str())), "a listed code never shows the code");
    let before = m.balance("alice").await.total;
    // alice and bob race on one code: one is credited.
    let body = Some(json!({"key": codes[0]}));
    let (alice, bob) = (m.bearer("alice"), m.bearer("bob"));
    let (a, b) = tokio::join!(
        m.call(&alice, "POST", "/api/user/topup", body.clone()),
        m.call(&bob, "POST", "/api/user/topup", body.clone())
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{a:?} {b:?}");
    let credited = m.balance("alice").await.total - before + m.balance("bob").await.total - 1_000_000;
    assert_eq!(credited, 1234);
    // A disabled code is refused; a wrong one too.
    let id = {
        let (_, v) = m.call(&ada, "GET", "/api/redemption/search?keyword=promo", None).await;
        v["data"]["items"].as_array().unwrap().iter().find(|r| r["status"] == 1).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (s, v) = m.call(&ada, "PUT", "/api/redemption/", Some(json!({"id": id, "status": 2}))).await;
    assert_eq!((s, v["data"]["status"].as_i64()), (200, Some(2)), "{v}");
    for key in [codes[1].as_str(), "nope"] {
        let (s, v) = m.call(&m.bearer("alice"), "POST", "/api/user/topup", Some(json!({"key": key}))).await;
        assert_eq!((s, v["success"].as_bool()), (400, Some(false)), "{v}");
    }
}

/// One chat through the bridge with the API token `key`: the HTTP status.
async fn chat_status(m: &Mgmt, key: &str) -> u16 {
    let resp = m
        .http
        .post(format!("{}/v1/chat/completions", m.base))
        .header("Authorization", format!("Bearer {key}"))
        .body(json!({"model": "mock", "messages": [{"role": "user", "content": "limit me"}]}).to_string())
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

#[tokio::test]
async fn token_rate_limits_on_create_and_edit() {
    let m = Mgmt::start(1, Config::default()).await;
    let alice = m.bearer("alice");
    let body = json!({"name": "limited", "rpm": 2, "tpm": 100000, "concurrency": 3});
    let (s, v) = m.call(&alice, "POST", "/api/token/", Some(body)).await;
    assert_eq!(s, 200, "{v}");
    let (key, id) = (v["data"]["key"].as_str().unwrap().to_string(), v["data"]["id"].clone());
    let limits = |v: &Value| (v["rpm"].clone(), v["tpm"].clone(), v["concurrency"].clone());
    assert_eq!(limits(&v["data"]), (json!(2), json!(100000), json!(3)), "{v}");
    // The limit is the one the gateway applies: the third request in the minute is refused.
    let got = [chat_status(&m, &key).await, chat_status(&m, &key).await, chat_status(&m, &key).await];
    assert_eq!(got, [200, 200, 429]);
    // Edit: 0 (or null) removes a limit, an absent one is kept, a bad one is a 400.
    let (s, v) = m.call(&alice, "PUT", "/api/token/", Some(json!({"id": id, "rpm": 0, "concurrency": null}))).await;
    assert_eq!((s, limits(&v["data"])), (200, (Value::Null, json!(100000), Value::Null)), "{v}");
    assert_eq!(chat_status(&m, &key).await, 200, "no rpm limit any more");
    let (s, v) = m.call(&alice, "PUT", "/api/token/", Some(json!({"id": id, "tpm": 5}))).await;
    assert_eq!((s, limits(&v["data"])), (200, (Value::Null, json!(5), Value::Null)), "{v}");
    for bad in [
        json!({"id": id, "rpm": -1}),
        json!({"id": id, "concurrency": 5_000_000_000_i64}),
        json!({"id": id, "tpm": "x"}),
    ] {
        let (s, v) = m.call(&alice, "PUT", "/api/token/", Some(bad.clone())).await;
        assert_eq!((s, v["success"].as_bool()), (400, Some(false)), "{bad}: {v}");
    }
    let (s, v) = m.call(&alice, "POST", "/api/token/", Some(json!({"name": "bad", "rpm": -5}))).await;
    assert_eq!(s, 400, "{v}");
    let (_, v) = m.call(&alice, "GET", "/api/token/", None).await;
    let listed = v["data"]["items"].as_array().unwrap().iter().find(|t| t["id"] == id).cloned().unwrap();
    assert_eq!(limits(&listed), (Value::Null, json!(5), Value::Null), "{listed}");
}

#[tokio::test]
async fn prices_are_edited_by_admins_only_and_reach_the_table() {
    let m = Mgmt::start(1, Config::default()).await;
    let price = json!({"model_name": "mock-priced-*", "input_usd_per_mtok": 3.0, "output_usd_per_mtok": 15.0,
                       "cache_read_usd_per_mtok": 0.3});
    // (who, method, path, body, status): refused before anything changes.
    for (who, method, path, body, want) in [
        ("alice", "PUT", "/api/pricing", Some(price.clone()), 403),
        ("alice", "DELETE", "/api/pricing?model_name=mock*", None, 403),
        ("-", "POST", "/api/pricing", Some(price.clone()), 401),
        ("ada", "PUT", "/api/pricing", Some(json!({"model_name": "x", "input_usd_per_mtok": -1.0})), 400),
        ("ada", "PUT", "/api/pricing", Some(json!({"model_name": "", "input_usd_per_mtok": 1.0})), 400),
        ("ada", "PUT", "/api/pricing", Some(json!({"model_name": "x", "model_ratio": 2})), 400),
        ("ada", "DELETE", "/api/pricing?model_name=never-priced", None, 404),
        ("ada", "DELETE", "/api/pricing", None, 400),
    ] {
        let cred = match who {
            "-" => Cred::None,
            "alice" => m.bearer("alice"),
            _ => m.access(who),
        };
        let (s, v) = m.call(&cred, method, path, body).await;
        assert_eq!((s, v["success"].as_bool()), (want, Some(false)), "{who} {method} {path}: {v}");
    }
    let row = |v: &Value, p: &str| v["data"].as_array().and_then(|a| a.iter().find(|r| r["model_name"] == p).cloned());
    let (_, v) = m.call(&Cred::None, "GET", "/api/pricing", None).await;
    assert!(row(&v, "mock-priced-*").is_none() && v.get("unpriced").is_none(), "{v}");
    let (s, v) = m.call(&m.access("ada"), "PUT", "/api/pricing", Some(price)).await;
    assert_eq!(s, 200, "{v}");
    // Every worker follows the PRICES bucket within about a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let shown = loop {
        let (_, v) = m.call(&m.bearer("alice"), "GET", "/api/pricing", None).await;
        if let Some(r) = row(&v, "mock-priced-*") {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "the new price never reached the table: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!((shown["input_usd_per_mtok"].as_f64(), shown["output_usd_per_mtok"].as_f64()), (Some(3.0), Some(15.0)));
    assert_eq!((shown["cache_read_usd_per_mtok"].as_f64(), shown["source"].as_str()), (Some(0.3), Some("kv")));
    // An admin also sees which channel models no price covers (the default mock's are priced).
    let (_, v) = m.call(&m.access("root"), "GET", "/api/pricing", None).await;
    assert_eq!(v["unpriced"], json!([]), "{v}");
    let (s, v) = m.call(&m.access("root"), "DELETE", "/api/pricing?model_name=mock-priced-*", None).await;
    assert_eq!(s, 200, "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, v) = m.call(&Cred::None, "GET", "/api/pricing", None).await;
        if row(&v, "mock-priced-*").is_none() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the deleted price stayed: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_log_entrys_detail_is_its_redacted_exchange_for_its_owner_and_admins() {
    let m = Mgmt::start(1, Config::default()).await;
    let secret = "sk-proj-abcdefghijklmnop123";
    let prompt = format!("<script>alert(1)</script> my key is {secret}");
    let resp = m
        .http
        .post(format!("{}/v1/chat/completions", m.base))
        .header("Authorization", format!("Bearer {}", m.people["alice"].0))
        .body(json!({"model": "mock", "messages": [{"role": "user", "content": prompt}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let alice_user = ailurus::bus::subjects::Token::new("user_id", "alice").unwrap();
    common::usage_records(&m.stack.client, &alice_user, 1, std::time::Duration::from_secs(20)).await;
    let alice = m.bearer("alice");
    let (_, v) = m.call(&alice, "GET", "/api/log/self?type=2", None).await;
    let trace = v["data"]["items"][0]["trace_id"].as_str().unwrap().to_string();
    let path = format!("/api/log/detail/{trace}");
    for (who, cred) in [("alice", alice.clone()), ("ada", m.access("ada"))] {
        let (s, v) = m.call(&cred, "GET", &path, None).await;
        assert_eq!(s, 200, "{who}: {v}");
        let ex = &v["data"]["exchange"];
        let asked = ex["request"]["messages"][0]["content"].as_str().unwrap_or_default();
        assert_eq!(asked, prompt.replace(secret, "sk-[redacted]"), "{who}: {ex}");
        assert!(!v.to_string().contains(secret), "{who}: the key is in the answer");
        assert!(ex["response"]["content"].as_str().is_some_and(|c| !c.is_empty()), "{who}: {ex}");
        assert_eq!(v["data"]["log"]["trace_id"], json!(trace));
    }
    // Another common user's entry is not found for bob; junk is a 400.
    let (s, v) = m.call(&m.bearer("bob"), "GET", &path, None).await;
    assert_eq!((s, v["success"].as_bool()), (404, Some(false)), "{v}");
    let (s, _) = m.call(&alice, "GET", "/api/log/detail/not.a.trace", None).await;
    assert_eq!(s, 400);
    let (s, _) = m.call(&Cred::None, "GET", &path, None).await;
    assert_eq!(s, 401);
}

/// Open a log stream as `cred`: the response (status and headers read).
async fn open_stream(m: &Mgmt, cred: &Cred, path: &str) -> reqwest::Response {
    m.request(cred, "GET", path).send().await.unwrap()
}

/// The next `data:` event of a log stream, as JSON (heartbeats and comments skipped).
async fn next_event(resp: &mut reqwest::Response, buf: &mut String) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                return serde_json::from_str(data).unwrap();
            }
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk()).await.expect("an event within 15 s").unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays open")));
    }
}

#[tokio::test]
async fn the_log_stream_pushes_each_users_own_records_and_admins_everyones() {
    let m = Mgmt::start(1, Config::default()).await;
    let mut alice = open_stream(&m, &m.bearer("alice"), "/api/log/self/stream").await;
    assert_eq!(alice.status(), 200);
    assert!(alice.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut root = open_stream(&m, &m.access("root"), "/api/log/stream").await;
    assert_eq!(root.status(), 200);
    // Refusals are one JSON answer in the envelope.
    for (cred, path, want) in [
        (m.bearer("alice"), "/api/log/stream", 403),
        (m.bearer("ada"), "/api/log/stream", 403),
        (Cred::None, "/api/log/self/stream", 401),
    ] {
        let r = open_stream(&m, &cred, path).await;
        assert_eq!(r.status().as_u16(), want, "{path}");
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(v["success"], false, "{v}");
    }
    // bob's request first, then alice's: alice's stream shows only hers, root's both.
    chat(&m, "bob", "mock-bobs").await;
    chat(&m, "alice", "mock-alices").await;
    let (mut a, mut r) = (String::new(), String::new());
    let first = next_event(&mut alice, &mut a).await;
    assert_eq!(
        (first["username"].as_str(), first["model_name"].as_str()),
        (Some("alice"), Some("mock-alices")),
        "{first}"
    );
    assert!(first["trace_id"].is_string() && first["quota"].as_i64() > Some(0), "{first}");
    let mut seen = vec![];
    while seen.len() < 2 {
        let e = next_event(&mut root, &mut r).await;
        if e["type"] == 2 {
            seen.push(e["model_name"].as_str().unwrap().to_string());
        }
    }
    seen.sort();
    assert_eq!(seen, ["mock-alices", "mock-bobs"]);
}
