//! An error written with its causes, for the log and for recorded failures. Every layer uses
//! it, so it lives below them all.

/// An error and its causes, `outer: inner: innermost`: tokio-postgres says "error performing TLS
/// handshake" and keeps the reason (a refused certificate, say) in its source.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some errors repeat their source in their own text already.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
