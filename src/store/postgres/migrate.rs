//! Applies the embedded PostgreSQL migrations, one transaction each, under an advisory lock so
//! that nodes starting together take turns.

use deadpool_postgres::{ClientWrapper, Pool};

use super::pool::{DbError, get, run};
use crate::store::{StoreError, migrations, now_millis};

/// Serializes migrations of nodes starting together ("oncehook" in ASCII).
const MIGRATION_LOCK: i64 = 0x6f6e_6365_686f_6f6b;

/// Applies pending migrations one transaction each, under a database-wide advisory lock so that
/// nodes starting together take turns (the later ones find the work done).
pub(super) async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    while run(pool, "migrate", |client| Box::pin(migrate_step(client))).await? {}
    Ok(())
}

/// Applies the next pending migration; false when there was none.
async fn migrate_step(client: &mut ClientWrapper) -> Result<bool, DbError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(migrations::CREATE_TABLE).await?;
    let row = tx
        .query_one("SELECT MAX(version)::bigint FROM oncehook_migrations", &[])
        .await?;
    let applied: Option<i64> = get(&row, 0)?;
    let pending = migrations::pending(migrations::POSTGRES, applied).map_err(DbError::Invalid)?;
    let Some(migration) = pending.first() else {
        tx.commit().await?;
        return Ok(false);
    };
    tx.batch_execute(migration.sql).await.map_err(|e| {
        if let Some(db) = e.as_db_error() {
            DbError::Invalid(format!(
                "migration {} ({}) failed: {db}",
                migration.version, migration.name
            ))
        } else {
            DbError::Pg(e)
        }
    })?;
    tx.execute(
        "INSERT INTO oncehook_migrations (version, name, applied_at)
         VALUES ($1::bigint, $2, $3::bigint)",
        &[&migration.version, &migration.name, &now_millis()],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
