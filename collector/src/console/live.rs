//! The live view: a fingerprint of the open incidents, watched, and pushed to browsers as
//! server-sent events when it changes.

use crate::console::pages::{incident_rows, ranked};
use crate::http::auth::User;
use crate::http::state::{ApiError, Shared, with_store};
use crate::store::Store;
use axum::extract::{Extension, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use std::time::Duration;

/// How often the live view looks for changed incidents.
pub(crate) const LIVE_EVERY: Duration = Duration::from_secs(2);

pub(crate) async fn incident_rows_fragment(
    State(state): State<Shared>,
    Extension(user): Extension<User>,
) -> Result<Html<String>, ApiError> {
    with_store(&state, move |store, st| {
        let list = ranked(store.incidents("open", 10_000)?);
        Ok(Html(incident_rows(&list, &user, crate::clock::now_ms(), &st.config.http.currency)))
    })
    .await
}

/// A fingerprint of the open incidents: it changes when one opens, resolves, grows or is acked.
pub(crate) fn fingerprint(store: &mut Store) -> crate::store::Result<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for i in store.active_incidents()? {
        (i.id, &i.state, i.affected_customers, i.acked_at, &i.probable_cause).hash(&mut h);
    }
    Ok(h.finish())
}

/// Keeps `tx` at the open incidents' fingerprint, looking every `LIVE_EVERY`: one query
/// however many consoles are open.
pub async fn watch_incidents(state: Shared, tx: tokio::sync::watch::Sender<u64>) {
    loop {
        let st = state.clone();
        let now = tokio::task::spawn_blocking(move || {
            let mut store = st.store.lock().unwrap_or_else(|p| p.into_inner());
            fingerprint(&mut store).ok()
        })
        .await
        .ok()
        .flatten();
        if let Some(now) = now {
            tx.send_if_modified(|v| std::mem::replace(v, now) != now);
        }
        tokio::select! {
            _ = tokio::time::sleep(LIVE_EVERY) => {}
            _ = tx.closed() => return,
        }
    }
}

/// Server-sent events: `incidents` whenever the open incidents change.
pub(crate) async fn events(State(state): State<Shared>) -> impl IntoResponse {
    let mut rx = state.incidents.clone();
    rx.mark_unchanged();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let now = *rx.borrow_and_update();
        Some((Ok::<_, std::convert::Infallible>(Event::default().event("incidents").data(now.to_string())), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
