//! The HTTP/1.1 client: one keep-alive connection per worker, one request in flight on it.
//!
//! Hand-written because the generator must not be what is measured. A request arrives here
//! as its finished wire bytes, so an exchange is one `write` and reads until a complete
//! response is parsed, with only the status and whether the connection stays open taken
//! from it; a general HTTP client's per-request header maps and task hand-offs cost as much
//! CPU as the server under test on a small machine. Each worker owns its connection
//! outright: a request is written when the worker takes it, with no pool or background task
//! between the schedule and the socket.
//!
//! Responses are framed by `Content-Length`, chunked encoding or the end of the connection.
//! Plain HTTP only (`Target` refuses other schemes): benchmark behind TLS termination.

use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection and the bytes read past the last response.
pub(super) struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
    /// Whether a response was already read on it (an idle close is then retried once).
    reused: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExchangeError {
    Connect,
    Io,
    BadResponse,
}

impl ExchangeError {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ExchangeError::Connect => "connect",
            ExchangeError::Io => "io",
            ExchangeError::BadResponse => "bad_response",
        }
    }
}

/// Sends one request and reads its response, opening a connection if there is none. A
/// reused connection that turns out to have been closed by the server while idle is
/// replaced and the request sent again, as every HTTP client does.
pub(super) async fn exchange(
    connection: &mut Option<Connection>,
    target: SocketAddr,
    request: &[u8],
) -> Result<u16, ExchangeError> {
    for attempt in 0..2 {
        if connection.is_none() {
            let stream = TcpStream::connect(target)
                .await
                .map_err(|_| ExchangeError::Connect)?;
            let _ = stream.set_nodelay(true);
            *connection = Some(Connection {
                stream,
                buffer: BytesMut::with_capacity(8 * 1024),
                reused: false,
            });
        }
        let Some(conn) = connection.as_mut() else {
            return Err(ExchangeError::Connect);
        };
        match round_trip(conn, request).await {
            Ok((status, keep_alive)) => {
                conn.reused = true;
                if !keep_alive {
                    *connection = None;
                }
                return Ok(status);
            }
            Err(RoundTripError::ClosedBeforeResponse) if conn.reused && attempt == 0 => {
                *connection = None;
            }
            Err(RoundTripError::ClosedBeforeResponse | RoundTripError::Io) => {
                *connection = None;
                return Err(ExchangeError::Io);
            }
            Err(RoundTripError::Bad) => {
                *connection = None;
                return Err(ExchangeError::BadResponse);
            }
        }
    }
    Err(ExchangeError::Io)
}

enum RoundTripError {
    ClosedBeforeResponse,
    Io,
    Bad,
}

async fn round_trip(conn: &mut Connection, request: &[u8]) -> Result<(u16, bool), RoundTripError> {
    if conn.stream.write_all(request).await.is_err() {
        return Err(if conn.buffer.is_empty() {
            RoundTripError::ClosedBeforeResponse
        } else {
            RoundTripError::Io
        });
    }
    let mut read_any = false;
    loop {
        match parse_response(&conn.buffer) {
            Ok(Some(response)) => {
                conn.buffer.advance(response.consumed);
                return Ok((response.status, response.keep_alive));
            }
            Ok(None) => {}
            Err(ParseError::UntilClose) => {
                // A body delimited by the end of the connection: read it out and drop it.
                let mut sink = Vec::new();
                let _ = conn.stream.read_to_end(&mut sink).await;
                let status = parse_status_line(&conn.buffer).ok_or(RoundTripError::Bad)?;
                return Ok((status, false));
            }
            Err(ParseError::Invalid) => return Err(RoundTripError::Bad),
        }
        conn.buffer.reserve(8 * 1024);
        match conn.stream.read_buf(&mut conn.buffer).await {
            Ok(0) if !read_any => return Err(RoundTripError::ClosedBeforeResponse),
            Ok(0) | Err(_) => return Err(RoundTripError::Io),
            Ok(_) => read_any = true,
        }
    }
}

/// A complete response at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
struct ParsedResponse {
    status: u16,
    /// Bytes of the buffer it took, headers and body.
    consumed: usize,
    keep_alive: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum ParseError {
    /// No length and not chunked: the body runs to the end of the connection.
    UntilClose,
    Invalid,
}

/// Parses one HTTP/1.1 response (`Content-Length` or chunked); `Ok(None)` when more bytes
/// are needed.
fn parse_response(buffer: &[u8]) -> Result<Option<ParsedResponse>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ParseError::Invalid),
    };
    let status = response.code.ok_or(ParseError::Invalid)?;
    let mut content_length = None;
    let mut chunked = false;
    let mut keep_alive = response.version == Some(1);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).map_err(|_| ParseError::Invalid)?;
            content_length = Some(
                text.trim()
                    .parse::<usize>()
                    .map_err(|_| ParseError::Invalid)?,
            );
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = header
                .value
                .split(|&b| b == b',')
                .any(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            if header.value.trim_ascii().eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if header
                .value
                .trim_ascii()
                .eq_ignore_ascii_case(b"keep-alive")
            {
                keep_alive = true;
            }
        }
    }
    let body = &buffer[head_len..];
    let body_len = if chunked {
        match chunked_length(body)? {
            Some(len) => len,
            None => return Ok(None),
        }
    } else if let Some(len) = content_length {
        if body.len() < len {
            return Ok(None);
        }
        len
    } else if status < 200 || status == 204 || status == 304 {
        0
    } else {
        return Err(ParseError::UntilClose);
    };
    Ok(Some(ParsedResponse {
        status,
        consumed: head_len + body_len,
        keep_alive,
    }))
}

/// The length of a complete chunked body (with its trailers) at the front of `body`.
fn chunked_length(body: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut at = 0;
    loop {
        let Some(line_end) = find_crlf(&body[at..]) else {
            return Ok(None);
        };
        let line = &body[at..at + line_end];
        let size_text = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or(line)
            .trim_ascii();
        let size_text = std::str::from_utf8(size_text).map_err(|_| ParseError::Invalid)?;
        let size = usize::from_str_radix(size_text, 16).map_err(|_| ParseError::Invalid)?;
        at += line_end + 2;
        if size == 0 {
            // Trailer lines, then an empty line.
            loop {
                let Some(end) = find_crlf(&body[at..]) else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if body.len() < at + size + 2 {
            return Ok(None);
        }
        at += size + 2;
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

fn parse_status_line(buffer: &[u8]) -> Option<u16> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    response.parse(buffer).ok()?;
    response.code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_by_length_and_by_chunks() {
        let fixed = b"HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1";
        assert_eq!(
            parse_response(fixed),
            Ok(Some(ParsedResponse {
                status: 202,
                consumed: fixed.len() - 8,
                keep_alive: true
            }))
        );
        assert_eq!(parse_response(&fixed[..30]), Ok(None));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).map(|r| r.map(|r| (r.status, r.consumed))),
            Ok(Some((200, chunked.len())))
        );
        assert_eq!(parse_response(&chunked[..chunked.len() - 1]), Ok(None));
        let closing = b"HTTP/1.1 503 Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            parse_response(closing).map(|r| r.map(|r| r.keep_alive)),
            Ok(Some(false))
        );
        assert_eq!(
            parse_response(b"HTTP/1.0 200 OK\r\n\r\n"),
            Err(ParseError::UntilClose)
        );
        assert_eq!(parse_response(b"garbage\r\n\r\n"), Err(ParseError::Invalid));
    }
}
