//! [`Report`]: an error and its chain of causes on one line, for logs and error messages.
//!
//! longhaul's error types do not repeat their cause in their own message (the cause is their
//! `source`), so printing only the top error would hide it; `Report` prints each link once. Some
//! libraries quote their cause in their own message too: a link whose text the line already ends
//! with is not printed again.

use std::fmt;

/// Displays `error: cause: cause's cause…`, each text once.
///
/// ```
/// use longhaul_core::Report;
/// #[derive(Debug, thiserror::Error)]
/// #[error("cannot load the ticket")]
/// struct Load(#[source] std::io::Error);
/// let e = Load(std::io::Error::other("connection refused"));
/// assert_eq!(Report(&e).to_string(), "cannot load the ticket: connection refused");
/// ```
#[derive(Clone, Copy)]
pub struct Report<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !text.is_empty() && !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = e.source();
        }
        f.write_str(&line)
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
