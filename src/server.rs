//! App assembly: the route table becomes actix resources, the service
//! endpoints (`/health`, `/ready`, `/metrics`) sit beside them, and the
//! lifecycle turns SIGTERM/SIGINT into a drain that load balancers notice.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_service::apply_fn_factory;
use actix_web::body::MessageBody;
use actix_web::dev::ServerHandle;
use actix_web::dev::{
    AppService, Extensions, HttpServiceFactory, ResourceDef, Service, ServiceRequest,
    ServiceResponse,
};
use actix_web::middleware::Condition;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder, TracingLogger};

use crate::auth::{Authenticator, Tenant};
use crate::config::{ConfigError, Settings};
use crate::error::GatewayError;
use crate::limits::HeadLimits;
use crate::metrics::{route_label, Metrics};
use crate::proxy::{Forwarder, ProxyError, Target};
use crate::routes::{self, RouteError};
use crate::tls;

/// Whether the gateway still wants new requests; flipped once on shutdown.
#[derive(Default)]
pub struct Lifecycle {
    draining: AtomicBool,
}

impl Lifecycle {
    pub fn begin_shutdown(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Everything the workers share, built once from the settings.
#[derive(Clone)]
pub struct Gateway {
    settings: Arc<Settings>,
    authenticator: web::Data<Authenticator>,
    targets: Vec<(String, web::Data<Target>)>,
    metrics: web::Data<Metrics>,
    inject_trace_context: bool,
    request_metrics: PrometheusMetrics,
    lifecycle: web::Data<Lifecycle>,
    tls: Arc<rustls::ClientConfig>,
    head_limits: HeadLimits,
}

impl Gateway {
    /// Builds the shared state around `metrics`, which exist before the
    /// gateway so that the log pipeline can count into them;
    /// `inject_trace_context` is whether spans are exported, so that the
    /// upstream gets our trace context.
    pub fn new(
        settings: Settings,
        metrics: Metrics,
        inject_trace_context: bool,
    ) -> Result<Self, ConfigError> {
        for name in settings.upstreams.keys() {
            metrics.target(name);
        }
        let authenticator = web::Data::new(Authenticator::with_metrics(
            &settings.auth,
            metrics.auth.clone(),
        )?);
        let targets = routes::route_table(&settings)
            .into_iter()
            .map(|route| {
                let target = Target {
                    route_label: route_label(&route.prefix),
                    upstream: settings.upstreams[&route.upstream].clone(),
                    metrics: metrics.target(&route.upstream),
                    name: route.upstream,
                };
                (route.prefix, web::Data::new(target))
            })
            .collect();
        let request_metrics = PrometheusMetricsBuilder::new("cortex_gateway")
            .registry(metrics.registry.clone())
            .endpoint("/metrics")
            .mask_unmatched_patterns("UNMATCHED")
            .build()
            .expect("request metrics register once in a fresh registry");
        let upstream_tls =
            tls::upstream_client_config(&settings.proxy).map_err(|e| ConfigError::Invalid {
                key: e.key.to_owned(),
                message: e.message,
            })?;
        Ok(Self {
            head_limits: HeadLimits::new(&settings.server, &metrics),
            metrics: web::Data::new(metrics),
            inject_trace_context,
            settings: Arc::new(settings),
            authenticator,
            targets,
            request_metrics,
            lifecycle: web::Data::new(Lifecycle::default()),
            tls: upstream_tls,
        })
    }

    /// Registers the routes and service endpoints on one worker's app.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.authenticator.clone())
            .app_data(self.metrics.clone())
            .app_data(self.lifecycle.clone())
            .app_data(web::Data::new(Forwarder::new(
                &self.settings.proxy,
                self.settings.server.max_request_body_size,
                self.settings.auth.extra_headers.clone(),
                self.tls.clone(),
                self.inject_trace_context,
            )))
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready))
            // Served by the metrics middleware; registered so the route exists.
            .route("/metrics", web::get().to(HttpResponse::NotFound));
        for (prefix, target) in &self.targets {
            cfg.service(ForwardRoute {
                prefix: prefix.clone(),
                target: target.clone(),
            });
        }
        cfg.default_service(web::to(not_routed));
    }

    /// Binds and serves until SIGTERM or SIGINT, then drains.
    pub async fn serve(self) -> io::Result<()> {
        let server_settings = self.settings.server.clone();
        let address = SocketAddr::new(
            server_settings
                .http_listen_address
                .parse()
                .map_err(|_| io::Error::other("server.http_listen_address: not an IP address"))?,
            server_settings.http_listen_port,
        );
        let lifecycle = self.lifecycle.clone();
        let app_state = self.clone();
        let workers = match server_settings.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // actix limits connections per worker; the global limit is split.
        let worker_connection_limit = server_settings.http_conn_limit.div_ceil(workers);
        let open_connections = self.metrics.open_connections();
        let connection_limit_reached = self.metrics.connection_limit_reached();
        let mut server = HttpServer::new(move || {
            let head_limits = app_state.head_limits.clone();
            // The last `wrap` is the outermost: timing sees the final status,
            // and an oversized head is refused before anything else runs.
            App::new()
                // Request spans only when traces are exported: without an
                // exporter they cost CPU on every request and show nowhere.
                .wrap(Condition::new(
                    app_state.inject_trace_context,
                    TracingLogger::<GatewayRootSpan>::new(),
                ))
                .wrap_fn(move |request, service| head_limits.enforce(request, service))
                .wrap(app_state.request_metrics.clone())
                .wrap_fn(time_request)
                .configure(|cfg| app_state.configure(cfg))
        })
        .on_connect(move |_, extensions| {
            open_connections.inc();
            // Runs on the worker that owns the connection, as does the drop.
            let open_on_worker = WORKER_CONNECTIONS.with(|open| {
                open.set(open.get() + 1);
                open.get()
            });
            if open_on_worker == worker_connection_limit {
                connection_limit_reached.inc();
            }
            extensions.insert(ConnectionGuard(open_connections.clone()));
        })
        .disable_signals()
        .shutdown_timeout(whole_seconds_up(server_settings.graceful_shutdown_timeout))
        .client_request_timeout(server_settings.http_read_timeout);
        server = server.workers(workers);
        if worker_connection_limit > 0 {
            server = server.max_connections(worker_connection_limit);
        }
        let listen_error = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("server.http_listen_port: cannot listen on {address}: {e}"),
            )
        };
        let certificate = match &server_settings.tls {
            Some(tls_settings) => {
                let (config, certificate) = tls::server_config(tls_settings)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                server = server
                    .bind_rustls_0_23(address, config)
                    .map_err(listen_error)?;
                Some(certificate)
            }
            None => {
                server = server.bind(address).map_err(listen_error)?;
                None
            }
        };
        // Signal handlers exist before the listener accepts: a signal that
        // arrives early must not hit the default action (terminate).
        let mut terminate = actix_web::rt::signal::unix::signal(
            actix_web::rt::signal::unix::SignalKind::terminate(),
        )?;
        let mut interrupt = actix_web::rt::signal::unix::signal(
            actix_web::rt::signal::unix::SignalKind::interrupt(),
        )?;
        // SIGHUP reloads, never terminates, even with nothing to reload.
        let hangup =
            actix_web::rt::signal::unix::signal(actix_web::rt::signal::unix::SignalKind::hangup())?;
        let server = server.run();
        tracing::info!(%address, tls = certificate.is_some(), workers, "cortex-gateway listening");
        actix_web::rt::spawn(reload_on_change(
            hangup,
            certificate,
            self.authenticator.clone(),
        ));
        let handle: ServerHandle = server.handle();
        actix_web::rt::spawn(async move {
            let signal = first_signal(terminate.recv(), interrupt.recv()).await;
            lifecycle.begin_shutdown();
            tracing::info!(
                signal,
                delay = ?server_settings.shutdown_delay,
                drain = ?server_settings.graceful_shutdown_timeout,
                "shutting down: /ready answers 503, listener closes after the delay"
            );
            actix_web::rt::time::sleep(server_settings.shutdown_delay).await;
            handle.stop(true).await;
        });
        server.await?;
        tracing::info!("cortex-gateway stopped");
        Ok(())
    }
}

thread_local! {
    /// Connections open on this worker, against its share of
    /// `server.http_conn_limit`.
    static WORKER_CONNECTIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Decrements `cortex_gateway_open_connections` and the worker's count when
/// a connection closes.
struct ConnectionGuard(prometheus::IntGauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
        WORKER_CONNECTIONS.with(|open| open.set(open.get().saturating_sub(1)));
    }
}

/// Reloads the listener certificate and the JWT key file on SIGHUP, and
/// when their files change (checked every few seconds, for mounted Secrets
/// that Kubernetes updates in place).
async fn reload_on_change(
    mut hangup: actix_web::rt::signal::unix::Signal,
    certificate: Option<Arc<tls::ReloadingCertificate>>,
    authenticator: web::Data<Authenticator>,
) {
    let mut poll = actix_web::rt::time::interval(std::time::Duration::from_secs(5));
    loop {
        use futures_util::future::{select, Either};
        let force = match select(std::pin::pin!(hangup.recv()), std::pin::pin!(poll.tick())).await {
            Either::Left(_) => true,
            Either::Right(_) => false,
        };
        if let Some(certificate) = &certificate {
            certificate.reload(force);
        }
        authenticator.reload_keys(force);
    }
}

/// actix takes the drain time in whole seconds: round up, so that `500ms`
/// drains for a second instead of not at all.
fn whole_seconds_up(duration: std::time::Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Waits for whichever signal comes first and names it for the log.
async fn first_signal(
    terminate: impl std::future::Future<Output = Option<()>>,
    interrupt: impl std::future::Future<Output = Option<()>>,
) -> &'static str {
    use futures_util::future::{select, Either};
    match select(std::pin::pin!(terminate), std::pin::pin!(interrupt)).await {
        Either::Left(_) => "SIGTERM",
        Either::Right(_) => "SIGINT",
    }
}

/// One entry of the route table as an actix service. Its prefix is matched
/// as a string, segment-wise, the way a scope's is, but with no nested
/// router and no `{tail}*` pattern to evaluate on every request; its target
/// travels as request data, for the handler and the request histogram.
struct ForwardRoute {
    prefix: String,
    target: web::Data<Target>,
}

impl HttpServiceFactory for ForwardRoute {
    fn register(self, config: &mut AppService) {
        let mut data = Extensions::new();
        data.insert(self.target);
        let data = Rc::new(data);
        let endpoint = apply_fn_factory(web::to(forward), move |mut req: ServiceRequest, route| {
            req.add_data_container(Rc::clone(&data));
            Service::call(route, req)
        });
        config.register_service(ResourceDef::root_prefix(&self.prefix), None, endpoint, None);
    }
}

/// A request, top to bottom: the method must be one that is forwarded; the
/// `Tenant` extractor has authenticated it; the path must be canonical; the
/// resource it matched names the upstream; the proxy forwards it and
/// streams the answer back.
async fn forward(
    req: HttpRequest,
    tenant: Result<Tenant, GatewayError>,
    payload: web::Payload,
    target: web::Data<Target>,
    forwarder: web::Data<Forwarder>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, GatewayError> {
    routes::check_method(req.method())?;
    let tenant = tenant?;
    routes::check_canonical(req.uri().path())?;
    let root_span = tracing::Span::current();
    root_span.record("tenant", tenant.as_str());
    root_span.record("upstream", target.name.as_str());
    let response = forwarder.forward(&target, &req, payload, &tenant).await;
    if let Err(error @ ProxyError::BodyTooLarge { .. }) = &response {
        metrics.rejected_counter(Metrics::BODY_TOO_LARGE).inc();
        tracing::info!(tenant = tenant.as_str(), error = %error, "request refused");
    }
    Ok(response?)
}

/// Request spans carry the tenant and upstream once they are known.
pub struct GatewayRootSpan;

impl RootSpanBuilder for GatewayRootSpan {
    fn on_request_start(request: &ServiceRequest) -> tracing::Span {
        // Probes and scrapes every few seconds would bury real traces.
        if routes::SERVICE_PATHS.contains(&request.path()) {
            return tracing::Span::none();
        }
        tracing_actix_web::root_span!(
            request,
            tenant = tracing::field::Empty,
            upstream = tracing::field::Empty
        )
    }

    fn on_request_end<B: MessageBody>(
        span: tracing::Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// Times every request for the Go gateway's
/// `cortex_gateway_request_duration_seconds{method,route,status_code,ws}`,
/// up to the response head, as the Go middleware did for streamed bodies.
fn time_request<S, B>(
    req: ServiceRequest,
    service: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let started = std::time::Instant::now();
    let response = service.call(req);
    async move {
        let response = response.await?;
        let request = response.request();
        if let Some(metrics) = request.app_data::<web::Data<Metrics>>() {
            let computed;
            let route = match request.app_data::<web::Data<Target>>() {
                Some(target) => target.route_label.as_str(),
                None => {
                    computed = request
                        .match_pattern()
                        .map_or_else(|| "other".to_owned(), |pattern| route_label(&pattern));
                    computed.as_str()
                }
            };
            metrics.request_duration(
                request.method().as_str(),
                route,
                response.status().as_str(),
                started.elapsed(),
            );
        }
        Ok(response)
    }
}

/// Everything outside the route table: never forwarded, never authenticated.
async fn not_routed(req: HttpRequest) -> Result<HttpResponse, GatewayError> {
    routes::check_method(req.method())?;
    routes::check_canonical(req.uri().path())?;
    Err(RouteError::NotFound.into())
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("Ok")
}

async fn ready(lifecycle: web::Data<Lifecycle>) -> HttpResponse {
    if lifecycle.is_draining() {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("shutting down")
    } else {
        HttpResponse::Ok().content_type("text/plain").body("ready")
    }
}
