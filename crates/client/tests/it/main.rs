//! Integration tests of `sluice-client` against an in-process recording server.
//!
//! - `mock`: a server on 127.0.0.1:0 that records every request and answers from a script.
//! - `requests`: each route's method, path, headers and body, and how answers are decoded.

mod mock;
mod requests;
