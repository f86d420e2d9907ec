//! The management API's test harness: a stack with workers and a bridge, the root user, an
//! admin and two common users, each with an API token and (but for the common users) an
//! access token; `call` sends one HTTP request as one of them.

use ailurus::bus::subjects::Token;
use ailurus::config::Config;
use ailurus::quota::account::QuotaStore;
use ailurus::quota::tokens::TokenStore;
use ailurus::quota::users::{role, UserStore};
use serde_json::Value;
use std::collections::BTreeMap;

/// Who sends a request.
#[derive(Debug, Clone)]
pub enum Cred {
    /// No credential.
    None,
    /// `Authorization: Bearer <API token>`.
    Bearer(String),
    /// `Authorization: <access token>` and `New-Api-User: <id>`.
    Access(String, String),
}

/// The stack, the stores and the people.
pub struct Mgmt {
    pub stack: super::Stack,
    pub base: String,
    pub http: reqwest::Client,
    pub tokens: TokenStore,
    pub quota: QuotaStore,
    pub users: UserStore,
    /// name → (API token, access credential).
    pub people: BTreeMap<&'static str, (String, Cred)>,
}

impl Mgmt {
    /// Workers with `config`, a bridge; root (100), ada (admin 10), alice and bob (common 1),
    /// each funded with 1,000,000 units and given an API token; root and ada an access token.
    pub async fn start(workers: usize, config: Config) -> Self {
        let mut stack = super::Stack::server_only().await;
        stack.apply_streams().await;
        for _ in 0..workers {
            stack.add_worker(config.clone()).await;
        }
        let js = async_nats::jetstream::new(stack.client.clone());
        let tokens = TokenStore::open(&js).await.unwrap();
        let quota = QuotaStore::open(stack.client.clone()).await.unwrap();
        let users = UserStore::open(&js).await.unwrap();
        let mut people = BTreeMap::new();
        for (name, r) in [("root", role::ROOT), ("ada", role::ADMIN), ("alice", role::COMMON), ("bob", role::COMMON)] {
            let rec = users.create(name, r, "").await.unwrap();
            let (_, token) = super::funded(&tokens, &quota, name, 1_000_000).await;
            let access = if r > role::COMMON {
                Cred::Access(users.new_access_token(name).await.unwrap(), rec.id.to_string())
            } else {
                Cred::None
            };
            people.insert(name, (token, access));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (client, shutdown) = (stack.client.clone(), stack.shutdown.clone());
        tokio::spawn(async move { ailurus::bridge::serve(listener, client, Default::default(), shutdown).await });
        Self { stack, base, http: reqwest::Client::new(), tokens, quota, users, people }
    }

    /// The API token of `who` as a credential.
    pub fn bearer(&self, who: &str) -> Cred {
        Cred::Bearer(self.people[who].0.clone())
    }

    /// The access credential of `who` (root, ada).
    pub fn access(&self, who: &str) -> Cred {
        self.people[who].1.clone()
    }

    /// A request to the bridge as `cred` (its credential headers set).
    pub fn request(&self, cred: &Cred, method: &str, path: &str) -> reqwest::RequestBuilder {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self.http.request(m, format!("{}{path}", self.base));
        match cred {
            Cred::None => r,
            Cred::Bearer(t) => r.header("Authorization", format!("Bearer {t}")),
            Cred::Access(t, id) => r.header("Authorization", t).header("New-Api-User", id),
        }
    }

    /// One request: (HTTP status, JSON body).
    pub async fn call(&self, cred: &Cred, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.request(cred, method, path);
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b.to_string());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        (status, v)
    }

    /// The balance of `who`.
    pub async fn balance(&self, who: &str) -> ailurus::quota::account::Balance {
        self.quota.balance(&Token::new("user_id", who).unwrap()).await.unwrap()
    }
}
