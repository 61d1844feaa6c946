//! The core of the stack: the service at the bottom of the inbound pipeline, the client
//! registry, user event handlers, and the bridge that feeds socketioxide's sockets into the
//! pipeline.

pub(crate) mod bridge;
mod handler;
mod registry;
mod service;

pub use handler::{EventHandler, EventParts, ExtractError, FromEventParts, extract};
pub use registry::{Client, ClientRegistry};
pub use service::{CoreService, CoreServiceBuilder};
