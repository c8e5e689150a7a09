//! A proxied request's whole life, one step per line, in [`Pipeline::run`]:
//! route → authenticate → authorize → admit → forward → respond.
//!
//! Every request that is not one of the gateway's own endpoints comes
//! here. Each step is a plain call into the module that owns it, returns
//! that module's own error, and the first refusal ends the request: it is
//! counted, logged and answered in one place ([`crate::error`]). A new
//! rule goes into the step it belongs to: a scope check into
//! [`crate::authz::authorize`], a per-tenant limit into
//! [`RateLimiter::admit`], a key source into [`crate::auth::keys`].

use std::sync::Arc;

use actix_web::dev::RequestHead;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::auth::Authenticator;
use crate::authz;
use crate::error::{observe_refusal, GatewayError};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::proxy::{Forwarder, ProxyError, Target};
use crate::ratelimit::RateLimiter;
use crate::routes::{self, Route, RouteError, RouteTable};

/// What every request shares, built once at start-up and read by every
/// worker; the connections to the upstreams are per worker ([`Forwarder`]).
pub struct Pipeline {
    routes: RouteTable<Arc<Target>>,
    authenticator: Arc<Authenticator>,
    limits: Limits,
    /// The per-tenant limits; shared with whoever reloads them.
    rate_limiter: Arc<RateLimiter>,
    metrics: Metrics,
}

impl Pipeline {
    pub fn new(
        routes: RouteTable<Arc<Target>>,
        authenticator: Arc<Authenticator>,
        limits: Limits,
        rate_limiter: Arc<RateLimiter>,
        metrics: Metrics,
    ) -> Self {
        Self {
            routes,
            authenticator,
            limits,
            rate_limiter,
            metrics,
        }
    }

    /// Whether the key sources the gateway started with were never all
    /// fetched (see [`Authenticator::awaiting_first_keys`]).
    pub fn keys_pending(&self) -> bool {
        self.authenticator.awaiting_first_keys()
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
    /// then authorization (403), then the limits (413, then 429).
    async fn run(
        &self,
        req: &HttpRequest,
        payload: web::Payload,
        forwarder: &Forwarder,
    ) -> Result<HttpResponse, GatewayError> {
        let (route, target) = self.route(req)?;
        let principal = self.authenticator.authenticate(req.headers()).await?;
        routes::check_canonical(req.path())?;
        let permit = authz::authorize(&principal, route, self.authenticator.require_scope())?;
        self.limits.admit_body(req.headers())?;
        let admission = self
            .rate_limiter
            .admit(&principal, route, req.headers())
            .await?;
        let root_span = tracing::Span::current();
        root_span.record("tenant", principal.tenant.as_str());
        root_span.record("upstream", target.name.as_str());
        forwarder
            .forward(
                target,
                req,
                payload,
                &permit,
                self.limits.max_body(),
                admission,
            )
            .await
            .map_err(|error| match error {
                // A chunked body over the ingest rate, refused as it streamed.
                ProxyError::RateLimited(limited) => GatewayError::RateLimit(limited),
                other => GatewayError::Proxy(other),
            })
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

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::test::{call_service, init_service, TestRequest};
    use actix_web::App;

    use crate::auth::{mint_token, TokenRequest};
    use crate::config::{Overrides, Settings};
    use crate::metrics::Metrics;
    use crate::server::Gateway;

    /// Settings whose upstreams refuse connections: every request that got
    /// past the pipeline's refusals is answered 502.
    fn settings() -> Settings {
        let unreachable = "http://127.0.0.1:9".to_owned();
        let env = [
            (
                "CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR",
                unreachable.clone(),
            ),
            ("CORTEX_GATEWAY__UPSTREAMS__QUERY_FRONTEND", unreachable),
            (
                "CORTEX_GATEWAY__AUTH__JWT_SECRET",
                "pipeline-test-secret-0123456789abcdef".to_owned(),
            ),
            (
                "CORTEX_GATEWAY__SERVER__MAX_REQUEST_BODY_SIZE",
                "1000".to_owned(),
            ),
        ]
        .map(|(key, value)| (key.to_owned(), value));
        Settings::load(None, env, &Overrides::default()).unwrap()
    }

    fn bearer(settings: &Settings) -> (&'static str, String) {
        let token = mint_token(&settings.auth, &TokenRequest::new("team-a")).unwrap();
        ("authorization", format!("Bearer {token}"))
    }

    /// One request: method, path, whether it carries a valid token, and an
    /// extra header.
    type Case<'a> = (&'a str, &'a str, bool, Option<(&'a str, &'a str)>);

    /// Sends each case through the real app and returns the statuses.
    async fn statuses(cases: &[Case<'_>]) -> Vec<StatusCode> {
        let settings = settings();
        let authorization = bearer(&settings);
        let gateway = Gateway::new(settings, Metrics::new(false), false).unwrap();
        let app = init_service(App::new().configure(|cfg| gateway.configure(cfg))).await;
        let mut statuses = Vec::new();
        for (method, path, with_token, extra) in cases {
            let mut request = TestRequest::default()
                .method(method.parse().unwrap())
                .uri(path);
            if *with_token {
                request = request.insert_header(authorization.clone());
            }
            if let Some(header) = extra {
                request = request.insert_header(*header);
            }
            statuses.push(call_service(&app, request.to_request()).await.status());
        }
        statuses
    }

    #[actix_rt::test]
    async fn refusals_come_in_the_order_of_the_steps() {
        let cases = [
            // A method that is never forwarded wins over everything.
            ("TRACE", "/api/v1/query", false, None),
            ("CONNECT", "/ring", true, None),
            // A path nothing routes: 404 without a token, 400 when it is
            // not canonical either.
            ("GET", "/ring", false, None),
            ("GET", "/api%2Fv1/query", false, None),
            // Under a route, the token comes first...
            ("GET", "/api/v1/query", false, None),
            ("GET", "/api/../ring", false, None),
            // ...then the path...
            ("GET", "/api/../ring", true, None),
            // ...then the limits...
            (
                "POST",
                "/api/v1/push",
                false,
                Some(("content-length", "5000")),
            ),
            (
                "POST",
                "/api/v1/push",
                true,
                Some(("content-length", "5000")),
            ),
            // ...and only then the upstream.
            ("GET", "/api/v1/query", true, None),
        ];
        assert_eq!(
            statuses(&cases).await,
            [405, 405, 404, 400, 401, 401, 400, 401, 413, 502]
                .map(|code| StatusCode::from_u16(code).unwrap())
        );
    }

    #[actix_rt::test]
    async fn the_gateways_own_endpoints_need_no_token() {
        // `/metrics` is served by the metrics middleware, tested end to end.
        let cases = [
            ("GET", "/health", false, None),
            ("GET", "/ready", false, None),
        ];
        assert!(statuses(&cases)
            .await
            .iter()
            .all(|status| *status == StatusCode::OK));
    }
}
