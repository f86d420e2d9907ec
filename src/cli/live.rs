//! `ailurus channels add|edit|enable|disable|delete|test|list|import` and
//! `ailurus prices list|set|delete|group`: the live configuration in the `CHANNELS`, `PRICES`
//! and `GROUPS` buckets, which every worker follows (see `src/live/mod.rs`). An API key is
//! read from standard input only (never an argument: it would show in `ps` and the shell's
//! history), sealed before it is stored, and shown masked.

use crate::channel::{ChannelConfig, Secret};
use crate::config::Config;
use crate::live::store::{KeyChange, LiveStore};
use crate::live::ChannelRecord;
use crate::pricing::PriceEntry;
use clap::{Args, Subcommand};
use std::process::ExitCode;

/// Channel changes.
#[derive(Debug, Subcommand)]
pub enum ChannelsCmd {
    /// The channels of the CHANNELS bucket (keys masked).
    List {
        /// One JSON object per channel.
        #[arg(long)]
        json: bool,
    },
    /// Add a channel to the CHANNELS bucket; every worker serves it within a second.
    Add {
        /// Unique name (A-Z a-z 0-9 _ -).
        name: String,
        /// The channel's fields.
        #[command(flatten)]
        fields: Fields,
        /// Add it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Change a channel (one of the bucket, or of the config file: the bucket's copy then wins).
    Edit {
        /// The channel.
        name: String,
        /// The fields to change.
        #[command(flatten)]
        fields: Fields,
    },
    /// Use the channel again.
    Enable {
        /// The channel.
        name: String,
    },
    /// Stop using the channel (on every worker within a second).
    Disable {
        /// The channel.
        name: String,
    },
    /// Remove a channel from the bucket.
    Delete {
        /// The channel.
        name: String,
    },
    /// Send one tiny request through the channel and print the time and the outcome.
    Test {
        /// The channel.
        name: String,
        /// The model to ask for (default: the channel's first model name without wildcards).
        #[arg(long)]
        model: Option<String>,
    },
    /// Copy the config file's channels into the bucket (only names the bucket lacks).
    Import,
}

/// A channel's fields on the command line; what is not given is left as it is.
#[derive(Debug, Args)]
pub struct Fields {
    /// Upstream API: openai, openai_responses, anthropic, gemini, mock, or NEW-API's type
    /// number (1 openai, 14 anthropic, 24 gemini).
    #[arg(long)]
    kind: Option<String>,
    /// API root, e.g. https://api.deepseek.com/v1.
    #[arg(long)]
    base_url: Option<String>,
    /// Model patterns served, comma separated (empty: every model).
    #[arg(long)]
    models: Option<String>,
    /// Requested model → upstream model, as FROM=TO pairs, comma separated.
    #[arg(long)]
    model_map: Option<String>,
    /// Priority tier (higher first).
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Share of traffic inside the tier.
    #[arg(long)]
    weight: Option<u32>,
    /// Platforms served (claude, codex, gemini, openai), comma separated (empty: all).
    #[arg(long)]
    platforms: Option<String>,
    /// Environment variables holding API keys on each worker, comma separated.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Read the API key from standard input (sealed before it is stored, never shown).
    #[arg(long)]
    key_stdin: bool,
    /// Remove the stored API key.
    #[arg(long, conflicts_with = "key_stdin")]
    clear_key: bool,
}

/// A comma list, trimmed, without empty items.
fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect()
}

impl Fields {
    /// Apply the given fields to `c`; the key change asked for.
    fn apply(&self, c: &mut ChannelConfig) -> Result<KeyChange, String> {
        if let Some(k) = &self.kind {
            c.kind = crate::live::kind_name(k)?;
        }
        if let Some(u) = &self.base_url {
            c.base_url = u.trim().to_string();
        }
        if let Some(m) = &self.models {
            c.models = list(m);
        }
        if let Some(m) = &self.model_map {
            c.model_map = list(m)
                .into_iter()
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                        .ok_or_else(|| format!("--model-map: {pair:?} is not FROM=TO"))
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(p) = self.priority {
            c.priority = p;
        }
        if let Some(w) = self.weight {
            c.weight = w;
        }
        if let Some(p) = &self.platforms {
            c.platforms = list(p);
        }
        if let Some(e) = &self.api_key_env {
            c.api_key_env = list(e);
        }
        if self.clear_key {
            return Ok(KeyChange::Clear);
        }
        if !self.key_stdin {
            return Ok(KeyChange::Keep);
        }
        let mut key = String::new();
        std::io::stdin().read_line(&mut key).map_err(|e| format!("reading the key from standard input: {e}"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err("--key-stdin: standard input held no key".into());
        }
        Ok(KeyChange::Set(Secret::new(key)))
    }
}

/// Who the CLI's changes are made by: `cli:<login>`.
fn actor() -> String {
    let who = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_default();
    let who: String = who.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')).take(64).collect();
    format!("cli:{}", if who.is_empty() { "unknown" } else { &who })
}

/// The store, as this CLI's user.
async fn store(config: &Config) -> Result<LiveStore, String> {
    let client = super::connect(config, "ailurus-admin").await?;
    let seal = crate::seal::SealKey::load(config.live.secret_key_file.as_deref())?;
    LiveStore::open(async_nats::jetstream::new(client), seal, &actor()).await
}

/// One line of `channels list`.
fn line(r: &ChannelRecord) -> String {
    let c = &r.channel;
    let models = if c.models.is_empty() { "*".to_string() } else { c.models.join(",") };
    let key = r.key_mask.clone().unwrap_or_else(|| {
        if c.api_key_env.is_empty() {
            "-".into()
        } else {
            format!("${}", c.api_key_env.join(",$"))
        }
    });
    format!(
        "{:<20} {:<17} {:<8} {:>8} {:>6}  {:<12} {:<32} {}",
        c.name,
        c.kind,
        if c.enabled { "enabled" } else { "disabled" },
        c.priority,
        c.weight,
        key,
        models,
        c.base_url
    )
}

/// Run a channel change.
pub async fn channels(config: Config, cmd: ChannelsCmd) -> Result<ExitCode, String> {
    let store = store(&config).await?;
    let file = |name: &str| config.channels.iter().find(|c| c.name == name).cloned();
    let enable = matches!(cmd, ChannelsCmd::Enable { .. });
    match cmd {
        ChannelsCmd::List { json } => {
            for (_, r) in store.channels().await? {
                if json {
                    println!("{}", r.view());
                } else {
                    println!("{}", line(&r));
                }
            }
        }
        ChannelsCmd::Add { name, fields, disabled } => {
            if file(&name).is_some() {
                return Err(format!(
                    "channel {name} is in the config file; change it with `ailurus channels edit {name}`"
                ));
            }
            let mut c: ChannelConfig =
                toml::from_str(&format!("name = {name:?}\nkind = \"openai\"\n")).map_err(|e| format!("name: {e}"))?;
            if fields.kind.is_none() {
                return Err("--kind is required to add a channel".into());
            }
            let key = fields.apply(&mut c)?;
            c.enabled = !disabled;
            let r = store.save_channel("create", None, c, key).await?;
            println!("{}", line(&r));
        }
        ChannelsCmd::Edit { name, fields } => {
            let r = store.change(&name, file(&name), |c| fields.apply(c)).await?;
            println!("{}", line(&r));
        }
        ChannelsCmd::Enable { name } | ChannelsCmd::Disable { name } => {
            let r = store
                .change(&name, file(&name), |c| {
                    c.enabled = enable;
                    Ok(KeyChange::Keep)
                })
                .await?;
            println!("{}", line(&r));
        }
        ChannelsCmd::Delete { name } => {
            if store.channel(&name).await?.is_none() && file(&name).is_some() {
                return Err(format!(
                    "channel {name} comes from the config file: disable it (`ailurus channels disable {name}`) or remove it from the file"
                ));
            }
            store.delete_channel(&name).await?;
            println!("deleted {name}");
        }
        ChannelsCmd::Test { name, model } => {
            let seal = crate::seal::SealKey::load(config.live.secret_key_file.as_deref())?;
            let c = match store.channel(&name).await? {
                Some((rev, r)) => r.to_config(seal.as_ref(), file(&name).is_some(), rev)?,
                None => file(&name).ok_or_else(|| format!("no channel {name} in the bucket or the config file"))?,
            };
            let res = crate::live::probe::probe(&c, model.as_deref()).await;
            let verdict = if res.ok { "ok" } else { "failed" };
            println!("{name}: {verdict} in {} ms (model {}): {}", res.ms, res.model, res.message);
            return Ok(if res.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        ChannelsCmd::Import => {
            for c in &config.channels {
                if store.channel(&c.name).await?.is_some() {
                    println!("{}: already in the bucket, left as it is", c.name);
                    continue;
                }
                let key = c.key.clone().map_or(KeyChange::Keep, KeyChange::Set);
                let r = store.save_channel("import", None, c.clone(), key).await?;
                println!("{}", line(&r));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Price changes.
#[derive(Debug, Subcommand)]
pub enum PricesCmd {
    /// Every price: the PRICES bucket's (tried first), then the config file's; group ratios.
    List,
    /// Set the price of a model pattern in the PRICES bucket (USD per 1M tokens).
    Set {
        /// Model pattern (`*` and `?` wildcards).
        pattern: String,
        /// Uncached input.
        #[arg(long)]
        input: f64,
        /// Output (reasoning included).
        #[arg(long)]
        output: f64,
        /// Prompt-cache reads.
        #[arg(long, default_value_t = 0.0)]
        cache_read: f64,
        /// Prompt-cache writes.
        #[arg(long, default_value_t = 0.0)]
        cache_write: f64,
        /// The most output tokens one answer may bill (default 32000).
        #[arg(long)]
        max_output_tokens: Option<u32>,
    },
    /// Remove a pattern's price from the PRICES bucket.
    Delete {
        /// Model pattern.
        pattern: String,
    },
    /// Set a group's price multiplier (NEW-API group ratio) in the GROUPS bucket.
    Group {
        /// Group name.
        name: String,
        /// Multiplier (1 = list price).
        ratio: f64,
    },
}

/// Run a price change.
pub async fn prices(config: Config, cmd: PricesCmd) -> Result<ExitCode, String> {
    let store = store(&config).await?;
    match cmd {
        PricesCmd::List => {
            println!(
                "{:<28} {:>9} {:>9} {:>10} {:>11}  origin",
                "pattern", "input", "output", "cache_read", "cache_write"
            );
            let row = |e: &PriceEntry, origin: &str| {
                println!(
                    "{:<28} {:>9} {:>9} {:>10} {:>11}  {origin}",
                    e.pattern, e.input, e.output, e.cache_read, e.cache_write
                )
            };
            let live: Vec<PriceEntry> = store.prices().await?.into_iter().map(|(_, r)| r.entry).collect();
            for e in crate::live::merge_prices(&[], &live) {
                row(&e, "kv");
            }
            for e in &config.pricing.models {
                row(e, "config");
            }
            let groups: Vec<(String, f64)> = store.groups().await?.into_iter().map(|(_, n, r)| (n, r.ratio)).collect();
            for (name, ratio) in crate::live::merge_groups(&config.pricing.groups, &groups) {
                let origin = if groups.iter().any(|g| g.0 == name) { "kv" } else { "config" };
                println!("group {name:<22} ratio {ratio}  {origin}");
            }
        }
        PricesCmd::Set { pattern, input, output, cache_read, cache_write, max_output_tokens } => {
            store
                .set_price(PriceEntry {
                    pattern: pattern.clone(),
                    input,
                    output,
                    cache_read,
                    cache_write,
                    max_output_tokens,
                })
                .await?;
            println!("{pattern}: input {input}, output {output}, cache_read {cache_read}, cache_write {cache_write} USD per 1M tokens");
        }
        PricesCmd::Delete { pattern } => {
            store.delete_price(&pattern).await?;
            println!("deleted the price of {pattern}");
        }
        PricesCmd::Group { name, ratio } => {
            store.set_group(&name, ratio).await?;
            println!("group {name}: ratio {ratio}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
