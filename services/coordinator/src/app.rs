//! Wiring: builds every part from [`Config`] and runs until shutdown.

use reconciler_runtime::auth::RequireToken;
use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;

use reconciler_proto::coordinator::coordinator_server::CoordinatorServer;
use reconciler_runtime::grpc;
use reconciler_runtime::listen::{Establish, LimitedListener};
use reconciler_runtime::tls::ClientTransport;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::agents::AgentLink;
use crate::authentik::AuthentikClient;
use crate::config::Config;
use crate::desired::DesiredConfig;
use crate::engine::{Engine, EngineConfig};
use crate::error::{Error, Result};
use crate::grpc::CoordinatorService;
use crate::http::{HttpState, router};
use crate::leader::Leadership;
use crate::serve_http;
use crate::store::{Backend, Store};
use crate::targets::{
    Adapters, mailcow::Mailcow, matrix::Matrix, nextcloud::Nextcloud, sogo::Sogo,
    stalwart::Stalwart,
};
use crate::worker::{Workers, sweep_timer};

pub async fn run(config: Config) -> Result<()> {
    crate::metrics::install();
    if let ClientTransport::Insecure = config.agent_transport {
        warn!(
            "AGENT_INSECURE=true: agents are called over plaintext HTTP/2 without certificates; \
             the agent token crosses the network readable (README \"Mutual TLS\")"
        );
    }
    let store = Store::open(config.state_db_url.expose())
        .await?
        .as_instance(&config.instance);
    // Released (the lock's session closed) once this instance's jobs stopped.
    let resign = CancellationToken::new();
    let leadership = match store.backend() {
        Backend::Sqlite => Leadership::sole(),
        Backend::Postgres => Leadership::elect(
            config.state_db_url.expose(),
            &config.instance,
            resign.clone(),
        )?,
    };
    // A follower reports 0 from the start; the campaign sets it as it goes.
    crate::metrics::set_leader(leadership.leads());
    info!(instance = %config.instance, backend = ?store.backend(), "state DB open");
    let directory = Arc::new(AuthentikClient::new(
        &config.authentik_url,
        config.authentik_token.clone(),
        config.authentik_timeout,
        &config.attribute_key,
    )?);
    let engine = Arc::new(
        Engine::new(
            store.clone(),
            directory.clone(),
            adapters(&config)?,
            EngineConfig {
                desired: DesiredConfig {
                    attribute_key: config.attribute_key.clone(),
                    app_password_protocols: config.app_password_protocols.clone(),
                    matrix: config.matrix.clone(),
                    stalwart: config.stalwart.clone(),
                },
                max_user_drop: config.max_user_drop,
                max_removal_share: config.max_removal_share,
                removal_guard_min: config.removal_guard_min,
                failure_backoff_base: config.failure_backoff_base,
                backups: config.state_backups.clone(),
                directory_max_age: config.directory_max_age,
            },
        )
        .with_leadership(leadership.clone()),
    );
    let wake = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();

    let duties = {
        let (engine, wake, config) = (engine.clone(), wake.clone(), config.clone());
        move |stop: CancellationToken| leader_duties(&engine, &directory, &wake, &config, stop)
    };
    let leading = tokio::spawn(crate::duties::lead(
        leadership,
        engine.clone(),
        config.job_max_attempts,
        shutdown.clone(),
        duties,
    ));

    let http = router(HttpState {
        engine: engine.clone(),
        wake: wake.clone(),
        webhook_token: config.webhook_token.clone(),
        admin_token: config.admin_token.clone(),
        status_token: config.status_token.clone(),
        stalwart_webhook_secret: config.stalwart_webhook_secret.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        agent_transport: config.agent_transport.mode(),
    });
    let listener = LimitedListener::bind(
        config.http_listen,
        config.http_limits.clone(),
        Establish::ByServer,
    )
    .await
    .map_err(|e| Error::Config(format!("cannot bind HTTP on {}: {e}", config.http_listen)))?;
    // Port 0 names a free port: say which one (reconciler_runtime::announce).
    let http_addr = listener
        .local_addr()
        .and_then(|addr| reconciler_runtime::announce::announce("http", addr).map(|()| addr))
        .map_err(|e| Error::Config(format!("cannot announce the HTTP listener: {e}")))?;
    info!(addr = %http_addr, max_connections = config.http_limits.max_connections, "coordinator HTTP listening");
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(serve_http::serve(listener, http, async move {
        http_shutdown.cancelled().await
    }));

    // Operators only: the same admin token as POST /reconcile-all.
    let service = InterceptedService::new(
        CoordinatorServer::new(CoordinatorService { engine, wake }),
        RequireToken::new(config.admin_token.clone()),
    );
    let router = grpc::server(&config.grpc_limits).add_service(service);
    let (router, _health) = grpc::with_standard_services::<
        InterceptedService<CoordinatorServer<CoordinatorService>, RequireToken>,
    >(router)
    .await
    .map_err(|e| Error::Config(e.to_string()))?;
    if config.operator_token_in_the_clear() {
        warn!(
            addr = %config.grpc_listen,
            "the operator gRPC port is plaintext HTTP/2: the admin token crosses the network in \
             the clear unless only loopback or a private network reaches this address; \
             GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE turn on TLS"
        );
    }
    let grpc_shutdown = shutdown.clone();
    let grpc_result = grpc::serve(
        router,
        config.grpc_listen,
        &config.grpc_limits,
        config.grpc_transport.clone(),
        async move {
            tokio::select! {
                _ = grpc::shutdown_signal() => {}
                _ = grpc_shutdown.cancelled() => {}
            }
        },
    )
    .await;
    shutdown.cancel();
    let _ = http_task.await;
    let _ = leading.await;
    resign.cancel();
    grpc_result.map_err(|e| Error::Config(e.to_string()))
}

/// The workers and timers only the leader runs, until `stop`.
fn leader_duties(
    engine: &Arc<Engine>,
    directory: &Arc<AuthentikClient>,
    wake: &Arc<Notify>,
    config: &Config,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let store = engine.store();
    let workers = Workers {
        engine: engine.clone(),
        wake: wake.clone(),
        max_attempts: config.job_max_attempts,
        retry_base: config.retry_base,
    };
    let mut tasks = workers.spawn(config.worker_concurrency, stop.clone());
    tasks.push(tokio::spawn(crate::worker::prune_timer(
        store.clone(),
        config.retention.clone(),
        std::time::Duration::from_secs(3600),
        stop.clone(),
    )));
    tasks.push(tokio::spawn(crate::worker::grace_timer(
        store.clone(),
        wake.clone(),
        config.grace_poll,
        stop.clone(),
    )));
    if let Some(interval) = config.events_catchup {
        let catch_up = crate::catchup::CatchUp {
            source: directory.clone(),
            store: store.clone(),
            wake: wake.clone(),
        };
        tasks.push(tokio::spawn(catch_up.run(interval, stop.clone())));
    }
    if store.backend() == Backend::Postgres {
        tasks.push(tokio::spawn(crate::duties::wake_on_enqueue(
            config.state_db_url.expose().to_owned(),
            wake.clone(),
            stop.clone(),
        )));
    }
    if let Some(interval) = config.sweep_interval {
        tasks.push(tokio::spawn(sweep_timer(
            store.clone(),
            wake.clone(),
            interval,
            stop,
        )));
    }
    tasks
}

/// One adapter per configured agent, in apply order: the Nextcloud adapter
/// takes secrets of app passwords the Mailcow adapter makes in the same run.
fn adapters(config: &Config) -> Result<Adapters> {
    let connect = |name: &str, url: &str| -> Result<AgentLink> {
        AgentLink::connect(
            name,
            url,
            config.agent_timeout,
            &config.agent_token,
            &config.agent_transport,
        )
    };
    let mut adapters = Adapters::default().with(Arc::new(Mailcow::new(connect(
        "mailcow-agent",
        &config.mailcow_agent_url,
    )?)));
    if let Some(url) = &config.sogo_agent_url {
        adapters = adapters.with(Arc::new(Sogo::new(connect("sogo-agent", url)?)));
    }
    if let Some(url) = &config.nextcloud_agent_url {
        adapters = adapters.with(Arc::new(Nextcloud::new(connect("nextcloud-agent", url)?)));
    }
    if let Some(url) = &config.matrix_agent_url {
        adapters = adapters.with(Arc::new(Matrix::new(
            connect("matrix-agent", url)?,
            config.matrix_identities.clone(),
        )));
    }
    if let Some(url) = &config.stalwart_agent_url {
        adapters = adapters.with(Arc::new(Stalwart::new(connect("stalwart-agent", url)?)));
    }
    Ok(adapters)
}
