//! App assembly: every proxied request goes to the [`Pipeline`], the
//! service endpoints (`/health`, `/ready`, `/metrics`) sit beside it, and
//! the lifecycle turns SIGTERM/SIGINT into a drain that load balancers
//! notice.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{
    AppService, HttpServiceFactory, ResourceDef, ServerHandle, Service, ServiceRequest,
    ServiceResponse,
};
use actix_web::http::KeepAlive;
use actix_web::middleware::Condition;
use actix_web::{web, App, HttpResponse, HttpServer};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use futures_util::future::{ready, Either, MapOk, Ready, TryFutureExt};
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder, TracingLogger};

use crate::auth::jwks::Fetcher;
use crate::auth::{AuthError, Authenticator};
use crate::config::{ConfigError, ConfigSource, Settings};
use crate::limits::Limits;
use crate::metrics::{route_label, Metrics};
use crate::pipeline::Pipeline;
use crate::proxy::{Forwarder, Target};
use crate::ratelimit::RateLimiter;
use crate::reconfigure::Reconfigure;
use crate::reload::{self, Reload};
use crate::routes::{self, RouteTable};
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
    pipeline: web::Data<Pipeline>,
    authenticator: Arc<Authenticator>,
    rate_limiter: Arc<RateLimiter>,
    /// The route prefixes, registered with actix only so that
    /// `actix-web-prom` labels requests with their route (its `endpoint`).
    prefixes: Vec<String>,
    metrics: web::Data<Metrics>,
    inject_trace_context: bool,
    request_metrics: PrometheusMetrics,
    lifecycle: web::Data<Lifecycle>,
    tls: Arc<rustls::ClientConfig>,
    /// Where the settings came from, when they are to be followed: read
    /// again on SIGHUP and when the file changes.
    config_source: Option<ConfigSource>,
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
        metrics.auth.prepare(&AuthError::REASONS);
        let fetcher = Fetcher::new(&settings.proxy).map_err(|e| ConfigError::Invalid {
            key: e.key.to_owned(),
            message: e.message,
        })?;
        let authenticator = Arc::new(
            Authenticator::connected(
                &settings.auth,
                fetcher,
                Some((metrics.auth.clone(), metrics.keys.clone())),
            )
            .map_err(|e| ConfigError::Invalid {
                key: "auth".to_owned(),
                message: e.to_string(),
            })?,
        );
        metrics.reloads.reloaded(true);
        let routes = RouteTable::new(
            routes::routes(&settings.routes, |name| {
                settings.upstreams.contains_key(name)
            }),
            |route| {
                Arc::new(Target {
                    route_label: route_label(&route.prefix),
                    upstream: settings.upstreams[&route.upstream].clone(),
                    metrics: metrics.target(&route.upstream),
                    name: route.upstream.clone(),
                })
            },
        );
        let prefixes = routes
            .routes()
            .map(|(route, _)| route.prefix.clone())
            .collect();
        let request_metrics = PrometheusMetricsBuilder::new("cortex_gateway")
            .registry(metrics.registry.clone())
            .mask_unmatched_patterns("UNMATCHED")
            .build()
            .expect("request metrics register once in a fresh registry");
        let upstream_tls =
            tls::upstream_client_config(&settings.proxy).map_err(|e| ConfigError::Invalid {
                key: e.key.to_owned(),
                message: e.message,
            })?;
        let rate_limiter = Arc::new(RateLimiter::new(
            &settings.limits,
            &settings.auth.tenants,
            metrics.rate_limits.clone(),
        )?);
        let pipeline = Pipeline::new(
            routes,
            Arc::clone(&authenticator),
            Limits::new(
                settings.server.max_request_header_size,
                settings.server.max_request_headers,
                settings.server.max_request_body_size,
            ),
            Arc::clone(&rate_limiter),
            metrics.clone(),
        );
        Ok(Self {
            pipeline: web::Data::new(pipeline),
            authenticator,
            rate_limiter,
            prefixes,
            metrics: web::Data::new(metrics),
            inject_trace_context,
            settings: Arc::new(settings),
            request_metrics,
            lifecycle: web::Data::new(Lifecycle::default()),
            tls: upstream_tls,
            config_source: None,
        })
    }

    /// Follows `source`: on SIGHUP and when its file changes, the `[auth]`
    /// section is applied again without a restart.
    pub fn follow(mut self, source: ConfigSource) -> Self {
        self.config_source = Some(source);
        self
    }

    /// Registers the pipeline and the service endpoints on one worker's app.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.pipeline.clone())
            .app_data(self.metrics.clone())
            .app_data(self.lifecycle.clone())
            .app_data(web::Data::new(Forwarder::new(
                &self.settings.proxy,
                self.settings.auth.extra_headers.clone(),
                self.tls.clone(),
                self.inject_trace_context,
                self.metrics.upstream_connections(),
            )))
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready_endpoint))
            .route("/metrics", web::get().to(metrics_endpoint));
        for prefix in &self.prefixes {
            cfg.service(RoutePrefix(prefix.clone()));
        }
        cfg.default_service(web::to(Pipeline::handle));
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
        let connection_limit_reached = self.metrics.connection_limit_reached();
        let mut server = HttpServer::new(move || {
            let pipeline = app_state.pipeline.clone();
            // The last `wrap` is the outermost: timing sees the final status,
            // and an oversized head is refused before anything else runs.
            App::new()
                // Request spans only when traces are exported: without an
                // exporter they cost CPU on every request and show nowhere.
                .wrap(Condition::new(
                    app_state.inject_trace_context,
                    TracingLogger::<GatewayRootSpan>::new(),
                ))
                .wrap_fn(move |request, service| admit_head(&pipeline, request, service))
                .wrap(app_state.request_metrics.clone())
                .wrap_fn(time_request)
                .configure(|cfg| app_state.configure(cfg))
        })
        .disable_signals()
        .shutdown_timeout(whole_seconds_up(server_settings.graceful_shutdown_timeout))
        .client_request_timeout(server_settings.http_read_timeout)
        .keep_alive(if server_settings.http_idle_timeout.is_zero() {
            KeepAlive::Disabled
        } else {
            KeepAlive::Timeout(server_settings.http_idle_timeout)
        });
        server = server.workers(workers);
        if worker_connection_limit > 0 {
            server = server
                .max_connections(worker_connection_limit)
                .on_connect(move |_, _| {
                    // Runs on the worker that owns the connection, before the
                    // connection counts itself there.
                    let open_on_worker = actix_http::h1::open_connections_on_this_thread() + 1;
                    if open_on_worker == worker_connection_limit {
                        connection_limit_reached.inc();
                    }
                });
        }
        let open_files = raise_open_files_limit();
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
        tracing::info!(
            %address,
            tls = certificate.is_some(),
            workers,
            open_files,
            "cortex-gateway listening"
        );
        self.authenticator.start();
        let mut reloadable: Vec<Arc<dyn Reload>> = vec![self.authenticator.clone()];
        if let Some(source) = self.config_source.clone() {
            reloadable.push(Arc::new(Reconfigure::new(
                source,
                (*self.settings).clone(),
                Arc::clone(&self.authenticator),
                Arc::clone(&self.rate_limiter),
                self.metrics.reloads.clone(),
            )));
        }
        if let Some(certificate) = certificate.clone() {
            reloadable.push(certificate);
        }
        actix_web::rt::spawn(reload::run(hangup, reloadable));
        actix_web::rt::spawn(return_memory_after_connections_close());
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

/// Raises the soft limit of open files to the hard limit, as Go programs do
/// since Go 1.19: every client and upstream connection is a file, and the
/// usual soft default (1024) caps the gateway far below what tens of
/// thousands of Prometheus shards need. Returns the limit in force.
fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Gives freed memory back to the system once a wave of client connections
/// has closed. glibc keeps what the workers freed in their arenas (tens of
/// MiB after a few thousand connections, `BENCHMARKS.md`, Scale) until told
/// to trim; trimming is cheap but not free, so it runs on the main thread
/// (which serves no request), at most every few seconds, and only after at
/// least a few hundred connections closed since the last check, a few dozen
/// idle upstream connections were closed by the pools' reapers (see
/// [`crate::upstream::EVICTED_SINCE_TRIM`]), or after a large `/metrics`
/// response (see [`LARGE_SCRAPE_BYTES`]).
async fn return_memory_after_connections_close() {
    const CHECK: std::time::Duration = std::time::Duration::from_secs(5);
    const MIN_CLOSED: u64 = 256;
    // Idle upstream connections closed by the pools' reapers: about 37 KiB
    // each, so a few dozen are worth as much as the client connections.
    const MIN_EVICTED: usize = 16;
    let mut interval = actix_web::rt::time::interval(CHECK);
    // Counted by actix-http's dispatchers (patches/README.md).
    let mut closed_at_trim = actix_http::h1::closed_connections();
    loop {
        interval.tick().await;
        let scraped = LARGE_SCRAPE_SINCE_TRIM.swap(false, Ordering::Relaxed);
        let closed = actix_http::h1::closed_connections();
        if closed - closed_at_trim >= MIN_CLOSED
            || crate::upstream::EVICTED_SINCE_TRIM.load(Ordering::Relaxed) >= MIN_EVICTED
            || scraped
        {
            closed_at_trim = closed;
            crate::upstream::EVICTED_SINCE_TRIM.store(0, Ordering::Relaxed);
            trim_allocator();
        }
    }
}

/// A `/metrics` response at least this large asks for a trim: rendering it
/// takes several times its size (on the blocking thread of
/// `metrics_endpoint`), which glibc keeps after the response is sent. With `metrics.per_tenant` and 100,000
/// tenants the exposition is 6.5 MiB and each scrape left 16–31 MiB behind
/// (`BENCHMARKS.md`, "Many tenants"); a few hundred series stay far below.
const LARGE_SCRAPE_BYTES: u64 = 1 << 20;

/// Set when a large `/metrics` response was served since the last check.
static LARGE_SCRAPE_SINCE_TRIM: AtomicBool = AtomicBool::new(false);

/// Asks for a trim after a large `/metrics` response (see [`LARGE_SCRAPE_BYTES`]).
fn note_scrape(path: &str, body: actix_web::body::BodySize) {
    if let actix_web::body::BodySize::Sized(bytes) = body {
        if bytes >= LARGE_SCRAPE_BYTES && path == "/metrics" {
            LARGE_SCRAPE_SINCE_TRIM.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(target_env = "gnu")]
fn trim_allocator() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(target_env = "gnu"))]
fn trim_allocator() {}

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

/// A route prefix as an actix resource that hands its requests to the
/// pipeline, like the default service does. The pipeline routes by its own
/// table; these exist so that `actix-web-prom`, which labels requests by the
/// actix resource they matched, keeps the route prefix as `endpoint`.
struct RoutePrefix(String);

impl HttpServiceFactory for RoutePrefix {
    fn register(self, config: &mut AppService) {
        config.register_service(
            ResourceDef::root_prefix(&self.0),
            None,
            web::to(Pipeline::handle),
            None,
        );
    }
}

/// What [`admit_head`] returns: the wrapped service's own response future,
/// or the refusal at once; no allocation either way.
type Admitted<S, B> = Either<
    MapOk<<S as Service<ServiceRequest>>::Future, IntoLeftBody<B>>,
    Ready<Result<ServiceResponse<EitherBody<B>>, <S as Service<ServiceRequest>>::Error>>,
>;
type IntoLeftBody<B> = fn(ServiceResponse<B>) -> ServiceResponse<EitherBody<B>>;

/// Middleware body (for `wrap_fn`): refuses a head over a limit before
/// anything else looks at it, the gateway's own endpoints included.
fn admit_head<S, B>(pipeline: &Pipeline, request: ServiceRequest, service: &S) -> Admitted<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>>,
{
    match pipeline.admit_head(request.head()) {
        Ok(()) => Either::Left(
            service
                .call(request)
                .map_ok(ServiceResponse::map_into_left_body as IntoLeftBody<B>),
        ),
        Err(refusal) => {
            let response = pipeline.refuse(request.request(), &refusal);
            Either::Right(ready(Ok(request
                .into_response(response)
                .map_into_right_body())))
        }
    }
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
    B: MessageBody,
{
    let started = std::time::Instant::now();
    let response = service.call(req);
    async move {
        let response = response.await?;
        let request = response.request();
        note_scrape(request.path(), response.response().body().size());
        if let Some(metrics) = request.app_data::<web::Data<Metrics>>() {
            let computed;
            let pipeline = request.app_data::<web::Data<Pipeline>>();
            let route = match pipeline.and_then(|p| p.route_label(request.path())) {
                Some(label) => label,
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

async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("Ok")
}

/// The exposition of every metric, rendered on a blocking thread, not the
/// worker: with per-tenant series for 100,000 tenants rendering takes
/// 0.4–0.9 s (`BENCHMARKS.md`, "Many tenants"), which on the worker would
/// hold back every request of that worker's clients. The request itself is
/// still timed and counted by the metrics middleware, as any route.
async fn metrics_endpoint(metrics: web::Data<Metrics>) -> HttpResponse {
    let registry = metrics.registry.clone();
    match web::block(move || crate::metrics::render(&registry)).await {
        Ok(Ok(exposition)) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(exposition),
        Ok(Err(error)) => {
            tracing::error!(%error, "cannot render /metrics");
            HttpResponse::InternalServerError().finish()
        }
        Err(error) => {
            tracing::error!(%error, "cannot render /metrics: no thread to render it on");
            HttpResponse::ServiceUnavailable().finish()
        }
    }
}

/// Ready unless draining, or while a JWKS or OIDC source it started with
/// has never been fetched: a pod that would answer every token 503 should
/// get no traffic.
async fn ready_endpoint(
    lifecycle: web::Data<Lifecycle>,
    pipeline: web::Data<Pipeline>,
) -> HttpResponse {
    if lifecycle.is_draining() {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("shutting down")
    } else if pipeline.keys_pending() {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("signing keys not loaded yet")
    } else {
        HttpResponse::Ok().content_type("text/plain").body("ready")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test;

    /// A collector that holds its `collect` until the test lets it go (or
    /// 10 s passed, so that a failing test ends).
    struct Gate {
        release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
        desc: prometheus::core::Desc,
    }

    impl prometheus::core::Collector for Gate {
        fn desc(&self) -> Vec<&prometheus::core::Desc> {
            vec![&self.desc]
        }

        fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
            let release = self.release.lock().unwrap();
            let _ = release.recv_timeout(std::time::Duration::from_secs(10));
            Vec::new()
        }
    }

    /// While a scrape renders (held in a collector here; 0.4–0.9 s with
    /// 100,000 tenants' series), the worker that took it still answers:
    /// the rendering runs on a blocking thread. Rendered on the worker, the
    /// scrape would block this single-threaded test until the gate's
    /// timeout and finish first.
    #[actix_rt::test]
    async fn a_scrape_renders_off_the_worker() {
        let metrics = Metrics::new(false);
        let (release, gate) = std::sync::mpsc::channel();
        let desc = prometheus::core::Desc::new(
            "gate".to_owned(),
            "held".to_owned(),
            Vec::new(),
            Default::default(),
        )
        .unwrap();
        metrics
            .registry
            .register(Box::new(Gate {
                release: std::sync::Mutex::new(gate),
                desc,
            }))
            .unwrap();
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(metrics))
                .route("/metrics", web::get().to(metrics_endpoint))
                .route("/health", web::get().to(health)),
        )
        .await;
        let get = |uri: &str| test::TestRequest::get().uri(uri).to_request();
        let scrape = Box::pin(test::call_service(&app, get("/metrics")));
        let health = Box::pin(test::call_service(&app, get("/health")));
        let Either::Right((health, scrape)) = futures_util::future::select(scrape, health).await
        else {
            panic!("the scrape finished before /health answered: it rendered on the worker");
        };
        assert_eq!(health.status(), 200);
        release.send(()).unwrap();
        let scrape = scrape.await;
        assert_eq!(scrape.status(), 200);
        let body = test::read_body(scrape).await;
        assert!(String::from_utf8_lossy(&body).contains("# TYPE"));
    }

    /// Only a large `/metrics` response asks for a trim; a small one, or a
    /// large response on another path, does not.
    #[actix_rt::test]
    async fn a_large_scrape_asks_for_a_trim() {
        let big = "x".repeat(LARGE_SCRAPE_BYTES as usize);
        let app = test::init_service(
            App::new()
                .wrap_fn(time_request)
                .route(
                    "/metrics",
                    web::get().to(
                        |query: web::Query<std::collections::HashMap<String, String>>| {
                            let size = if query.contains_key("big") {
                                LARGE_SCRAPE_BYTES as usize
                            } else {
                                1000
                            };
                            async move { HttpResponse::Ok().body("x".repeat(size)) }
                        },
                    ),
                )
                .route(
                    "/api/v1/query",
                    web::get().to(move || {
                        let big = big.clone();
                        async move { HttpResponse::Ok().body(big) }
                    }),
                ),
        )
        .await;
        let get = |uri: &str| test::TestRequest::get().uri(uri).to_request();
        LARGE_SCRAPE_SINCE_TRIM.store(false, Ordering::Relaxed);
        let small = test::call_and_read_body(&app, get("/metrics")).await;
        assert_eq!(small.len(), 1000);
        assert!(!LARGE_SCRAPE_SINCE_TRIM.load(Ordering::Relaxed));
        let other = test::call_and_read_body(&app, get("/api/v1/query")).await;
        assert_eq!(other.len() as u64, LARGE_SCRAPE_BYTES);
        assert!(!LARGE_SCRAPE_SINCE_TRIM.load(Ordering::Relaxed));
        let scrape = test::call_and_read_body(&app, get("/metrics?big=1")).await;
        assert_eq!(scrape.len() as u64, LARGE_SCRAPE_BYTES);
        assert!(LARGE_SCRAPE_SINCE_TRIM.swap(false, Ordering::Relaxed));
    }
}
