//! A store handle that sees one tenant only, as graph runs use: every namespace it is given
//! must start with the tenant's segment, and a search of the root is a search of the tenant.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::{Embedder, Hit, Item, MemoryError, MemoryStore, Namespace, PutOptions, Search};

/// `inner` limited to `tenant` (the first namespace segment). Over Postgres, `inner` is
/// itself scoped by row-level security ([`MemoryStore::tenant_store`]).
pub struct TenantScoped {
    inner: Arc<dyn MemoryStore>,
    tenant: Namespace,
}

impl TenantScoped {
    /// Refuses an empty tenant: a handle scoped to nothing would see everything.
    pub fn new(inner: &Arc<dyn MemoryStore>, tenant: &str) -> Result<Self, MemoryError> {
        let tenant_ns = Namespace::new([tenant])?;
        let inner = inner
            .tenant_store(tenant)
            .unwrap_or_else(|| Arc::clone(inner));
        Ok(TenantScoped {
            inner,
            tenant: tenant_ns,
        })
    }

    fn check(&self, namespace: &Namespace) -> Result<(), MemoryError> {
        if namespace.starts_with(&self.tenant) {
            Ok(())
        } else {
            Err(MemoryError::Invalid(format!(
                "namespace `{namespace}` is outside tenant `{}`; start it with the tenant's segment",
                self.tenant
            )))
        }
    }

    /// The root means "all of this tenant".
    fn within(&self, prefix: &Namespace) -> Result<Namespace, MemoryError> {
        if prefix.is_root() {
            return Ok(self.tenant.clone());
        }
        self.check(prefix)?;
        Ok(prefix.clone())
    }
}

#[async_trait]
impl MemoryStore for TenantScoped {
    async fn put(
        &self,
        namespace: &Namespace,
        key: &str,
        value: Value,
        options: PutOptions,
    ) -> Result<(), MemoryError> {
        self.check(namespace)?;
        self.inner.put(namespace, key, value, options).await
    }

    async fn get(&self, namespace: &Namespace, key: &str) -> Result<Option<Item>, MemoryError> {
        self.check(namespace)?;
        self.inner.get(namespace, key).await
    }

    async fn delete(&self, namespace: &Namespace, key: &str) -> Result<bool, MemoryError> {
        self.check(namespace)?;
        self.inner.delete(namespace, key).await
    }

    async fn search(&self, search: &Search) -> Result<Vec<Hit>, MemoryError> {
        let prefix = self.within(&search.namespace_prefix)?;
        if prefix == search.namespace_prefix {
            return self.inner.search(search).await;
        }
        let mut scoped = search.clone();
        scoped.namespace_prefix = prefix;
        self.inner.search(&scoped).await
    }

    async fn list_namespaces(
        &self,
        prefix: &Namespace,
        max_depth: Option<usize>,
    ) -> Result<Vec<Namespace>, MemoryError> {
        let prefix = self.within(prefix)?;
        self.inner.list_namespaces(&prefix, max_depth).await
    }

    async fn sweep_expired(&self) -> Result<u64, MemoryError> {
        self.inner.sweep_expired().await
    }

    fn embedder(&self) -> &Arc<dyn Embedder> {
        self.inner.embedder()
    }
}
