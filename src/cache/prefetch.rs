//! Prefetch: ids from the configuration fetched at start (batched where the service allows),
//! per role, and the secrets carrying configured tags; reads that arrive meanwhile wait for these
//! fetches instead of starting their own.

use super::*;

impl<B: Backend> Cache<B> {
    /// Fetches secrets and parameters at start, after a random delay of up to `jitter` (so a
    /// fleet started at once does not hit AWS at once). Reads of these keys that arrive
    /// meanwhile wait for this fetch instead of starting their own.
    pub fn prefetch(&self, secrets: Vec<String>, parameters: Vec<String>, jitter: Duration) {
        let delay = jitter.mul_f64(random_unit());
        self.prefetch_secrets(None, secrets, delay);
        for name in parameters {
            let cache = self.clone();
            self.inner.prefetching.send_modify(|n| *n += 1);
            self.spawn(async move {
                let _done = PrefetchDone(&cache.inner.prefetching);
                tokio::time::sleep(delay).await;
                let key = Key::parameter(name.clone(), None, None, true);
                if let Err(e) = cache.get(key, false).await {
                    tracing::warn!(parameter = ?name, error = ?e.to_string(), "prefetch failed");
                }
            });
        }
    }

    /// Like [`Cache::prefetch`] for secrets read as `role`: one batch job per role, so each
    /// role's secrets go out in BatchGetSecretValue calls signed as that role.
    pub fn prefetch_as(&self, role: Arc<str>, secrets: Vec<String>, jitter: Duration) {
        self.prefetch_secrets(Some(role), secrets, jitter.mul_f64(random_unit()));
    }

    fn prefetch_secrets(&self, role: Option<Arc<str>>, secrets: Vec<String>, delay: Duration) {
        let mut pending = Vec::new();
        {
            let mut st = self.state();
            for id in secrets {
                let key = Key::secret(id.clone(), None, None).with_role(role.clone());
                let slot = st.map.entry(key.clone()).or_default();
                if slot.inflight.is_some() || slot.value.is_some() {
                    continue;
                }
                let (tx, rx) = watch::channel(None);
                slot.inflight = Some(rx.clone());
                pending.push((id, key, tx, rx));
            }
        }
        if !pending.is_empty() {
            self.inner.prefetching.send_modify(|n| *n += 1);
            let cache = self.clone();
            self.spawn(async move {
                let _done = PrefetchDone(&cache.inner.prefetching);
                tokio::time::sleep(delay).await;
                cache.fetch_claimed(role, pending).await;
            });
        }
    }

    /// Fetches every secret carrying one of `tag_keys` at start, at most `limit`, as `role`
    /// (`None`: the agent's own credentials; after the same random delay as
    /// [`Cache::prefetch`]), and caches each under its name (and the role). The ids are not
    /// known before the answer, so a read that arrives first fetches on its own; a value a read
    /// already brought is kept.
    pub fn prefetch_tagged(
        &self,
        role: Option<Arc<str>>,
        tag_keys: Vec<String>,
        limit: usize,
        jitter: Duration,
    ) {
        if tag_keys.is_empty() || self.inner.settings.capacity == 0 {
            return;
        }
        if limit == 0 {
            tracing::warn!(
                tag_keys = ?tag_keys,
                role = ?role,
                "tag prefetch skipped: the listed ids fill the prefetch's share of the cache \
                 (raise cache_buffer_ratio or cache_size)"
            );
            return;
        }
        let delay = jitter.mul_f64(random_unit());
        self.inner.prefetching.send_modify(|n| *n += 1);
        let cache = self.clone();
        self.spawn(async move {
            let _done = PrefetchDone(&cache.inner.prefetching);
            tokio::time::sleep(delay).await;
            let backend = &cache.inner.backend;
            match backend
                .fetch_tagged(role.clone(), tag_keys.clone(), limit)
                .await
            {
                Ok(found) => {
                    let count = found.len();
                    for (name, fetched) in found {
                        let key = Key::secret(name, None, None).with_role(role.clone());
                        cache.store_prefetched(key, fetched);
                    }
                    tracing::info!(
                        secrets = count,
                        tag_keys = ?tag_keys,
                        role = ?role,
                        "tag prefetch done"
                    );
                }
                Err(e) => tracing::warn!(
                    tag_keys = ?tag_keys,
                    role = ?role,
                    error = ?e.to_string(),
                    "tag prefetch failed (it needs secretsmanager:BatchGetSecretValue and \
                     secretsmanager:ListSecrets); the secrets are fetched on first read"
                ),
            }
        });
    }

    /// Caches a prefetched value unless the slot already has one or a fetch in flight.
    fn store_prefetched(&self, key: Key, fetched: Fetched) {
        let busy = self
            .state()
            .map
            .get(&key)
            .is_some_and(|slot| slot.value.is_some() || slot.inflight.is_some());
        if !busy {
            let (_tx, marker) = watch::channel(None);
            let _ = self.finish(&key, &marker, Ok(Refreshed::New(fetched)), None);
        }
    }
}
