//! `oncehook serve`.

use std::path::Path;
use std::process::ExitCode;

use crate::app::{App, Role};
use crate::config::Config;

pub async fn run(config_path: &Path, role: Role) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let app = App::build(config, role).await?;
    let shutdown = crate::shutdown::on_signals();
    app.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
