//! What every admin command shares: where the admin API is (`--url`, else the config's
//! `admin.listen`), the token (`ONCEHOOK_ADMIN_TOKEN`, else the config's `admin.token`), the
//! config file (`-c`, else `ONCEHOOK_CONFIG`, else `./oncehook.toml`), and one client that turns
//! the API's answers into values or clear errors.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use super::output::outln;
use crate::config::{AdminConfig, Config};

pub const TOKEN_VARIABLE: &str = "ONCEHOOK_ADMIN_TOKEN";
/// The config file when `-c` is not given (every command that reads one).
pub const CONFIG_VARIABLE: &str = "ONCEHOOK_CONFIG";

#[derive(clap::Args, Debug, Clone)]
pub struct AdminArgs {
    /// The config file: admin.listen (unless --url is given) and admin.token (unless
    /// ONCEHOOK_ADMIN_TOKEN is set).
    #[arg(short, long, env = CONFIG_VARIABLE, default_value = "oncehook.toml")]
    pub config: PathBuf,
    /// The admin API's base URL, e.g. http://127.0.0.1:8081 (default: the config's admin.listen).
    #[arg(long)]
    pub url: Option<String>,
    /// Print the admin API's JSON answer exactly as it came, instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub struct AdminClient {
    base: String,
    token: String,
    /// Where the token came from, for the error when the API refuses it.
    token_origin: String,
    http: reqwest::Client,
}

/// An answer of the admin API: its JSON as a value, and the text exactly as it came.
pub struct Answer {
    pub json: Value,
    pub text: String,
}

impl AdminClient {
    pub fn new(args: &AdminArgs) -> anyhow::Result<AdminClient> {
        let env_token = std::env::var(TOKEN_VARIABLE).ok().filter(|t| !t.is_empty());
        // The config is read only for what is not given otherwise.
        let admin = if args.url.is_none() || env_token.is_none() {
            Some(admin_section(&args.config, env_token.is_none()).map_err(|e| {
                let mut hint = Vec::new();
                if args.url.is_none() {
                    hint.push("--url http://HOST:PORT".to_owned());
                }
                if env_token.is_none() {
                    hint.push(TOKEN_VARIABLE.to_owned());
                }
                anyhow!(
                    "{e:#}\n(the admin commands read admin.listen and admin.token from the config: \
                     -c FILE or {CONFIG_VARIABLE}; without one, give {})",
                    hint.join(" and ")
                )
            })?)
        } else {
            None
        };
        let base = match &args.url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let mut addr = admin
                    .as_ref()
                    .map_or_else(|| AdminConfig::default().listen, |a| a.listen);
                if addr.ip().is_unspecified() {
                    addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
                }
                format!("http://{addr}")
            }
        };
        let (token, token_origin) = match (env_token, admin.and_then(|a| a.token)) {
            (Some(token), _) => (token, TOKEN_VARIABLE.to_owned()),
            (None, Some(token)) if !token.is_empty() => {
                (token, format!("admin.token in {}", args.config.display()))
            }
            (None, _) => bail!(
                "no admin token: {} has no admin.token and {TOKEN_VARIABLE} is not set; \
                 export {TOKEN_VARIABLE}=… (the gateway's admin.token)",
                args.config.display()
            ),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(AdminClient {
            base,
            token,
            token_origin,
            http,
        })
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        Ok(self.get_answer(path, query).await?.json)
    }

    pub async fn get_answer(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Answer> {
        let request = self.http.get(format!("{}{path}", self.base)).query(query);
        self.send(request).await
    }

    pub async fn post_answer(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
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
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        if status.is_success() {
            return Ok(Answer { json, text });
        }
        let message = json
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| json.to_string());
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "the admin API refused the token (401): {message}; the token came from {}, \
                 which must equal the gateway's admin.token",
                self.token_origin
            );
        }
        bail!("the admin API answered {status}: {message}")
    }
}

/// The config's `[admin]` table, loaded alone by the config loader (`${VAR}`, defaults, errors
/// naming file and key). The rest of the file is not loaded: an operator's shell may lack the
/// variables the service's other keys read (secrets in a systemd `EnvironmentFile`).
fn admin_section(path: &Path, with_token: bool) -> anyhow::Result<AdminConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("{}: cannot read the file: {e}", path.display()))?;
    let tree: toml::Table = toml::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: invalid TOML: {}",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    let mut admin = match tree.get("admin") {
        Some(toml::Value::Table(admin)) => admin.clone(),
        Some(_) => bail!("{}: admin: expected a table", path.display()),
        None => toml::Table::new(),
    };
    if !with_token {
        admin.remove("token");
    }
    let mut alone = toml::Table::new();
    alone.insert("admin".to_owned(), toml::Value::Table(admin));
    let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
    let config = Config::from_toml(&alone.to_string(), path, &base_dir, &|name| {
        std::env::var(name).ok()
    })?;
    Ok(config.admin)
}

/// A field of a JSON object as display text ("" when absent or null).
pub fn text(value: &Value, field: &str) -> String {
    match value.get(field) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `text` on one line (control characters as spaces).
fn flatten(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` cut to `width` characters, with an ellipsis when cut; newlines flattened.
pub fn clip(text: &str, width: usize) -> String {
    let flat = flatten(text);
    if flat.chars().count() <= width {
        flat
    } else {
        let mut cut: String = flat.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// An error text in at most `width` characters: its start (`HTTP 503`) and its end, where the
/// cause is (`tcp connect error: Connection refused`), with the middle left out.
pub fn clip_middle(text: &str, width: usize) -> String {
    let flat = flatten(text.trim());
    let count = flat.chars().count();
    if count <= width {
        return flat;
    }
    let head = width / 4;
    let tail = width.saturating_sub(head + 3);
    let start: String = flat.chars().take(head).collect();
    let end: String = flat.chars().skip(count - tail).collect();
    format!("{} … {}", start.trim_end(), end.trim_start())
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
        outln!("{}", out.trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_keep_their_start_and_their_end() {
        let error = "error sending request for url (http://crm.internal/leads): client error \
                     (Connect): tcp connect error: Connection refused (os error 111)";
        let clipped = clip_middle(error, 60);
        assert!(clipped.chars().count() <= 60, "{clipped}");
        assert!(clipped.starts_with("error sending"), "{clipped}");
        assert!(
            clipped.ends_with("Connection refused (os error 111)"),
            "{clipped}"
        );
        assert!(clipped.contains(" … "), "{clipped}");
        assert_eq!(clip_middle("HTTP 400\n", 60), "HTTP 400");
        assert_eq!(clip_middle("a\nb", 60), "a b");
    }
}
