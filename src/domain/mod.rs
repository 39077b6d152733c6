pub mod fingerprint;
pub mod key;
pub mod pointer;
