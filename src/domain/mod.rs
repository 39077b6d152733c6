pub mod fingerprint;
pub mod key;
pub mod pointer;
pub mod retry;
