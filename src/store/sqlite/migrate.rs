//! Applies the embedded SQLite migrations the database has not recorded yet, one transaction
//! each.

use rusqlite::{Connection, TransactionBehavior, params};

use super::connection::classify;
use crate::store::{StoreError, migrations, now_millis};

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(migrations::CREATE_TABLE)
        .map_err(classify)?;
    let applied: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM oncehook_migrations", [], |row| {
            row.get(0)
        })
        .map_err(classify)?;
    let pending = migrations::pending(migrations::SQLITE, applied).map_err(StoreError::internal)?;
    for migration in pending {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        tx.execute_batch(migration.sql).map_err(|e| {
            StoreError::internal(format!(
                "migration {} ({}) failed: {e}",
                migration.version, migration.name
            ))
            .caused_by(e)
        })?;
        tx.execute(
            "INSERT INTO oncehook_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![migration.version, migration.name, now_millis()],
        )
        .map_err(classify)?;
        tx.commit().map_err(classify)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::params;
    use uuid::Uuid;

    use super::super::{SqliteOptions, SqliteStore};
    use crate::store::{AdminQueries, migrations};

    /// A database written by a build before payloads had their own table keeps every event's
    /// headers and body through the upgrade.
    #[tokio::test]
    async fn payloads_stored_inline_by_an_older_build_survive_the_upgrade() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        let id = Uuid::now_v7();
        {
            let conn = rusqlite::Connection::open(&path).expect("open");
            conn.execute_batch(migrations::CREATE_TABLE).expect("table");
            for migration in migrations::SQLITE.iter().filter(|m| m.version <= 9) {
                conn.execute_batch(migration.sql).expect("old migration");
                conn.execute(
                    "INSERT INTO oncehook_migrations (version, name, applied_at) VALUES (?1, ?2, 0)",
                    params![migration.version, migration.name],
                )
                .expect("record");
            }
            conn.execute(
                "INSERT INTO events (id, source, idempotency_key, fingerprint, received_at, status,
                                     content_type, headers, body, delivery_key)
                 VALUES (?1, 'crm', 'k-1', x'00', 5, 'completed', 'application/json',
                         '{\"user-agent\":\"old\"}', ?2, ?1)",
                params![&id.as_bytes()[..], &b"{\"lead\":1}"[..]],
            )
            .expect("old event");
        }
        let store = SqliteStore::open(SqliteOptions {
            path,
            batch_max: 16,
            queue_max: 16,
        })
        .expect("upgrade");
        let event = store
            .event(id)
            .await
            .expect("read")
            .expect("the event is there");
        assert_eq!(&event.body[..], b"{\"lead\":1}");
        assert_eq!(event.headers_json, "{\"user-agent\":\"old\"}");
    }
}
