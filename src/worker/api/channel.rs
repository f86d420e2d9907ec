//! `/api/channel/…` (admins only): the live channels in NEW-API's shapes — list
//! (`GET /?p=&page_size=`), get (`GET /:id`), create (`POST /`, NEW-API's
//! `{"mode":"single","channel":{…}}` or the channel itself), update (`PUT /` with `id`),
//! delete (`DELETE /:id`) and test (`GET /test/:id?model=`, answering `{success, message,
//! time}` with the time in seconds, as NEW-API does).
//!
//! Fields as NEW-API names them: `name`, `type` (NEW-API's number — 1 OpenAI, 14 Anthropic,
//! 24 Gemini — or Ailurus's kind name), `key` (write-only: never returned, shown masked;
//! empty or absent on update keeps the stored one), `base_url`, `models` (comma list),
//! `group` (only `default`: every group may use every channel), `priority`, `weight`,
//! `status` (1 enabled, 2 disabled), `model_mapping` (JSON object text). A channel's `id` is
//! a number derived from its name (stable); the name works wherever an id is asked for.
//! Changes go to the `CHANNELS` bucket (every worker follows it) with an event naming the
//! admin (`user:<name>`); a config-file channel changed here gets the bucket's copy, which
//! wins over the file's.

use super::{Answer, Call, Reply};
use crate::channel::{ChannelConfig, ChannelOrigin, Secret};
use crate::live::store::{KeyChange, LiveStore};
use crate::live::ChannelRecord;
use serde_json::{json, Map, Value};

/// The `channel` family.
pub(super) async fn serve(call: &Call<'_>) -> Answer {
    let admin = call.admin().await?;
    let live = call.ctx.live.as_ref().ok_or_else(|| {
        Reply::unavailable("the CHANNELS bucket is missing (run `ailurus streams apply`) or [live] follow is off")
    })?;
    let store = live.store(&format!("user:{}", admin.user.as_str()));
    let (method, path) = call.route();
    match (method, path.as_slice()) {
        ("GET", []) => list(call, &store).await,
        ("GET", ["test", id]) => test(call, &store, id).await,
        ("GET", [id]) => {
            let (c, rec) = find(call, &store, id).await?;
            Ok(Reply::ok(shown(&c, rec.as_ref())))
        }
        ("POST", []) => create(call, &store).await,
        ("PUT", []) => update(call, &store).await,
        ("DELETE", [id]) => {
            let (c, rec) = find(call, &store, id).await?;
            if rec.is_none() {
                return Err(Reply::bad(&format!(
                    "channel {} comes from the config file: disable it (status 2) or remove it from the file",
                    c.name
                )));
            }
            store.delete_channel(&c.name).await.map_err(Reply::unavailable)?;
            Ok(Reply::ok(Value::Null))
        }
        _ => Err(call.no_route()),
    }
}

/// A channel's numeric id: 31 bits of the sha256 of its name.
fn id_of(name: &str) -> i64 {
    let h = crate::credential::hash(name);
    i64::from_str_radix(h.get(..8).unwrap_or("0"), 16).unwrap_or(0) & 0x7fff_ffff
}

/// A channel as NEW-API shows it (never the key: its mask).
fn shown(c: &ChannelConfig, rec: Option<&ChannelRecord>) -> Value {
    let ty = crate::live::NEWAPI_TYPES.iter().find(|(_, k)| *k == c.kind).map_or(0, |(t, _)| *t);
    let key = rec.and_then(|r| r.key_mask.clone()).unwrap_or_default();
    json!({
        "id": id_of(&c.name), "name": c.name, "type": ty, "kind": c.kind, "key": key,
        "base_url": c.base_url, "models": c.models.join(","), "group": "default",
        "priority": c.priority, "weight": c.weight, "status": if c.enabled { 1 } else { 2 },
        "model_mapping": serde_json::to_string(&c.model_map).unwrap_or_default(),
        "api_key_env": c.api_key_env, "origin": c.origin.as_str(),
        "updated_by": rec.map(|r| r.updated_by.as_str()), "updated_at": rec.map(|r| r.updated_at.as_str()),
    })
}

/// Every channel: the bucket's, then the config file's this worker serves that the bucket does
/// not override, by name.
async fn all(call: &Call<'_>, store: &LiveStore) -> Result<Vec<(ChannelConfig, Option<ChannelRecord>)>, Reply> {
    let mut out: Vec<(ChannelConfig, Option<ChannelRecord>)> = Vec::new();
    for (rev, r) in store.channels().await.map_err(Reply::unavailable)? {
        let mut c = r.channel.clone();
        c.revision = rev;
        c.origin = ChannelOrigin::Live;
        out.push((c, Some(r)));
    }
    for ch in call.ctx.router.channels() {
        let c = &ch.config;
        let from_file =
            !matches!(c.origin, ChannelOrigin::Live | ChannelOrigin::LiveOverConfig | ChannelOrigin::BuiltinMock);
        if from_file && !out.iter().any(|(o, _)| o.name == c.name) {
            out.push((c.clone(), None));
        }
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(out)
}

/// The channel `id` names (its numeric id or its name); 404 when none.
async fn find(call: &Call<'_>, store: &LiveStore, id: &str) -> Result<(ChannelConfig, Option<ChannelRecord>), Reply> {
    let all = all(call, store).await?;
    let num = id.parse::<i64>().ok();
    all.into_iter()
        .find(|(c, _)| c.name == id || num == Some(id_of(&c.name)))
        .ok_or_else(|| Reply::not_found("channel"))
}

/// `GET /api/channel/?p=&page_size=`, each channel with its health on the live workers.
async fn list(call: &Call<'_>, store: &LiveStore) -> Answer {
    let page = call.page()?;
    let health = health(call).await;
    let items: Vec<Value> = all(call, store)
        .await?
        .iter()
        .map(|(c, r)| {
            let mut v = shown(c, r.as_ref());
            if let (Value::Object(m), Some(Value::Object(h))) = (&mut v, health.get(&c.name)) {
                m.extend(h.clone());
            }
            v
        })
        .collect();
    let (items, total) = page.cut(items);
    Ok(page.reply(items, total))
}

/// Each channel's health summed over the live workers' `CHANNEL_HEALTH` reports (what
/// `ailurus channels` prints): `health` (`ok`, or `<state> on n of m workers`), `successes`,
/// `failures`, `response_time` (the worst average time to first byte, ms, NEW-API's name)
/// and `workers` (how many report it). Empty when the bucket cannot be read in time.
async fn health(call: &Call<'_>) -> std::collections::BTreeMap<String, Value> {
    use crate::worker::health::read_all;
    let js = async_nats::jetstream::new(call.ctx.client.clone());
    let reports = match tokio::time::timeout(std::time::Duration::from_secs(2), read_all(&js)).await {
        Ok(Ok(r)) => r,
        _ => return Default::default(),
    };
    // name → (workers, not ok, worst state, successes, failures, worst ttfb)
    let mut sums: std::collections::BTreeMap<String, (u64, u64, String, u64, u64, f64)> = Default::default();
    for r in &reports {
        for c in &r.channels {
            let e = sums.entry(c.channel.clone()).or_default();
            e.0 += 1;
            if c.state != "ok" {
                e.1 += 1;
                e.2.clone_from(&c.state);
            }
            e.3 += c.successes;
            e.4 += c.failures;
            e.5 = e.5.max(c.ttfb_ms);
        }
    }
    sums.into_iter()
        .map(|(name, (workers, bad, state, ok, failed, ttfb))| {
            let health = if bad == 0 { "ok".to_string() } else { format!("{state} on {bad} of {workers} workers") };
            let v = json!({"health": health, "successes": ok, "failures": failed,
                           "response_time": ttfb.round() as u64, "workers": workers});
            (name, v)
        })
        .collect()
}

/// A comma list (NEW-API's `models`) or a JSON array of strings.
fn names(v: &Value, field: &str) -> Result<Vec<String>, Reply> {
    match v {
        Value::String(s) => Ok(s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect()),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(String::from).ok_or_else(|| Reply::bad(&format!("{field} must hold strings"))))
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(Reply::bad(&format!("{field} must be a comma list"))),
    }
}

/// Apply NEW-API's fields in `body` to `c`; the key change asked for. Unknown fields of
/// NEW-API's channel that Ailurus does not use are ignored; a known one with a bad value is a
/// 400 naming it.
fn apply(body: &Map<String, Value>, c: &mut ChannelConfig) -> Result<KeyChange, Reply> {
    let int = |k: &str| -> Result<Option<i64>, Reply> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| Reply::bad(&format!("{k} must be a whole number"))),
        }
    };
    let text = |k: &str| -> Result<Option<String>, Reply> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(_) => Err(Reply::bad(&format!("{k} must be a string"))),
        }
    };
    match body.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => c.kind = crate::live::kind_name(&n.to_string()).map_err(|e| Reply::bad(&e))?,
        Some(Value::String(s)) => c.kind = crate::live::kind_name(s).map_err(|e| Reply::bad(&e))?,
        Some(_) => return Err(Reply::bad("type must be a number or a kind name")),
    }
    if let Some(u) = text("base_url")? {
        c.base_url = u;
    }
    if let Some(m) = body.get("models") {
        c.models = names(m, "models")?;
    }
    if let Some(g) = text("group")? {
        if !g.split(',').all(|g| g.trim() == "default" || g.trim().is_empty()) {
            return Err(Reply::bad("group: only \"default\" is supported (every group may use every channel)"));
        }
    }
    if let Some(p) = int("priority")? {
        c.priority = i32::try_from(p).map_err(|_| Reply::bad("priority is out of range"))?;
    }
    if let Some(w) = int("weight")? {
        c.weight = u32::try_from(w).map_err(|_| Reply::bad("weight must be at least 1"))?;
    }
    match int("status")? {
        None => {}
        Some(1) => c.enabled = true,
        Some(2) | Some(3) => c.enabled = false,
        Some(_) => return Err(Reply::bad("status must be 1 (enabled) or 2 (disabled)")),
    }
    if let Some(m) = text("model_mapping")?.filter(|m| !m.is_empty()) {
        c.model_map =
            serde_json::from_str(&m).map_err(|_| Reply::bad("model_mapping must be a JSON object of strings"))?;
    }
    Ok(match text("key")? {
        Some(k) if !k.is_empty() => KeyChange::Set(Secret::new(k)),
        _ => KeyChange::Keep,
    })
}

/// The channel object of a create or update body (NEW-API's `{"mode", "channel"}` or bare).
fn channel_body(call: &Call<'_>) -> Result<Map<String, Value>, Reply> {
    let v: Value = call.json()?;
    let obj = match v.get("channel") {
        Some(Value::Object(_)) => v.get("channel").cloned(),
        _ => Some(v),
    };
    match obj {
        Some(Value::Object(m)) => Ok(m),
        _ => Err(Reply::bad("the body must be a channel object")),
    }
}

/// `POST /api/channel/`.
async fn create(call: &Call<'_>, store: &LiveStore) -> Answer {
    let body = channel_body(call)?;
    if let Some(mode) = call.json::<Value>()?.get("mode").and_then(Value::as_str) {
        if mode != "single" {
            return Err(Reply::bad("mode: only \"single\" is supported"));
        }
    }
    let name = body.get("name").and_then(Value::as_str).map(str::trim).unwrap_or_default().to_string();
    if all(call, store).await?.iter().any(|(c, _)| c.name == name) {
        return Err(Reply::bad(&format!("a channel named {name:?} exists")));
    }
    let mut c: ChannelConfig =
        toml::from_str("name = \"x\"\nkind = \"openai\"\n").map_err(|e| Reply::fail(500, &e.to_string()))?;
    c.name = name;
    let key = apply(&body, &mut c)?;
    let rec = store.save_channel("create", None, c, key).await.map_err(|e| Reply::bad(&e))?;
    Ok(Reply::ok(shown(&rec.channel, Some(&rec))))
}

/// `PUT /api/channel/` with the channel's `id` (or `name`).
async fn update(call: &Call<'_>, store: &LiveStore) -> Answer {
    let body = channel_body(call)?;
    let id = match (body.get("id"), body.get("name")) {
        (Some(Value::Number(n)), _) => n.to_string(),
        (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => s.clone(),
        _ => return Err(Reply::bad("id is required")),
    };
    let (c, rec) = find(call, store, &id).await?;
    let from_file = rec.is_none().then(|| c.clone());
    let mut edits = body.clone();
    // The name identifies the channel; it cannot change here.
    edits.remove("name");
    let bad = |r: Reply| r.body["message"].as_str().unwrap_or("bad channel field").to_string();
    let rec =
        store.change(&c.name, from_file, |ch| apply(&edits, ch).map_err(bad)).await.map_err(|e| Reply::bad(&e))?;
    Ok(Reply::ok(shown(&rec.channel, Some(&rec))))
}

/// `GET /api/channel/test/:id?model=`: NEW-API's `{success, message, time}`.
async fn test(call: &Call<'_>, store: &LiveStore, id: &str) -> Answer {
    let (c, rec) = find(call, store, id).await?;
    let seal = call.ctx.live.as_ref().and_then(|l| l.seal());
    let c = match rec {
        Some(r) => r.to_config(seal, false, c.revision).map_err(|e| Reply::unavailable(&e))?,
        None => c,
    };
    let res = crate::live::probe::probe(&c, call.query("model")).await;
    let message = if res.ok { String::new() } else { res.message.clone() };
    Ok(Reply {
        status: 200,
        body: json!({"success": res.ok, "message": message, "time": res.ms as f64 / 1000.0, "model": res.model,
                     "data": {"answer": if res.ok { res.message } else { String::new() }}}),
    })
}
