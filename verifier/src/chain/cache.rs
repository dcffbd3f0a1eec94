//! Remembered chain verifications.
//!
//! A fleet's nodes present the same `x5c` chain in every attestation, and path validation
//! (two or three ECDSA or EdDSA signature checks, CRL lookups) costs far more than the
//! attestation's own signature. A success is therefore remembered under the SHA-256 of the
//! role and the exact certificate bytes, together with the window of instants in which that
//! same success is certain to repeat: every certificate of the chain valid (notBefore and
//! notAfter, inclusive, as webpki checks them) and every CRL of the domain current (webpki
//! rejects an instant at or after nextUpdate). Outside the window the chain is checked again
//! from scratch, so an expired certificate or a lapsed CRL is never hidden by the cache.
//!
//! Failures are never remembered: they are rare in a healthy fleet, and an attacker sending
//! junk would only fill the cache. The cache belongs to one [`super::TrustAnchors`] value, so
//! new roots or CRLs (a new value) start with an empty one.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use ring::digest;

use super::{Role, VerifiedLeaf};

/// Chains remembered at most; the oldest is forgotten first. An entry is a few hundred
/// bytes, so a full cache stays in the tens of megabytes.
pub(super) const CAPACITY: usize = 65_536;

/// GPU device chains remembered at most, in a cache of their own: a hardware-tier fleet has
/// one device chain per GPU, eight per node, and they must not evict the node chains every
/// attestation needs. 131,072 chains (16,384 eight-GPU nodes) of well under a kilobyte each.
pub(super) const GPU_CAPACITY: usize = 131_072;

/// The caches of one set of trust anchors: node and licence-signer chains in one, GPU device
/// chains in the other.
#[derive(Debug)]
pub(super) struct Caches {
    signers: ChainCache,
    gpus: ChainCache,
}

impl Default for Caches {
    fn default() -> Self {
        Self {
            signers: ChainCache::default(),
            gpus: ChainCache::with_capacity(GPU_CAPACITY),
        }
    }
}

impl Caches {
    /// The cache chains of `role` are remembered in.
    pub(super) fn of(&self, role: Role) -> &ChainCache {
        match role {
            Role::Node | Role::LicenceSigner | Role::ShipmentSigner => &self.signers,
            Role::GpuDevice => &self.gpus,
        }
    }

    /// Chains remembered, in both.
    pub(super) fn len(&self) -> usize {
        self.signers.len().saturating_add(self.gpus.len())
    }
}

/// The SHA-256 of a role and a chain's exact bytes.
pub(super) type Key = [u8; 32];

/// Verified chains, each with the instants at which its verification is known to hold.
pub(super) struct ChainCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Insertion order, for eviction.
    order: VecDeque<Key>,
}

struct Entry {
    leaf: VerifiedLeaf,
    /// First instant (Unix seconds) at which the verification holds.
    from: i64,
    /// Last instant at which it holds.
    until: i64,
}

impl Default for ChainCache {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl fmt::Debug for ChainCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl ChainCache {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The key of `chain` checked for `role`. Lengths are hashed with the bytes, so two
    /// chains that concatenate to the same bytes get different keys.
    pub(super) fn key(role: Role, chain: &[Vec<u8>]) -> Key {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&[role.tag()]);
        for cert in chain {
            ctx.update(&(cert.len() as u64).to_be_bytes());
            ctx.update(cert);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// The leaf of a chain verified earlier, if `at_unix` lies in that verification's window.
    pub(super) fn get(&self, key: &Key, at_unix: i64) -> Option<VerifiedLeaf> {
        let inner = self.lock();
        let entry = inner.entries.get(key)?;
        (entry.from..=entry.until)
            .contains(&at_unix)
            .then(|| entry.leaf.clone())
    }

    /// Remembers a verified chain and its window, forgetting the oldest entry when full.
    pub(super) fn insert(&self, key: Key, leaf: VerifiedLeaf, from: i64, until: i64) {
        if from > until {
            return;
        }
        let mut inner = self.lock();
        let entry = Entry { leaf, from, until };
        if inner.entries.insert(key, entry).is_some() {
            // Re-verified (outside the old window): the order entry already exists.
            return;
        }
        inner.order.push_back(key);
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.entries.remove(&old);
            }
        }
    }

    /// Chains remembered now.
    pub(super) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// The map is consistent after any operation (no step can panic half-way), so a lock
    /// poisoned by a panic elsewhere in the holding thread is still safe to use.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(subject: &str) -> VerifiedLeaf {
        VerifiedLeaf {
            spki_der: vec![1, 2, 3],
            key: tppguard_proto::jws::VerifyingKey::from_raw(
                tppguard_proto::jws::Alg::EdDSA,
                &[
                    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9,
                    0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02,
                    0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
                ],
            )
            .unwrap(),
            node_id: tppguard_proto::identity::NodeId::from_spki_der(&[1, 2, 3]),
            certified_site: None,
            key_algorithm: super::super::KeyAlgorithm::Ed25519,
            subject: subject.to_owned(),
            serial: "01".to_owned(),
            not_before: 0,
            not_after: 100,
            chain_len: 2,
            issuer: None,
        }
    }

    /// A hardware-tier fleet's GPU chains fill their own cache, never the node chains'.
    #[test]
    fn gpu_chains_cannot_evict_node_chains() {
        let caches = Caches::default();
        assert!(std::ptr::eq(
            caches.of(Role::Node),
            caches.of(Role::LicenceSigner)
        ));
        assert!(!std::ptr::eq(
            caches.of(Role::Node),
            caches.of(Role::GpuDevice)
        ));
        assert_eq!(caches.of(Role::GpuDevice).capacity, GPU_CAPACITY);
        let node = ChainCache::key(Role::Node, &[vec![1]]);
        caches.of(Role::Node).insert(node, leaf("node"), 0, 100);
        // One leaf, cloned: making a key per entry would dominate a debug build's time.
        let gpu_leaf = leaf("gpu");
        for i in 0..=u32::try_from(CAPACITY).unwrap() {
            let gpu = ChainCache::key(Role::GpuDevice, &[i.to_be_bytes().to_vec()]);
            caches
                .of(Role::GpuDevice)
                .insert(gpu, gpu_leaf.clone(), 0, 100);
        }
        assert!(caches.of(Role::Node).get(&node, 50).is_some());
        assert_eq!(caches.len(), CAPACITY + 2);
    }

    #[test]
    fn keys_separate_roles_and_certificate_boundaries() {
        let a = ChainCache::key(Role::Node, &[vec![1, 2], vec![3]]);
        assert_eq!(a, ChainCache::key(Role::Node, &[vec![1, 2], vec![3]]));
        assert_ne!(a, ChainCache::key(Role::Node, &[vec![1], vec![2, 3]]));
        assert_ne!(a, ChainCache::key(Role::Node, &[vec![1, 2, 3]]));
        assert_ne!(
            a,
            ChainCache::key(Role::LicenceSigner, &[vec![1, 2], vec![3]])
        );
    }

    #[test]
    fn a_hit_needs_an_instant_inside_the_window() {
        let cache = ChainCache::default();
        let key = ChainCache::key(Role::Node, &[vec![7]]);
        cache.insert(key, leaf("CN=a"), 10, 20);
        assert_eq!(cache.get(&key, 9), None);
        assert_eq!(cache.get(&key, 10).map(|l| l.subject), Some("CN=a".into()));
        assert_eq!(cache.get(&key, 20).map(|l| l.subject), Some("CN=a".into()));
        assert_eq!(cache.get(&key, 21), None);
        let other = ChainCache::key(Role::Node, &[vec![8]]);
        assert_eq!(cache.get(&other, 15), None);
    }

    #[test]
    fn an_empty_window_is_not_remembered() {
        let cache = ChainCache::default();
        let key = ChainCache::key(Role::Node, &[vec![7]]);
        cache.insert(key, leaf("CN=a"), 21, 20);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_oldest_entry_goes_first_when_full() {
        let cache = ChainCache::with_capacity(2);
        let keys: Vec<Key> = (0u8..3)
            .map(|i| ChainCache::key(Role::Node, &[vec![i]]))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            cache.insert(*key, leaf(&format!("CN={i}")), 0, 10);
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&keys[0], 5), None);
        assert!(cache.get(&keys[1], 5).is_some());
        assert!(cache.get(&keys[2], 5).is_some());
        // Re-inserting a present key neither grows nor reorders the cache.
        cache.insert(keys[2], leaf("CN=2b"), 0, 30);
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.get(&keys[2], 25).map(|l| l.subject),
            Some("CN=2b".into())
        );
    }
}
