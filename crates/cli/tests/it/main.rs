//! End-to-end tests of the CLI's commands against an in-process fake control plane.
//!
//! - `fake`: a stateful stand-in for the management API and the scoring route.
//! - `flows`: whole commands run through `sluice_cli::run`, checked by exit status and by what
//!   the fake server was sent.

mod fake;
mod flows;
