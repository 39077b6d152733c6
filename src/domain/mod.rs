pub mod fingerprint;
pub mod form;
pub mod key;
pub mod pointer;
pub mod retry;
