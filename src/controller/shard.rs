//! Sharding: with `--shard-count N`, replica `--shard-index i` reconciles only the Applications
//! whose `namespace/name` hashes to `i` — or, with `--shard-by cluster`, the Applications whose
//! destination `Cluster` (`namespace/name`) hashes to `i`, so that each remote cluster's watches
//! and connections live in one replica (Applications of the local cluster still spread by
//! their own name). The hash is FNV-1a (64 bit), fixed by its definition:
//! every replica, build and Rust version agrees on who owns what (std's hasher is randomized per
//! process and would not).

/// Which part of the Applications this process reconciles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
    pub by: ShardBy,
}

/// What Applications are split by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ShardBy {
    /// Their own `namespace/name`.
    #[default]
    Application,
    /// Their destination Cluster's `namespace/name` (their own for the local cluster).
    Cluster,
}

impl Shard {
    /// Every Application: no sharding.
    pub const ALL: Shard = Shard { index: 0, count: 1, by: ShardBy::Application };

    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards);
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange { index, count });
        }
        Ok(Shard { index, count, by: ShardBy::Application })
    }

    /// The same shard, splitting by `by`.
    pub fn by(self, by: ShardBy) -> Shard {
        Shard { by, ..self }
    }

    /// Whether the Application `namespace/name` is this shard's, by its name alone.
    pub fn owns(&self, namespace: &str, name: &str) -> bool {
        self.count <= 1 || shard_of(namespace, name, self.count) == self.index
    }

    /// Whether `app` is this shard's: by its destination cluster with `--shard-by cluster`.
    pub fn owns_app(&self, app: &crate::api::Application) -> bool {
        let namespace = app.metadata.namespace.as_deref().unwrap_or_default();
        match (self.by, crate::api::destination_cluster(app)) {
            (ShardBy::Cluster, Some(cluster)) => {
                self.count <= 1
                    || shard_of(namespace, &format!("cluster:{cluster}"), self.count) == self.index
            }
            _ => self.owns(namespace, app.metadata.name.as_deref().unwrap_or_default()),
        }
    }

    pub fn is_sharded(&self) -> bool {
        self.count > 1
    }
}

/// `--shard-index` and `--shard-count` that do not make a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("--shard-count must be at least 1")]
    NoShards,
    #[error("--shard-index must be below --shard-count ({count}), not {index}")]
    IndexOutOfRange { index: u32, count: u32 },
}

/// The shard of `namespace/name` among `count`.
pub fn shard_of(namespace: &str, name: &str, count: u32) -> u32 {
    (fnv1a64(format!("{namespace}/{name}").as_bytes()) % u64::from(count.max(1))) as u32
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_reference_values() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn each_application_belongs_to_exactly_one_shard_and_all_shards_get_some() {
        let count = 3;
        let shards: Vec<Shard> = (0..count).map(|i| Shard::new(i, count).unwrap()).collect();
        let mut per_shard = vec![0; count as usize];
        for n in 0..300 {
            let name = format!("app-{n}");
            let owners: Vec<u32> = shards.iter().filter(|s| s.owns("team", &name)).map(|s| s.index).collect();
            assert_eq!(owners.len(), 1, "{name} is owned by {owners:?}");
            per_shard[owners[0] as usize] += 1;
        }
        assert!(per_shard.iter().all(|n| *n > 50), "uneven: {per_shard:?}");
    }

    #[test]
    fn by_cluster_every_application_of_a_cluster_is_on_one_shard() {
        let count = 4;
        let shards: Vec<Shard> =
            (0..count).map(|i| Shard::new(i, count).unwrap().by(ShardBy::Cluster)).collect();
        let app = |name: &str, cluster: Option<&str>| {
            let mut app = crate::api::Application::new(
                name,
                serde_json::from_value(
                    serde_json::json!({"source": {"repoURL": "https://git.example.com/a.git"}}),
                )
                .unwrap(),
            );
            app.metadata.namespace = Some("team".into());
            app.spec.destination =
                cluster.map(|c| crate::api::Destination { cluster: Some(c.into()), ..Default::default() });
            app
        };
        for cluster in ["eu-1", "eu-2", "us-1"] {
            let owners: std::collections::HashSet<u32> = (0..40)
                .map(|n| app(&format!("app-{n}"), Some(cluster)))
                .map(|a| shards.iter().find(|s| s.owns_app(&a)).unwrap().index)
                .collect();
            assert_eq!(owners.len(), 1, "the Applications of {cluster} are on shards {owners:?}");
        }
        let local: std::collections::HashSet<u32> = (0..40)
            .map(|n| app(&format!("app-{n}"), None))
            .map(|a| shards.iter().find(|s| s.owns_app(&a)).unwrap().index)
            .collect();
        assert!(local.len() > 1, "local Applications still spread by name");
    }

    #[test]
    fn one_shard_owns_everything_and_bad_indexes_are_refused() {
        assert!(Shard::ALL.owns("any", "thing"));
        assert!(Shard::new(2, 2).is_err());
        assert!(Shard::new(0, 0).is_err());
        assert_eq!(
            Shard::new(2, 2).unwrap_err().to_string(),
            "--shard-index must be below --shard-count (2), not 2"
        );
        assert_eq!(Shard::new(0, 0).unwrap_err().to_string(), "--shard-count must be at least 1");
    }
}
