//! The HTTP API (JSON) and `/metrics`. Handlers read through their own store connection on
//! the blocking pool, so a slow query never stalls ingest.

use crate::http::auth::User;
use crate::http::state::{ApiError, Shared, with_store};
use crate::model::Incident;
use crate::store::{JourneyStats, Store};
use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router(state: Shared) -> Router<Shared> {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/customers/{customer_id}", get(customer))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/{id}", get(incident))
        .route("/api/v1/incidents/{id}/ack", post(ack))
        .route("/api/v1/actions", get(actions))
        .route("/api/v1/outcomes", get(outcomes).post(add_outcomes))
        .route("/api/v1/effectiveness", get(effectiveness))
        .route("/api/v1/deliveries", get(deliveries))
        .route("/api/v1/deliveries/{id}", get(delivery))
        .route("/api/v1/deliveries/{id}/retry", post(retry_delivery))
        .route("/api/v1/journeys", get(journeys))
        .route("/api/v1/agent-config", get(agent_config).put(set_agent_config))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(state.logins.clone(), crate::http::auth::require))
}

async fn health(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    with_store(&state, |store, _| {
        let customers = store.customer_count()?;
        let dialect = format!("{:?}", store.dialect()).to_lowercase();
        Ok(Json(
            json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "storage": dialect, "customers": customers}),
        ))
    })
    .await
}

#[derive(Deserialize)]
struct PageQuery {
    /// At most this many (up to 10,000); without it, every agent, as before pages existed.
    limit: Option<usize>,
    /// The `next` of the page before.
    after: Option<String>,
}

/// Agents in id order. With `limit`, one page of them and `next`, the `after` of the next
/// page (null on the last).
async fn agents(State(state): State<Shared>, Query(q): Query<PageQuery>) -> Result<Json<Value>, ApiError> {
    with_store(&state, move |store, _| {
        let after = q.after.unwrap_or_default();
        let Some(limit) = q.limit.map(|n| n.clamp(1, 10_000)) else {
            return Ok(Json(json!({"agents": store.agents_page(&after, None)?})));
        };
        let agents = store.agents_page(&after, Some(limit))?;
        let next = agents.last().filter(|_| agents.len() == limit).map(|a| a.agent_id.clone());
        Ok(Json(json!({"agents": agents, "next": next})))
    })
    .await
}

/// A line's latest figure per metric against its plan, and its score: 100 when every
/// metric's p90 is within the plan, each metric over its threshold pulling the score down in
/// proportion; `None` without recent measurements.
pub fn line_score(
    store: &mut Store,
    config: &crate::config::CollectorConfig,
    c: &crate::customers::Customer,
) -> Result<(serde_json::Map<String, Value>, Option<f64>), ApiError> {
    let plan = config.plan(&c.plan);
    let mut qoe = serde_json::Map::new();
    let mut scores = Vec::new();
    for (metric, s) in store.latest_samples(&c.subscriber_id)? {
        let threshold = plan.latency_us(&metric);
        if let Some(t) = threshold.filter(|_| s.p90 > 0) {
            scores.push((t / s.p90 as f64).min(1.0));
        }
        qoe.insert(
            metric,
            json!({"window_start": s.window_start, "count": s.count, "p50_us": s.p50, "p90_us": s.p90,
                "p99_us": s.p99, "threshold_p90_us": threshold}),
        );
    }
    let score = (!scores.is_empty()).then(|| (scores.iter().sum::<f64>() / scores.len() as f64 * 100.0).round());
    Ok((qoe, score))
}

async fn customer(State(state): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    with_store(&state, move |store, st| {
        let c = store.customer(&id)?.ok_or_else(|| ApiError::NoCustomer(id.to_string()))?;
        let (qoe, score) = line_score(store, &st.config, &c)?;
        let incidents: Vec<Incident> =
            store.active_incidents()?.into_iter().filter(|i| i.customers.contains(&c.customer_id)).collect();
        let mut actions = Vec::new();
        for a in store.actions(Some(&c.customer_id), false, 50)? {
            let result = store.action_result(a.id)?;
            let mut v = serde_json::to_value(&a).expect("plain data");
            v["result"] = json!(result);
            actions.push(v);
        }
        let outcomes = store.outcomes(Some(&c.customer_id), 50)?;
        let now = crate::clock::now_ms();
        let journeys = customer_journeys(store, &c.subscriber_id, now - DAY_MS, now)?;
        // Working latency and Quality of Outcome: the latest window's, and the last day's.
        let quality = store.line_quality(&c.customer_id, now - DAY_MS)?;
        Ok(Json(json!({"customer": c, "qoe": qoe, "score": score, "incidents": incidents, "actions": actions,
            "outcomes": outcomes,
            "journeys": journeys, "quality": quality.last(), "quality_history": quality})))
    })
    .await
}

const DAY_MS: i64 = 86_400_000;

/// One customer's journeys over windows in `[since, until)`, from their own lines.
fn customer_journeys(store: &mut Store, subscriber: &str, since: i64, until: i64) -> Result<Vec<Value>, ApiError> {
    let mut by_journey: std::collections::BTreeMap<String, JourneyStats> = Default::default();
    for (_, line) in store.subscriber_lines(subscriber, since, until)? {
        for j in &line.journeys {
            let s = by_journey
                .entry(j.journey.clone())
                .or_insert_with(|| JourneyStats { customers: 1, ..JourneyStats::new("customer", "", j) });
            s.add(j);
        }
    }
    Ok(by_journey.values().map(JourneyStats::to_json).collect())
}

#[derive(Deserialize)]
struct JourneyQuery {
    /// `all`, `segment`, `region`, `access_node` or `customer`.
    by: Option<String>,
    /// With `by=customer`, whose.
    customer_id: Option<String>,
    journey: Option<String>,
    /// Only this group (a segment, region or access node).
    group: Option<String>,
    /// The range: the last `hours` (default 24), or windows from `since` to `until` (Unix ms).
    hours: Option<i64>,
    since: Option<i64>,
    until: Option<i64>,
}

/// Journey success rate and latency percentiles per customer group, over a time range.
async fn journeys(State(state): State<Shared>, Query(q): Query<JourneyQuery>) -> Result<Json<Value>, ApiError> {
    let by = q.by.clone().unwrap_or_else(|| "all".into());
    if !["all", "segment", "region", "access_node", "customer"].contains(&by.as_str()) {
        return Err(ApiError::BadRequest("by must be all, segment, region, access_node or customer".into()));
    }
    let until = q.until.unwrap_or_else(|| crate::clock::now_ms() + 1);
    let since = q.since.unwrap_or(until - q.hours.unwrap_or(24).clamp(1, 24 * 366) * 3_600_000);
    with_store(&state, move |store, _| {
        let mut list: Vec<Value> = if by == "customer" {
            let id =
                q.customer_id.as_deref().ok_or_else(|| ApiError::BadRequest("by=customer needs customer_id".into()))?;
            let c = store.customer(id)?.ok_or_else(|| ApiError::NoCustomer(id.to_string()))?;
            let mut list = customer_journeys(store, &c.subscriber_id, since, until)?;
            for v in &mut list {
                v["group"] = json!(c.customer_id);
            }
            list
        } else {
            store
                .journey_stats(&by, since, until)?
                .iter()
                .filter(|s| q.group.as_ref().is_none_or(|g| g == &s.group))
                .map(|s| {
                    let mut v = s.to_json();
                    v["group"] = json!(s.group);
                    v
                })
                .collect()
        };
        list.retain(|v| q.journey.as_ref().is_none_or(|j| v["journey"] == j.as_str()));
        Ok(Json(json!({"by": by, "since": since, "until": until, "journeys": list})))
    })
    .await
}

/// The config pushed to agents, and which version each agent runs.
async fn agent_config(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    with_store(&state, |store, _| {
        let current = store.agent_config()?;
        let version = current.as_ref().map(|c| c.0.clone());
        let agents: Vec<Value> = store
            .agents()?
            .into_iter()
            .map(|a| {
                json!({"agent_id": a.agent_id, "online": a.online, "config_version": a.config_version,
                    "config_error": a.config_error, "in_sync": version.as_deref() == Some(a.config_version.as_str())})
            })
            .collect();
        let config = current.as_ref().and_then(|c| serde_json::from_str::<Value>(&c.1).ok());
        Ok(Json(json!({"version": version, "config": config, "updated_ms": current.map(|c| c.2), "agents": agents})))
    })
    .await
}

/// Replaces the config pushed to agents (JSON: journeys, opt_out, optional version). An
/// invalid one is refused with the reason, and the current one stays.
async fn set_agent_config(
    State(state): State<Shared>,
    Extension(user): Extension<User>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    operator(&user)?;
    let config = crate::agent_config::parse(body)?;
    let version = config.version.clone();
    let changed =
        with_store(&state, move |store, _| Ok(crate::agent_config::install(store, &config, crate::clock::now_ms())?))
            .await?;
    state.push_wake.notify_one();
    Ok(Json(json!({"version": version, "changed": changed})))
}

#[derive(Deserialize)]
struct IncidentQuery {
    state: Option<String>,
    limit: Option<i64>,
}

/// Open incidents first by severity, then by value at risk; otherwise the newest first.
pub(crate) fn rank(incidents: &mut [Incident]) {
    incidents.sort_by(|a, b| {
        let open = |i: &Incident| i.state == "open";
        open(b)
            .cmp(&open(a))
            .then(b.severity_rank().cmp(&a.severity_rank()))
            .then(b.value_at_risk.total_cmp(&a.value_at_risk))
            .then(b.id.cmp(&a.id))
    });
}

async fn incidents(State(state): State<Shared>, Query(q): Query<IncidentQuery>) -> Result<Json<Value>, ApiError> {
    let filter = q.state.unwrap_or_else(|| "open".into());
    if !["open", "resolved", "pending", "all"].contains(&filter.as_str()) {
        return Err(ApiError::BadRequest("state must be open, resolved, pending or all".into()));
    }
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    with_store(&state, move |store, _| {
        let mut list = store.incidents(&filter, limit)?;
        rank(&mut list);
        Ok(Json(json!({"incidents": list})))
    })
    .await
}

async fn incident(State(state): State<Shared>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    with_store(&state, move |store, _| {
        let i = store.incident(id)?.ok_or_else(|| ApiError::NoIncident(id))?;
        let customers = store.customers_by_id(&i.customers)?;
        let actions = store.incident_actions(id)?;
        let mut body = serde_json::to_value(&i).expect("plain data");
        body["customer_records"] = json!(customers);
        body["actions"] = json!(actions);
        Ok(Json(body))
    })
    .await
}

#[derive(Deserialize, Default)]
struct AckBody {
    by: Option<String>,
}

async fn ack(
    State(state): State<Shared>,
    Extension(user): Extension<User>,
    Path(id): Path<i64>,
    body: Option<Json<AckBody>>,
) -> Result<Json<Value>, ApiError> {
    operator(&user)?;
    // With a login, the acknowledgement is the login's; without one, whoever the caller says.
    let by =
        if user.authenticated { user.name } else { body.and_then(|b| b.0.by).unwrap_or_else(|| "operator".into()) };
    with_store(&state, move |store, _| {
        let i = store.ack_incident(id, &by, crate::clock::now_ms())?.ok_or_else(|| ApiError::NoIncident(id))?;
        Ok(Json(serde_json::to_value(i).expect("plain data")))
    })
    .await
}

#[derive(Deserialize)]
struct ActionQuery {
    customer_id: Option<String>,
    current: Option<bool>,
    limit: Option<i64>,
}

async fn actions(State(state): State<Shared>, Query(q): Query<ActionQuery>) -> Result<Json<Value>, ApiError> {
    with_store(&state, move |store, _| {
        let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
        let list = store.actions(q.customer_id.as_deref(), q.current.unwrap_or(false), limit)?;
        Ok(Json(json!({"actions": list})))
    })
    .await
}

#[derive(Deserialize)]
struct OutcomeQuery {
    customer_id: Option<String>,
    limit: Option<i64>,
}

async fn outcomes(State(state): State<Shared>, Query(q): Query<OutcomeQuery>) -> Result<Json<Value>, ApiError> {
    with_store(&state, move |store, _| {
        let list = store.outcomes(q.customer_id.as_deref(), q.limit.unwrap_or(1000).clamp(1, 100_000))?;
        Ok(Json(json!({"outcomes": list})))
    })
    .await
}

/// Records what the operator's systems saw (one outcome or an array). Each item is judged on
/// its own: 200 with what was accepted and what was refused and why, 422 when nothing was
/// accepted.
async fn add_outcomes(
    State(state): State<Shared>,
    Extension(user): Extension<User>,
    Json(body): Json<Value>,
) -> Result<axum::response::Response, ApiError> {
    operator(&user)?;
    let items = crate::outcomes::from_json(body).map_err(ApiError::BadRequest)?;
    let recorded = with_store(&state, move |store, st| {
        Ok(crate::outcomes::record(store, &st.config, items, &user.name, crate::clock::now_ms())?)
    })
    .await?;
    let status = if recorded.accepted + recorded.duplicates == 0 && !recorded.rejected.is_empty() {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, Json(json!(recorded))).into_response())
}

#[derive(Deserialize)]
struct RangeQuery {
    /// The last `days` (default 30), or windows from `since` to `until` (Unix ms).
    days: Option<i64>,
    since: Option<i64>,
    until: Option<i64>,
}

/// Per action type and segment, the action against the hold-out.
async fn effectiveness(State(state): State<Shared>, Query(q): Query<RangeQuery>) -> Result<Json<Value>, ApiError> {
    let until = q.until.unwrap_or_else(|| crate::clock::now_ms() + 1);
    let since = q.since.unwrap_or(until - q.days.unwrap_or(30).clamp(1, 3660) * DAY_MS);
    with_store(&state, move |store, st| {
        let rows = crate::outcomes::effectiveness(store, &st.config, since, until)?;
        Ok(Json(json!({"since": since, "until": until, "holdout_share": st.config.actions.holdout_share,
            "effects": rows})))
    })
    .await
}

#[derive(Deserialize)]
struct DeliveryQuery {
    state: Option<String>,
    webhook: Option<String>,
    /// `incident:ID` or `action:ID`.
    subject: Option<String>,
    limit: Option<i64>,
}

/// Webhook messages, newest first, with their delivery state, and the count in each state.
async fn deliveries(State(state): State<Shared>, Query(q): Query<DeliveryQuery>) -> Result<Json<Value>, ApiError> {
    if q.state.as_deref().is_some_and(|s| !["pending", "sent", "failed"].contains(&s)) {
        return Err(ApiError::BadRequest("state must be pending, sent or failed".into()));
    }
    with_store(&state, move |store, _| {
        let filter = crate::store::deliveries::DeliveryFilter {
            state: q.state.as_deref(),
            webhook: q.webhook.as_deref(),
            subject: q.subject.as_deref(),
        };
        let list = store.deliveries(&filter, q.limit.unwrap_or(100).clamp(1, 10_000))?;
        let counts: serde_json::Map<String, Value> =
            store.delivery_counts()?.into_iter().map(|(s, n)| (s, json!(n))).collect();
        Ok(Json(json!({"deliveries": list, "counts": counts})))
    })
    .await
}

/// One message, with the body it is sent with.
async fn delivery(State(state): State<Shared>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    with_store(&state, move |store, _| {
        let d = store.delivery(id)?.ok_or(ApiError::NoDelivery(id))?;
        let mut v = serde_json::to_value(&d).expect("plain data");
        v["body"] = serde_json::from_str(&d.body).unwrap_or(Value::Null);
        Ok(Json(v))
    })
    .await
}

/// Queues a failed message again (after the receiver is mended), under its own key.
async fn retry_delivery(
    State(state): State<Shared>,
    Extension(user): Extension<User>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    operator(&user)?;
    with_store(&state, move |store, _| {
        if !store.retry_delivery(id, crate::clock::now_ms())? {
            return Err(ApiError::NoDelivery(id));
        }
        Ok(Json(serde_json::to_value(store.delivery(id)?).expect("plain data")))
    })
    .await
}

async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

/// Changes need an operator.
fn operator(user: &User) -> Result<(), ApiError> {
    if user.is_operator() { Ok(()) } else { Err(ApiError::ReadOnly(user.name.clone())) }
}
