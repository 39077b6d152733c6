//! What the fuzz targets share: turning one fuzzer input into the pieces of a request.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The clock every target verifies against; seeds sign at this time.
pub const NOW: i64 = 1_700_000_000;

/// A request as a fuzzer input spells it: header lines (`name: value`), a blank line, then
/// the body. Without a blank line everything is body. Lines that are not a valid header are
/// skipped, as HTTP would never deliver them.
pub struct Request<'a> {
    pub headers: HeaderMap,
    /// The raw header block, for targets that want more strings out of the input.
    pub head: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn parse(data: &'a [u8]) -> Request<'a> {
        let (head, body) = match find(data, b"\n\n") {
            Some(at) => (&data[..at], &data[at + 2..]),
            None => (&data[..0], data),
        };
        Request {
            headers: headers(head),
            head,
            body,
        }
    }
}

/// Header lines as hyper would hand them over: the value with surrounding blanks trimmed
/// and repeated names kept in order.
pub fn headers(block: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in block.split(|&byte| byte == b'\n') {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    map
}

/// The first line of `data` and the rest.
pub fn first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&byte| byte == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &data[data.len()..]),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
