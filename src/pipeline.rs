//! A proxied request's whole life, one step per line, in [`Pipeline::run`]:
//! route → authenticate → authorize → admit → forward → respond.
//!
//! Every request that is not one of the gateway's own endpoints comes
//! here. Each step is a plain call into the module that owns it, returns
//! that module's own error, and the first refusal ends the request: it is
//! counted, logged and answered in one place ([`crate::error`]). A new
//! rule goes into the step it belongs to: a scope check into
//! [`crate::authz::authorize`], a per-tenant limiter beside
//! [`Limits::admit_body`], a key source into [`crate::auth::keys`].

use std::sync::Arc;

use actix_web::dev::RequestHead;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::auth::Authenticator;
use crate::authz;
use crate::error::{observe_refusal, GatewayError};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::proxy::{Forwarder, Target};
use crate::routes::{self, Route, RouteError, RouteTable};

/// What every request shares, built once at start-up and read by every
/// worker; the connections to the upstreams are per worker ([`Forwarder`]).
pub struct Pipeline {
    routes: RouteTable<Arc<Target>>,
    authenticator: Arc<Authenticator>,
    limits: Limits,
    metrics: Metrics,
}

impl Pipeline {
    pub fn new(
        routes: RouteTable<Arc<Target>>,
        authenticator: Arc<Authenticator>,
        limits: Limits,
        metrics: Metrics,
    ) -> Self {
        Self {
            routes,
            authenticator,
            limits,
            metrics,
        }
    }

    /// The actix handler: every proxied path, and every path nothing
    /// else answers, ends here.
    pub async fn handle(
        req: HttpRequest,
        payload: web::Payload,
        pipeline: web::Data<Pipeline>,
        forwarder: web::Data<Forwarder>,
    ) -> HttpResponse {
        match pipeline.run(&req, payload, &forwarder).await {
            Ok(response) => response,
            Err(refusal) => pipeline.refuse(&req, &refusal),
        }
    }

    /// The request's life. Which refusal wins when several apply is the
    /// order of these lines: a method that is never forwarded (405), then
    /// a path nothing routes (404, or 400 when it is not canonical either),
    /// then the token (401), then a non-canonical path under a route (400),
    /// then authorization (403), then the limits (413).
    async fn run(
        &self,
        req: &HttpRequest,
        payload: web::Payload,
        forwarder: &Forwarder,
    ) -> Result<HttpResponse, GatewayError> {
        let (route, target) = self.route(req)?;
        let principal = self.authenticator.authenticate(req.headers())?;
        routes::check_canonical(req.path())?;
        let permit = authz::authorize(&principal, route)?;
        self.limits.admit_body(req.headers())?;
        let root_span = tracing::Span::current();
        root_span.record("tenant", principal.tenant.as_str());
        root_span.record("upstream", target.name.as_str());
        let response = forwarder
            .forward(target, req, payload, &permit, self.limits.max_body())
            .await?;
        Ok(response)
    }

    /// Finds the route for the request's method and path.
    fn route(&self, req: &HttpRequest) -> Result<&(Route, Arc<Target>), RouteError> {
        routes::check_method(req.method())?;
        match self.routes.resolve(req.path()) {
            Some(route) => Ok(route),
            None => {
                routes::check_canonical(req.path())?;
                Err(RouteError::NotFound)
            }
        }
    }

    /// The route label of a path for the request histogram: its route's,
    /// or `None` outside the table.
    pub fn route_label(&self, path: &str) -> Option<&str> {
        self.routes
            .resolve(path)
            .map(|(_, target)| target.route_label.as_str())
    }

    /// The head check that runs before anything else (in a middleware, so
    /// that it covers the gateway's own endpoints too).
    pub fn admit_head(&self, head: &RequestHead) -> Result<(), GatewayError> {
        Ok(self.limits.check(head)?)
    }

    /// Counts, logs and answers a refusal.
    pub fn refuse(&self, req: &HttpRequest, refusal: &GatewayError) -> HttpResponse {
        observe_refusal(refusal, req, &self.metrics);
        refusal.error_response()
    }
}
