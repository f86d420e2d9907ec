//! Billing of one request behind one small interface the handler calls three times:
//! [`identify`] (who it is), [`admit`] before any upstream work (unpriced models, rate
//! limits, the output cap, a hold of the worst case), and [`Ticket::settle`] after the final
//! reply (charge, ledger, rate-limit release).
//!
//! **No overspend.** A request is admitted only when the user's (and the token's) remaining
//! quota covers its worst case: every prompt token at the model's dearest input price (plain,
//! cache read or cache write), as many prompt tokens as the prompt has bytes (a proven bound
//! for byte-level tokenizers, see [`ChatRequest::prompt_token_bound`]), and every output token
//! the answer may have. The output is always bounded: by the request's own cap (with its
//! thinking budget), else by one the gateway sets in the upstream request — the model's
//! `max_output_tokens` from the price table, lowered to what the balance pays for. A request
//! whose balance cannot pay for its prompt and a few output tokens is refused (402). The hold
//! is that worst case times the largest group ratio, drawn on one of this worker's quota
//! leases ([`crate::quota::lease`]): no JetStream round trip unless a new lease is needed,
//! and the settle only queues the ledger record. An upstream that ignores the cap and
//! reports more is still charged what it reports; the ledger record carries the `overage` and
//! `ailurus_worker_billing_overage_total` counts it.
//!
//! [`ChatRequest::prompt_token_bound`]: crate::protocol::canonical::ChatRequest::prompt_token_bound

use super::job::{Client, Job};
use super::WorkerCtx;
use crate::error::RequestError;
use crate::pricing::{PriceEntry, Unpriced, QUOTA_PER_USD};
use crate::protocol::canonical::{Usage, IMAGE_URL_TOKENS};
use crate::protocol::Op;
use crate::quota::auth::Principal;
use crate::quota::lease::Draw;
use crate::quota::proof::Claim;
use crate::quota::ratelimit::Admitted;

/// Fewest output tokens a request is admitted with when the gateway lowers its cap to what
/// the balance pays for: below this an answer is useless, so the request is refused.
pub(crate) const MIN_OUTPUT_TOKENS: u32 = 16;

/// Who `job` is: its credential checked against the token cache (the job's `user_id` becomes
/// the token's user), and its trace id's claim in the replay set, started and not awaited
/// (the handler awaits its verdict before anything of the answer leaves, see
/// [`crate::quota::proof`]). A refusal for a known user is published as a `user.<id>.auth`
/// event; an identified user's presence is refreshed (after the verdict, when there is a claim).
pub(crate) async fn identify(
    ctx: &WorkerCtx,
    job: &mut Job,
) -> Result<(Option<Principal>, Option<Claim>), RequestError> {
    let auth = crate::quota::auth::begin(
        ctx.auth.mode,
        ctx.tokens.as_ref(),
        job.credential.as_ref(),
        job.claimed_user.as_deref(),
        &job.model,
    );
    match Box::pin(auth).await {
        Ok((principal, claim)) => {
            if let Some(p) = &principal {
                job.user_id = p.user.to_string();
                // With a claim, presence waits for its verdict (the handler's `accepted`).
                if claim.is_none() {
                    Box::pin(super::sync::presence(ctx, &p.user)).await;
                }
            }
            Ok((principal, claim))
        }
        Err(e) => {
            rejected(ctx, &e).await;
            Err(e.into())
        }
    }
}

/// The refusal `claim`'s verdict calls for (a replayed copy, or a replay set that did not
/// answer), published as a `user.<id>.auth` event like any other.
pub(crate) async fn verdict(ctx: &WorkerCtx, job: &Job, claim: &Claim) -> Option<RequestError> {
    let e = crate::quota::auth::refusal(&claim.verdict().await, &job.user_id, job.trace_id.as_str())?;
    rejected(ctx, &e).await;
    Some(e.into())
}

/// Tell a refused user's devices (`user.<id>.auth`).
async fn rejected(ctx: &WorkerCtx, e: &crate::quota::auth::AuthError) {
    if let Some(user) = &e.user {
        let ev = crate::quota::auth::AuthEvent {
            event: "rejected",
            user_id: user,
            token_id: None,
            reason: Some(&e.error.message),
            timestamp: crate::clock::now_rfc3339(),
        };
        Box::pin(crate::quota::auth::publish_event(&ctx.client, &ev)).await;
    }
}

/// What an admitted request holds until it settles.
pub(crate) struct Ticket {
    /// Who it is billed to (none in open mode).
    principal: Option<Principal>,
    /// The worst case held on one of this worker's quota leases (none in open mode, for
    /// count_tokens, or an unpriced model served free).
    draw: Option<Draw>,
    /// Rate-limit counters held (released with the tokens actually used).
    rate: Option<Admitted>,
    /// The user's group price multiplier, applied to the answer's cost.
    pub(crate) ratio: f64,
}

/// Admit `job` for `principal`: refuse an unpriced model, take its rate-limit slots, bound its
/// output (setting `job.chat.max_tokens` and `job.output_cap` when the gateway sets the cap)
/// and hold its worst case. Refusals are 403 (unpriced), 429 (rate limits) or 402 (quota).
pub(crate) async fn admit(
    ctx: &WorkerCtx,
    job: &mut Job,
    principal: Option<Principal>,
    claim: Option<&Claim>,
) -> Result<Ticket, RequestError> {
    let billed = principal.is_some() && ctx.quota.is_some();
    let p = principal.as_ref();
    let counting = matches!(job.client, Client::Native { op: Op::CountTokens, .. });
    let current = match (billed, &ctx.live) {
        (true, Some(l)) => matches!(l.prices_current().await, Ok(true)),
        _ => true,
    };
    if !current {
        return Err(RequestError {
            status: 503,
            message: "prices are not proven current (the PRICES / GROUPS buckets do not answer); retry shortly".into(),
            retry_after: Some(1),
        });
    }
    let pricing = ctx.pricing();
    let price = pricing.table.lookup(&job.model);
    if billed && !counting && price.is_none() && ctx.unpriced == Unpriced::Refuse {
        return Err(RequestError::new(
            403,
            format!(
                "model {:?} has no price, so it cannot be billed: the operator must add a [[pricing.models]] entry \
                 matching it (pattern, input, output), or set [pricing] unpriced = \"free\"",
                job.model
            ),
        ));
    }
    let input_bound = input_bound(job);
    // The request's own output bound; none means the gateway sets one below.
    let own_output = job
        .chat
        .max_tokens
        .map(|m| u64::from(m) + job.chat.thinking.as_ref().and_then(|t| t.budget_tokens).map_or(0, u64::from));
    // Rate limits first (cheapest to refuse).
    let est_tokens = input_bound.min(job.chat.estimate_prompt_tokens() * 4)
        + own_output.unwrap_or_else(|| price.map_or(0, |p| u64::from(p.output_limit())));
    let rate = match (p.and_then(|p| p.token.as_ref()), &ctx.rates) {
        (Some((hash, rec)), Some(rates)) => {
            // Limits are counted in the store: a replayed copy must not use them up, so its
            // verdict comes first.
            if let (true, Some(c)) = (rec.has_rate_limits(), claim) {
                c.fresh().await?;
            }
            Box::pin(rates.admit(hash, rec, est_tokens)).await?
        }
        _ => None,
    };
    let held = match (p, price, counting) {
        (Some(p), Some(price), false) => Box::pin(hold(ctx, job, p, price, input_bound, own_output, claim)).await,
        // Nothing to hold: open mode, a free unpriced model, or count_tokens (free).
        _ => Ok(None),
    };
    let mut ticket = Ticket { principal, draw: None, rate, ratio: 1.0 };
    match held {
        Ok(Some(draw)) => {
            ticket.ratio = ctx.group_ratio(draw.group());
            ticket.draw = Some(draw);
            Ok(ticket)
        }
        Ok(None) => Ok(ticket),
        Err(e) => {
            // Refused: the rate-limit slots taken above go back.
            if let (Some(rates), Some(held)) = (&ctx.rates, ticket.rate.take()) {
                rates.release(held, None).await;
            }
            Err(e)
        }
    }
}

/// Hold the worst case of `job` on a quota lease (setting the gateway's output cap when the
/// request has none): at the model's output limit, else at what the balance pays for.
async fn hold(
    ctx: &WorkerCtx,
    job: &mut Job,
    p: &Principal,
    price: &PriceEntry,
    input_bound: u64,
    own_output: Option<u64>,
    claim: Option<&Claim>,
) -> Result<Option<Draw>, RequestError> {
    let (Some(q), Some(leases)) = (&ctx.quota, &ctx.leases) else { return Ok(None) };
    let ratio_bound = ctx.group_ratio_bound();
    let token_limit = p.token.as_ref().and_then(|(h, r)| r.quota_limit.map(|l| (h, l)));
    let units = |output: u64| -> i64 {
        crate::pricing::usd_to_quota(price.worst_cost(input_bound, output) * ratio_bound).max(1)
    };
    let first_output = own_output.unwrap_or(u64::from(price.output_limit()));
    let trace = job.trace_id.to_string();
    match Box::pin(leases.draw(&p.user, token_limit, units(first_output), &trace, claim)).await {
        Ok(d) => {
            if own_output.is_none() {
                set_cap(job, price.output_limit());
            }
            Ok(Some(d))
        }
        // The gateway's own cap did not fit: lower it to what the balance pays for (what the
        // store has left, or what this worker's leases have, whichever is more).
        Err(e) if e.status == 402 && own_output.is_none() => {
            let room = leases.room(&p.user, token_limit.map(|(h, _)| h));
            let remain = Box::pin(remaining(q, p, token_limit)).await?.max(room);
            let usd = remain as f64 / QUOTA_PER_USD / ratio_bound;
            let cap = price.affordable_output(usd, input_bound).min(price.output_limit());
            if cap < MIN_OUTPUT_TOKENS {
                return Err(refusal(price, input_bound, remain, ratio_bound));
            }
            let d = Box::pin(leases.draw(&p.user, token_limit, units(u64::from(cap)), &trace, claim)).await?;
            set_cap(job, cap);
            Ok(Some(d))
        }
        Err(e) => Err(e),
    }
}

/// The prompt's token bound: the whole body for a native request (it holds every token the
/// upstream reads, except images fetched by URL), the canonical bound for a seed request.
fn input_bound(job: &Job) -> u64 {
    match &job.client {
        Client::Native { body, .. } => body.len() as u64 + job.chat.url_images() * IMAGE_URL_TOKENS,
        Client::Seed => job.chat.prompt_token_bound(),
    }
}

/// Cap the answer at `cap` tokens, in the canonical request (converted bodies) and for the
/// pipeline to write into a pass-through body.
fn set_cap(job: &mut Job, cap: u32) {
    job.chat.max_tokens = Some(cap);
    job.output_cap = Some(cap);
}

/// What the user (and the token, when it has its own limit) can still spend.
async fn remaining(
    q: &crate::quota::account::QuotaStore,
    p: &Principal,
    token_limit: Option<(&crate::bus::subjects::Token, i64)>,
) -> Result<i64, RequestError> {
    let mut remain = q.balance(&p.user).await?.remain;
    if let Some((hash, limit)) = token_limit {
        remain = remain.min(limit - q.token_used(hash).await?);
    }
    Ok(remain.max(0))
}

/// The 402 for a balance that cannot pay for the prompt and a minimal answer.
fn refusal(price: &PriceEntry, input_bound: u64, remain: i64, ratio: f64) -> RequestError {
    let need = crate::pricing::usd_to_quota(price.worst_cost(input_bound, u64::from(MIN_OUTPUT_TOKENS)) * ratio);
    RequestError::new(
        402,
        format!(
            "insufficient quota: this prompt needs up to {need} units with a minimal answer \
             ({input_bound} prompt tokens at most, {MIN_OUTPUT_TOKENS} output tokens), {remain} remain"
        ),
    )
}

impl Ticket {
    /// Give back what an admitted request holds when it is refused after admission (a
    /// replayed copy): its hold returns to the lease and its rate-limit slots are released,
    /// with no ledger record.
    pub(crate) async fn release(self, ctx: &WorkerCtx) {
        drop(self.draw);
        if let (Some(rates), Some(held)) = (&ctx.rates, self.rate) {
            rates.release(held, None).await;
        }
    }

    /// Settle after the final reply: charge the delivered cost (0 when nothing was
    /// delivered), append the ledger record (marked with any overage) and release the
    /// rate-limit slots. Off the client's critical path.
    pub(crate) async fn settle(self, ctx: &WorkerCtx, job: &Job, outcome: &Outcome<'_>) {
        let principal = self.principal.as_ref();
        if let (Some(draw), Some(leases)) = (self.draw, &ctx.leases) {
            let actual = if outcome.usage.is_some() { crate::pricing::usd_to_quota(outcome.cost) } else { 0 };
            let u = outcome.usage.copied().unwrap_or_default();
            let overage = (actual - draw.units()).max(0);
            if overage > 0 {
                ctx.metrics.record_overage(overage as u64);
                tracing::warn!(trace_id = %job.trace_id, model = %job.model, reserved = draw.units(), charged = actual,
                    "upstream reported more usage than the reservation covered; charged what it reported");
            }
            let record = crate::quota::ledger::UsageRecord {
                kind: "usage".into(),
                trace_id: job.trace_id.to_string(),
                user_id: job.user_id.clone(),
                token_id: principal.and_then(|p| p.token.as_ref()).map(|(_, r)| r.id.clone()),
                platform: job.platform.as_str().into(),
                model: job.model.clone(),
                channel: outcome.channel.to_string(),
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                cache_read_tokens: u.cache_read_tokens,
                cache_write_tokens: u.cache_write_tokens,
                reasoning_tokens: u.reasoning_tokens,
                cost_usd: if outcome.usage.is_some() { outcome.cost } else { 0.0 },
                quota: actual,
                duration_ms: outcome.duration_ms,
                ttft_ms: outcome.ttft_ms,
                status: outcome.status,
                estimated: u.estimated,
                session_id: job.session_id.clone(),
                timestamp: crate::clock::now_rfc3339(),
                hold_id: None,
                overage,
                lease_id: None,
            };
            // Queued for the ledger writer: no JetStream round trip here.
            leases.settle(draw, actual, record);
        }
        if let (Some(rates), Some(held)) = (&ctx.rates, self.rate) {
            rates.release(held, Some(outcome.usage.map_or(0, |u| u.prompt_total() + u.output_tokens))).await;
        }
    }
}

/// What billing needs of a finished request.
pub(crate) struct Outcome<'a> {
    /// Usage by class, when an answer (or part of one) was delivered.
    pub(crate) usage: Option<&'a Usage>,
    /// The delivered cost in USD, group ratio included.
    pub(crate) cost: f64,
    /// The channel that served it.
    pub(crate) channel: &'a str,
    /// How long the request took.
    pub(crate) duration_ms: u64,
    /// HTTP-like status of the outcome.
    pub(crate) status: u16,
    /// Time to the first answer-bearing chunk, when one came.
    pub(crate) ttft_ms: Option<u64>,
}
