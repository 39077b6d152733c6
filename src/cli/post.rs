//! One POST to intake that reads the gateway's answer even when it comes before the body has
//! been sent: intake refuses a body over `max_body` from its `Content-Length` (413) and closes
//! the connection, and a client still writing the body then only sees a broken pipe.
//!
//! The request says `Expect: 100-continue` and holds its body back until the gateway asks for
//! it (`100 Continue`, sent when intake starts reading the body) or a second has passed (a
//! server that ignores the header). An answer that comes first is the answer.

use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

/// How long the body waits for `100 Continue` before it is sent anyway.
const CONTINUE_WAIT: Duration = Duration::from_secs(1);

/// Posts `body` to an `http://` URL; the status and body text of the answer.
pub async fn post(
    url: &str,
    headers: HeaderMap,
    body: Bytes,
) -> anyhow::Result<(StatusCode, String)> {
    let uri: http::Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow!("no host in {url}"))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // Ends when the answer has been read, or with the write error of a body the gateway
    // refused to read: the answer decides, not that error.
    let connection = tokio::spawn(connection);

    let length = body.len() as u64;
    let (go, go_ahead) = oneshot::channel::<()>();
    let held_body = futures_util::stream::once(async move {
        let _ = tokio::time::timeout(CONTINUE_WAIT, go_ahead).await;
        Ok::<_, std::convert::Infallible>(Frame::data(body))
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut request = Request::post(path).body(StreamBody::new(held_body))?;
    *request.headers_mut() = headers;
    request.headers_mut().extend([
        (header::HOST, authority.as_str().parse()?),
        (header::CONTENT_LENGTH, length.into()),
        (
            header::EXPECT,
            http::HeaderValue::from_static("100-continue"),
        ),
    ]);
    let go = std::sync::Mutex::new(Some(go));
    hyper::ext::on_informational(&mut request, move |informational| {
        if informational.status() == StatusCode::CONTINUE
            && let Some(go) = go.lock().ok().and_then(|mut go| go.take())
        {
            let _ = go.send(());
        }
    });

    let response = sender.send_request(request).await?;
    let status = response.status();
    let text = match response.into_body().collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    connection.abort();
    Ok((status, text))
}
