//! `sipseal edge` (docs/SPEC.md §7.2, issue 30): an outbound proxy next
//! to an ordinary phone that seals what the phone sends and opens what
//! it is sent, on its user's behalf. [`body`] seals and opens;
//! [`route`] holds the routing rules (the Contact token, the phone
//! leg's Record-Route).

pub mod body;
pub mod route;
