//! What every admin command shares: where the admin API is (`--url`, else the config's
//! `admin.listen`), the token (`ONCEHOOK_ADMIN_TOKEN`), and one client that turns the API's
//! answers into values or clear errors.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use crate::config::Config;

pub const TOKEN_VARIABLE: &str = "ONCEHOOK_ADMIN_TOKEN";

#[derive(clap::Args, Debug, Clone)]
pub struct AdminArgs {
    /// The config file, for `admin.listen` when --url is not given.
    #[arg(short, long, default_value = "oncehook.toml")]
    pub config: PathBuf,
    /// The admin API's base URL, e.g. http://127.0.0.1:8081 (default: the config's admin.listen).
    #[arg(long)]
    pub url: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(args: &AdminArgs) -> anyhow::Result<AdminClient> {
        let base = match &args.url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let config = Config::load(&args.config).map_err(|e| {
                    anyhow!(
                        "{e}\n(pass --url http://HOST:PORT to reach the admin API without a config)"
                    )
                })?;
                let mut addr = config.admin.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
                }
                format!("http://{addr}")
            }
        };
        let token = std::env::var(TOKEN_VARIABLE)
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                anyhow!("{TOKEN_VARIABLE} is not set: export the admin token (admin.token in the config)")
            })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(AdminClient { base, token, http })
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let request = self.http.get(format!("{}{path}", self.base)).query(query);
        self.send(request).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the admin API at {}: {e}", self.base))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| anyhow!("the admin API's answer could not be read: {e}"))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        let message = body
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string());
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "the admin API refused the token (401): {message}; check {TOKEN_VARIABLE} against admin.token"
            );
        }
        bail!("the admin API answered {status}: {message}")
    }
}

/// A field of a JSON object as display text ("" when absent or null).
pub fn text(value: &Value, field: &str) -> String {
    match value.get(field) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `text` cut to `width` characters, with an ellipsis when cut; newlines flattened.
pub fn clip(text: &str, width: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= width {
        flat
    } else {
        let mut cut: String = flat.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Prints rows as left-aligned columns under a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}
