//! Whether the store can take writes now (`/readyz`).

use super::PostgresStore;
use super::pool::run;
use crate::store::StoreError;

impl PostgresStore {
    /// An `UPDATE` that matches no row: the server still refuses it in a read-only transaction
    /// (a standby, `default_transaction_read_only`), and it writes nothing, locks nothing and
    /// costs no commit. A full disk shows in intake's own writes (SQLSTATE 53100, unavailable).
    pub(super) async fn probe_writable(&self) -> Result<(), StoreError> {
        run(&self.pool, "writable", |client| {
            Box::pin(async move {
                client
                    .simple_query("UPDATE oncehook_migrations SET name = name WHERE false")
                    .await?;
                Ok(())
            })
        })
        .await
    }
}
