//! Where requests go: one [`EndpointSet`] per target (a workload's sidecar endpoints
//! at the gateway, the model server's REST or gRPC address at the sidecar) and one
//! [`RetryBudget`] per model route. Both live as long as the proxy and are rebuilt
//! only when the config changes what they were built from, so a config reload keeps
//! outlier and budget state for unchanged targets.

use std::sync::{Arc, Mutex};

use infermesh_config::{Address, MeshConfig, Model, RetryPolicy};

use crate::FastMap;
use crate::budget::RetryBudget;
use crate::endpoints::EndpointSet;

/// An endpoint set and the addresses it was built from.
type BuiltSet = (Vec<Address>, Arc<EndpointSet>);

/// Endpoint sets and retry budgets by name.
#[derive(Debug, Default)]
pub struct Upstreams {
    /// The gateway's: by workload name.
    workloads: Mutex<FastMap<String, BuiltSet>>,
    /// The sidecar's: by the model server address's kind (`rest`, `grpc`).
    model_server: Mutex<FastMap<&'static str, BuiltSet>>,
    budgets: Mutex<FastMap<String, (BudgetKey, Arc<RetryBudget>)>>,
}

/// The settings a budget was built from.
#[derive(Debug, PartialEq)]
struct BudgetKey(f64, u32);

impl BudgetKey {
    fn of(policy: &RetryPolicy) -> BudgetKey {
        BudgetKey(policy.budget_ratio, policy.min_retries_per_second)
    }
}

/// The set, if it was built from these addresses.
fn current(built: Option<&BuiltSet>, addresses: &[Address]) -> Option<Arc<EndpointSet>> {
    built
        .filter(|(built_from, _)| built_from == addresses)
        .map(|(_, set)| set.clone())
}

/// A new endpoint set over `addresses`, its DNS refresh running.
fn build(addresses: &[Address], config: &MeshConfig) -> (BuiltSet, Arc<EndpointSet>) {
    let set = EndpointSet::new(
        addresses.to_vec(),
        config.outlier_detection.clone(),
        config.dns_refresh,
    );
    set.spawn_refresh();
    ((addresses.to_vec(), set.clone()), set)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Upstreams {
    /// The endpoint set of a workload's sidecars over `addresses`, created (and its
    /// DNS refresh spawned) on first use or when the addresses changed.
    pub fn workload(
        &self,
        name: &str,
        addresses: &[Address],
        config: &MeshConfig,
    ) -> Arc<EndpointSet> {
        let mut sets = lock(&self.workloads);
        if let Some(set) = current(sets.get(name), addresses) {
            return set;
        }
        let (built, set) = build(addresses, config);
        sets.insert(name.to_owned(), built);
        set
    }

    /// The endpoint set of the model server's `kind` (`rest`, `grpc`) address, as
    /// [`Upstreams::workload`].
    pub fn model_server(
        &self,
        kind: &'static str,
        address: &Address,
        config: &MeshConfig,
    ) -> Arc<EndpointSet> {
        let addresses = std::slice::from_ref(address);
        let mut sets = lock(&self.model_server);
        if let Some(set) = current(sets.get(kind), addresses) {
            return set;
        }
        let (built, set) = build(addresses, config);
        sets.insert(kind, built);
        set
    }

    /// The retry budget of a model's route.
    pub fn budget(&self, model: &Model) -> Arc<RetryBudget> {
        let key = BudgetKey::of(&model.route.retries);
        let mut budgets = lock(&self.budgets);
        if let Some((built_from, budget)) = budgets.get(&model.name)
            && *built_from == key
        {
            return budget.clone();
        }
        let policy = &model.route.retries;
        let budget = Arc::new(RetryBudget::new(
            policy.budget_ratio,
            policy.min_retries_per_second,
        ));
        budgets.insert(model.name.clone(), (key, budget.clone()));
        budget
    }
}
