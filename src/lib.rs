//! cortex-gateway: an authenticating gateway for multi-tenant Prometheus
//! backends. A request is read top to bottom in [`server`]: the token is
//! extracted and verified ([`auth`]), the path routed ([`routes`]), the
//! request forwarded with the tenant's `X-Scope-OrgID` ([`proxy`]), and any
//! failure turned into a status code in one place ([`error`]).

pub mod auth;
pub mod authz;
pub mod cli;
pub mod config;
pub mod demo;
pub mod duration;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod server;
pub mod settings;
pub mod telemetry;
pub mod tls;
pub mod upstream;
