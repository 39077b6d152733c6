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
