//! plexgate's distributor: the L4 front door on the virtual address (like z/OS Sysplex
//! Distributor with VIPADISTRIBUTE). It spreads TCP connections over the gateways, TLS
//! passing through untouched.
//!
//! The path of a connection: [`server`] accepts it (within `maxConnections`),
//! [`select::Selector`] orders the targets for it (the method's choice first, fallbacks
//! after), [`forward`] connects to the first candidate that answers (a failed connect marks
//! that target suspect and falls through to the next) and copies bytes both ways until close
//! or idle timeout. Beside it, [`health`] checks every target (TCP connect + HTTPS GET of the
//! gateway's health endpoint) and moves its [`target::State`]; [`admin`] serves the status and
//! the metrics; [`resolve`] looks up targets named by host name in the background. A
//! connection stays on its target until it closes: state changes only steer
//! new connections.

pub mod admin;
mod copy;
mod error;
mod forward;
pub mod health;
pub mod metrics;
pub mod proxy_protocol;
pub mod resolve;
pub mod select;
mod server;
pub mod splice;
pub mod status;
pub mod target;
pub mod vip;
mod workers;

pub use error::DistributorError;
pub use server::{Distributor, Shared, method_name};
