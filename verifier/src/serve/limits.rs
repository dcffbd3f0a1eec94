//! What one client, and all of them together, may take from `serve` (docs/serve.md, Limits):
//! per-key one-minute rate windows (attestations per node, challenges per client), the cap on
//! outstanding challenges, the global in-flight request limit and the bound on concurrent
//! signature and chain checks. The connection limits live in [`super::conn`].
//!
//! Every limit is per replica: each verifier process counts on its own.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api::ApiError;
use super::auth::Principal;

/// Most keys a rate limiter tracks; past it, windows that ended are dropped.
const MAX_TRACKED_KEYS: usize = 100_000;
/// Seconds a client told `overloaded` should wait before retrying.
pub(crate) const OVERLOADED_RETRY_S: u64 = 1;
/// Longest an attestation waits for a verification slot before it is answered `overloaded`.
pub(crate) const VERIFICATION_WAIT: Duration = Duration::from_secs(1);

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Fixed one-minute windows per key.
pub(crate) struct RateLimiter<K> {
    per_minute: u32,
    windows: Mutex<HashMap<K, (i64, u32)>>,
}

impl<K: Eq + Hash> RateLimiter<K> {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Mutex::default(),
        }
    }

    /// Counts one event of `key` at `now`; `false` when over the limit.
    pub(crate) fn allow(&self, key: K, now: i64) -> bool {
        let minute = now.div_euclid(60);
        let mut windows = locked(&self.windows);
        if windows.len() >= MAX_TRACKED_KEYS && !windows.contains_key(&key) {
            windows.retain(|_, (m, _)| *m == minute);
        }
        let entry = windows.entry(key).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= self.per_minute
    }
}

/// Seconds from `now` to the next one-minute window.
pub(crate) fn next_minute_s(now: i64) -> u64 {
    60u64.saturating_sub(now.rem_euclid(60).unsigned_abs())
}

/// Who a challenge is counted against: the authenticated credential (a token's name, or a
/// node certificate's subject) from one peer address. A fleet sharing one node token is
/// counted machine by machine; a credential stolen and used from one address is held to one
/// client's rate. An IPv6 peer counts by its /64 (one host usually holds a whole /64, so
/// counting single addresses would give it billions of budgets); an IPv4-mapped IPv6 address
/// counts as its IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Client {
    /// The principal's name.
    credential: String,
    /// The TCP peer's address (IPv6: its /64); `None` for in-process calls of the router.
    peer: Option<IpAddr>,
}

/// The client a request counts against.
pub(crate) fn client_of(principal: &Principal, peer: Option<&ConnectInfo<SocketAddr>>) -> Client {
    Client {
        credential: principal.name.clone(),
        peer: peer.map(|ConnectInfo(addr)| network_of(addr.ip())),
    }
}

/// The network a peer address is counted as: IPv4 as is, IPv6 by its /64.
fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(std::net::Ipv6Addr::from(octets))
            }
        },
    }
}

/// Challenges: per-client rate windows and the outstanding (issued, unanswered, unexpired)
/// nonces, at most `max_outstanding` of them.
pub(crate) struct Challenges {
    rate: RateLimiter<Client>,
    max_outstanding: usize,
    outstanding: Mutex<Outstanding>,
}

#[derive(Default)]
struct Outstanding {
    /// Nonces issued, neither answered nor expired.
    live: HashSet<[u8; 32]>,
    /// Every nonce issued and not yet expired, by expiry (issue order: the TTL is fixed).
    by_expiry: VecDeque<(i64, [u8; 32])>,
}

impl Challenges {
    pub(crate) fn new(per_minute: u32, max_outstanding: usize) -> Self {
        Self {
            rate: RateLimiter::new(per_minute),
            max_outstanding,
            outstanding: Mutex::default(),
        }
    }

    /// Admits `nonce`, issued at `now` to `client` and answerable until `expires_at`, or says
    /// why not: 429 `challenge_rate_limited` (this client asked too often this minute) or 503
    /// `too_many_outstanding_challenges` (the table of unanswered nonces is full).
    pub(crate) fn admit(
        &self,
        client: Client,
        nonce: [u8; 32],
        now: i64,
        expires_at: i64,
    ) -> Result<(), ApiError> {
        if !self.rate.allow(client, now) {
            let wait = next_minute_s(now);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "challenge_rate_limited",
                format!(
                    "this client asked for more challenges this minute than the verifier's \
                     challenge_rate_per_minute allows: retry in {wait} s"
                ),
            )
            .with_retry_after(wait));
        }
        let mut o = locked(&self.outstanding);
        while let Some(&(expiry, old)) = o.by_expiry.front()
            && expiry <= now
        {
            o.by_expiry.pop_front();
            o.live.remove(&old);
        }
        if o.live.len() >= self.max_outstanding {
            let wait = o
                .by_expiry
                .iter()
                .find(|(_, n)| o.live.contains(n))
                .map_or(1, |(expiry, _)| expiry.saturating_sub(now).unsigned_abs());
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_outstanding_challenges",
                format!(
                    "the verifier holds max_outstanding_challenges ({}) unanswered challenges: \
                     retry in {wait} s, when the oldest expire",
                    self.max_outstanding
                ),
            )
            .with_retry_after(wait.max(1)));
        }
        o.live.insert(nonce);
        o.by_expiry.push_back((expires_at, nonce));
        Ok(())
    }

    /// `nonce` was answered (whatever the answer): it no longer counts as outstanding.
    pub(crate) fn answered(&self, nonce: &[u8]) {
        if let Ok(nonce) = <[u8; 32]>::try_from(nonce) {
            locked(&self.outstanding).live.remove(&nonce);
        }
    }

    /// Challenges outstanding now.
    #[cfg(test)]
    fn outstanding(&self) -> usize {
        locked(&self.outstanding).live.len()
    }
}

/// The 503 answer of a verifier at a limit of its own.
pub(crate) fn overloaded(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        format!("the verifier is at its {what} limit: retry in {OVERLOADED_RETRY_S} s"),
    )
    .with_retry_after(OVERLOADED_RETRY_S)
}

/// A slot to run one signature and chain check (`max_concurrent_verifications`), waiting at
/// most [`VERIFICATION_WAIT`]; then 503 `overloaded`.
pub(crate) async fn verification_slot(
    slots: &Arc<Semaphore>,
) -> Result<OwnedSemaphorePermit, ApiError> {
    match tokio::time::timeout(VERIFICATION_WAIT, Arc::clone(slots).acquire_owned()).await {
        Ok(Ok(slot)) => Ok(slot),
        // Elapsed, or the semaphore closed (it never is).
        Ok(Err(_)) | Err(_) => Err(overloaded("max_concurrent_verifications")),
    }
}

/// Middleware: at most the semaphore's permits of requests in flight; past it, 503
/// `overloaded` at once (never queued: a queue would only hold the flood longer).
pub(crate) async fn in_flight(
    State(slots): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match slots.try_acquire() {
        // The permit is held until the answer is made.
        Ok(_permit) => next.run(request).await,
        Err(_) => overloaded("max_in_flight").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tppguard_proto::identity::NodeId;

    #[test]
    fn rate_limiter_counts_per_key_per_minute() {
        let l = RateLimiter::new(2);
        let (a, b) = (NodeId::from_bytes([1; 32]), NodeId::from_bytes([2; 32]));
        assert!(l.allow(a, 60) && l.allow(a, 61));
        assert!(!l.allow(a, 119), "third in the minute");
        assert!(l.allow(b, 119), "another node");
        assert!(l.allow(a, 120), "a new minute");
        assert_eq!(next_minute_s(119), 1);
        assert_eq!(next_minute_s(120), 60);
    }

    #[tokio::test(start_paused = true)]
    async fn verifications_wait_briefly_for_a_slot_then_are_refused() {
        let slots = Arc::new(Semaphore::new(1));
        let busy = verification_slot(&slots).await.unwrap();
        let started = tokio::time::Instant::now();
        let e = verification_slot(&slots).await.unwrap_err();
        assert_eq!((e.code(), e.retry_after_s()), ("overloaded", Some(1)));
        assert_eq!(started.elapsed(), VERIFICATION_WAIT);
        // A slot freed while waiting is taken.
        let waiting = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { verification_slot(&slots).await.map(drop) }
        });
        tokio::time::sleep(VERIFICATION_WAIT / 2).await;
        drop(busy);
        assert!(waiting.await.unwrap().is_ok());
    }

    #[test]
    fn an_ipv6_host_counts_as_its_slash_64() {
        let p = Principal {
            name: "fleet".to_owned(),
            role: crate::serve::auth::Role::Node,
            licences: Vec::new(),
        };
        let at = |ip: &str| {
            let addr: SocketAddr = format!("{ip}:443").parse().unwrap();
            client_of(&p, Some(&ConnectInfo(addr)))
        };
        assert_eq!(at("[2001:db8:1:2::1]"), at("[2001:db8:1:2:ffff::9]"));
        assert_ne!(at("[2001:db8:1:2::1]"), at("[2001:db8:1:3::1]"));
        assert_eq!(at("[::ffff:192.0.2.7]"), at("192.0.2.7"));
        assert_ne!(at("192.0.2.7"), at("192.0.2.8"));
        // Spread over a /64, a flood is one client: past its rate, refused.
        let c = Challenges::new(3, 1000);
        for i in 0..3u8 {
            c.admit(at(&format!("[2001:db8::{i}]")), [i; 32], 1000, 1300)
                .unwrap();
        }
        let e = c
            .admit(at("[2001:db8::ff]"), [9; 32], 1000, 1300)
            .unwrap_err();
        assert_eq!(e.code(), "challenge_rate_limited");
    }

    #[test]
    fn challenges_are_limited_per_client_and_in_total() {
        let c = Challenges::new(3, 4);
        let node = |name: &str, ip: [u8; 4]| Client {
            credential: name.to_owned(),
            peer: Some(IpAddr::from(ip)),
        };
        let (a, b) = (node("fleet", [10, 0, 0, 1]), node("fleet", [10, 0, 0, 2]));
        for i in 0..3 {
            c.admit(a.clone(), [i; 32], 1000, 1300).unwrap();
        }
        let e = c.admit(a.clone(), [9; 32], 1010, 1310).unwrap_err();
        assert_eq!(e.code(), "challenge_rate_limited");
        assert_eq!(e.retry_after_s(), Some(10));
        // Another client is served, until the table is full.
        c.admit(b.clone(), [3; 32], 1010, 1310).unwrap();
        let e = c.admit(b.clone(), [4; 32], 1010, 1310).unwrap_err();
        assert_eq!(e.code(), "too_many_outstanding_challenges");
        assert_eq!(e.retry_after_s(), Some(290));
        // An answered nonce frees its place; so does expiry.
        c.answered(&[0; 32]);
        c.admit(b.clone(), [4; 32], 1011, 1311).unwrap();
        assert_eq!(c.outstanding(), 4);
        c.admit(b.clone(), [5; 32], 1300, 1600).unwrap();
        assert_eq!(c.outstanding(), 3, "the nonces expiring at 1300 are gone");
    }
}
