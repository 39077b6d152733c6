//! Versioned schema migrations, embedded in the binary.
//!
//! Each backend has an ordered list of SQL files under `migrations/<backend>/`. A store applies
//! the ones it has not recorded in `oncehook_migrations`, each in its own transaction, when it
//! opens (on PostgreSQL under an advisory lock, so nodes starting together migrate once). A
//! binary that finds a newer schema than it knows refuses to start rather than guess.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "intake",
        sql: include_str!("../../migrations/sqlite/0001_intake.sql"),
    },
    Migration {
        version: 2,
        name: "delivery",
        sql: include_str!("../../migrations/sqlite/0002_delivery.sql"),
    },
    Migration {
        version: 3,
        name: "search",
        sql: include_str!("../../migrations/sqlite/0003_search.sql"),
    },
    Migration {
        version: 4,
        name: "operators",
        sql: include_str!("../../migrations/sqlite/0004_operators.sql"),
    },
    Migration {
        version: 5,
        name: "edge_trust",
        sql: include_str!("../../migrations/sqlite/0005_edge_trust.sql"),
    },
    Migration {
        version: 6,
        name: "retention",
        sql: include_str!("../../migrations/sqlite/0006_retention.sql"),
    },
    Migration {
        version: 7,
        name: "destinations",
        sql: include_str!("../../migrations/sqlite/0007_destinations.sql"),
    },
    Migration {
        version: 8,
        name: "duplicates",
        sql: include_str!("../../migrations/sqlite/0008_duplicates.sql"),
    },
    Migration {
        version: 9,
        name: "node_stats",
        sql: include_str!("../../migrations/sqlite/0009_node_stats.sql"),
    },
    Migration {
        version: 10,
        name: "event_payloads",
        sql: include_str!("../../migrations/sqlite/0010_event_payloads.sql"),
    },
];

pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "intake",
        sql: include_str!("../../migrations/postgres/0001_intake.sql"),
    },
    Migration {
        version: 2,
        name: "delivery",
        sql: include_str!("../../migrations/postgres/0002_delivery.sql"),
    },
    Migration {
        version: 3,
        name: "search",
        sql: include_str!("../../migrations/postgres/0003_search.sql"),
    },
    Migration {
        version: 4,
        name: "operators",
        sql: include_str!("../../migrations/postgres/0004_operators.sql"),
    },
    Migration {
        version: 5,
        name: "edge_trust",
        sql: include_str!("../../migrations/postgres/0005_edge_trust.sql"),
    },
    Migration {
        version: 6,
        name: "retention",
        sql: include_str!("../../migrations/postgres/0006_retention.sql"),
    },
    Migration {
        version: 7,
        name: "destinations",
        sql: include_str!("../../migrations/postgres/0007_destinations.sql"),
    },
    Migration {
        version: 8,
        name: "duplicates",
        sql: include_str!("../../migrations/postgres/0008_duplicates.sql"),
    },
    Migration {
        version: 9,
        name: "node_stats",
        sql: include_str!("../../migrations/postgres/0009_node_stats.sql"),
    },
    Migration {
        version: 10,
        name: "event_payloads",
        sql: include_str!("../../migrations/postgres/0010_event_payloads.sql"),
    },
];

pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS oncehook_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at BIGINT  NOT NULL
)";

/// The migrations still to apply, given the highest version already recorded.
pub fn pending(
    all: &'static [Migration],
    applied: Option<i64>,
) -> Result<&'static [Migration], String> {
    let applied = applied.unwrap_or(0);
    let known = all.last().map_or(0, |m| m.version);
    if applied > known {
        return Err(format!(
            "the database schema is at version {applied}, newer than this binary knows ({known}); upgrade oncehook"
        ));
    }
    Ok(&all[all.partition_point(|m| m.version <= applied)..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing() {
        assert!(SQLITE.windows(2).all(|w| w[0].version < w[1].version));
        assert!(POSTGRES.windows(2).all(|w| w[0].version < w[1].version));
    }

    #[test]
    fn backends_share_versions_and_names() {
        let names = |all: &[Migration]| -> Vec<(i64, &str)> {
            all.iter().map(|m| (m.version, m.name)).collect()
        };
        assert_eq!(names(SQLITE), names(POSTGRES));
    }

    #[test]
    fn pending_skips_applied_and_refuses_newer() {
        assert_eq!(pending(SQLITE, None).map(|p| p.len()), Ok(SQLITE.len()));
        let latest = SQLITE.last().map_or(0, |m| m.version);
        assert_eq!(pending(SQLITE, Some(latest)).map(|p| p.len()), Ok(0));
        assert!(pending(SQLITE, Some(999)).is_err());
    }
}
