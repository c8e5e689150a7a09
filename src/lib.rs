//! cortex-gateway: an authenticating gateway for multi-tenant Prometheus
//! backends. A request is read top to bottom in [`pipeline`]: the path is
//! routed ([`routes`]), the token verified into a principal ([`auth`]), the
//! principal authorized for the route ([`authz`]), the request admitted
//! under the limits ([`limits`], [`ratelimit`]) and forwarded with the tenant's
//! `X-Scope-OrgID` ([`proxy`] over [`upstream`]); any refusal is turned into
//! a status code, counted and logged in one place ([`error`]). [`server`]
//! assembles the app; [`config`] merges the sources and hands each module
//! its section.

pub mod auth;
pub mod authz;
pub mod cli;
pub mod config;
pub mod demo;
pub mod duration;
pub mod error;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod ratelimit;
pub mod reconfigure;
pub mod reload;
pub mod routes;
pub mod server;
pub mod settings;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod verify;
