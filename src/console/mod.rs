//! The operator's console: `GET /console` on the admin listener, a small web page over the admin
//! API.
//!
//! The page is three static files (HTML, CSS, JavaScript) and an icon, embedded in the binary
//! with `include_str!`, so `cargo build` is all it takes and a node needs no Node, CDN or asset
//! directory. The files hold no data and need no token: after sign-in the script keeps the
//! admin token in `sessionStorage` and reads everything through the token-protected `/api/v1`,
//! so the console shows exactly what the API shows (payloads and errors masked the same way).
//!
//! Every console response carries a strict `Content-Security-Policy` (scripts and styles only
//! from these files, no inline script, no framing), `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer` and `X-Frame-Options: DENY`.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// Scripts, styles and images from the console's own files only; API calls to this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The console's routes, to merge into the admin router (outside `/api/v1`: no token needed).
pub fn router() -> Router {
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(stylesheet))
        .route("/console/icon.svg", get(icon))
        .route("/console/{*rest}", get(not_found))
        .layer(axum::middleware::map_response(security_headers))
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON_SVG)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidate on every load so an upgraded binary serves its own page at once.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in set {
        headers.insert::<HeaderName>(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = router()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn every_file_is_served_with_the_security_headers() {
        for (path, status, kind) in [
            ("/console", 200, "text/html"),
            ("/console/", 200, "text/html"),
            ("/console/app.js", 200, "text/javascript"),
            ("/console/app.css", 200, "text/css"),
            ("/console/icon.svg", 200, "image/svg+xml"),
            ("/console/nothing-here", 404, "text/plain"),
        ] {
            let (actual, headers, _) = get(path).await;
            assert_eq!(actual.as_u16(), status, "{path}");
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            assert!(header("content-type").starts_with(kind), "{path}");
            assert_eq!(header("content-security-policy"), CONTENT_SECURITY_POLICY);
            assert_eq!(header("x-content-type-options"), "nosniff");
            assert_eq!(header("referrer-policy"), "no-referrer");
            assert_eq!(header("x-frame-options"), "DENY");
        }
    }

    #[tokio::test]
    async fn the_page_has_no_inline_script_or_style() {
        let (_, _, html) = get("/console").await;
        assert!(html.contains(r#"<script src="/console/app.js" defer></script>"#));
        // Every <script> loads a file; there are no inline handlers or style attributes, which
        // the policy would block anyway.
        assert_eq!(html.matches("<script").count(), 1);
        for forbidden in [" onclick=", " onload=", " style=", "<style", "javascript:"] {
            assert!(!html.contains(forbidden), "{forbidden}");
        }
        let (_, _, script) = get("/console/app.js").await;
        for forbidden in ["innerHTML", "eval(", "new Function", "document.write"] {
            assert!(!script.contains(forbidden), "app.js uses {forbidden}");
        }
    }
}
