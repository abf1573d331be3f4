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
    sets: Mutex<FastMap<String, BuiltSet>>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Upstreams {
    /// The endpoint set named `key` over `addresses`, created (and its DNS refresh
    /// spawned) on first use or when the addresses changed.
    pub fn endpoints(
        &self,
        key: &str,
        addresses: &[Address],
        config: &MeshConfig,
    ) -> Arc<EndpointSet> {
        let mut sets = lock(&self.sets);
        if let Some((built_from, set)) = sets.get(key)
            && built_from == addresses
        {
            return set.clone();
        }
        let set = EndpointSet::new(
            addresses.to_vec(),
            config.outlier_detection.clone(),
            config.dns_refresh,
        );
        set.spawn_refresh();
        sets.insert(key.to_owned(), (addresses.to_vec(), set.clone()));
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
