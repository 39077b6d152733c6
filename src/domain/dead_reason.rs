//! `DeadReason`: why a delivery failed, kept with it once it is dead (SPEC §5: `http_4xx`,
//! `http_5xx`, `timeout`, `connect`, …). A retry carries the reason it would die with when its
//! attempts run out.

use super::words::words;

words! {
    /// Why an attempt failed. Some reasons are final at once (`http_4xx`, `http_3xx`,
    /// `http_other`, `undeliverable`, `transform`, `unroutable`); the others are retried until `max_attempts`.
    pub enum DeadReason("dead reason") {
        /// A redirect: not followed (a POST body would be lost); the URL needs fixing.
        Http3xx => "http_3xx",
        /// 408 Request Timeout: retried.
        Http408 => "http_408",
        /// 429 Too Many Requests: retried, honouring `Retry-After`.
        Http429 => "http_429",
        /// Any other 4xx: the destination refuses the payload; final at once.
        Http4xx => "http_4xx",
        /// A 5xx: retried.
        Http5xx => "http_5xx",
        /// A status outside 200–599: final at once.
        HttpOther => "http_other",
        /// No answer within the destination's timeout: retried.
        Timeout => "timeout",
        /// The connection could not be made: retried.
        Connect => "connect",
        /// The connection broke mid-request or the answer was unreadable: retried.
        Network => "network",
        /// The stored payload cannot be sent (e.g. its encryption key is gone): final at once.
        Undeliverable => "undeliverable",
        /// The route's `transform` failed, yielded no value or several, or ran too long: final
        /// at once.
        Transform => "transform",
        /// An event bus has nowhere to put the message (no stream covers the subject, the
        /// exchange routes it to no queue): final at once.
        Unroutable => "unroutable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_the_stored_reasons() {
        let table = [
            (DeadReason::Http3xx, "http_3xx"),
            (DeadReason::Http408, "http_408"),
            (DeadReason::Http429, "http_429"),
            (DeadReason::Http4xx, "http_4xx"),
            (DeadReason::Http5xx, "http_5xx"),
            (DeadReason::HttpOther, "http_other"),
            (DeadReason::Timeout, "timeout"),
            (DeadReason::Connect, "connect"),
            (DeadReason::Network, "network"),
            (DeadReason::Undeliverable, "undeliverable"),
            (DeadReason::Transform, "transform"),
            (DeadReason::Unroutable, "unroutable"),
        ];
        assert_eq!(DeadReason::ALL.len(), table.len());
        for (reason, word) in table {
            assert_eq!(reason.as_str(), word);
            assert_eq!(word.parse::<DeadReason>(), Ok(reason));
        }
    }
}
