//! The HTTP edges against local HTTP servers: the chat client's and the webhook's mapping of
//! statuses, transport failures and malformed answers onto the retry table.

mod chat;
mod hostile;
mod webhook;
