//! The `breakwater` binary.

use breakwater::access::tls::RecordingVerifier;
use breakwater::access::AccessControl;
use breakwater::accesslog::AccessLog;
use breakwater::admin::AdminApp;
use breakwater::background::PullStatsFlusher;
use breakwater::cli::{load_settings, Cli, Command};
use breakwater::config::Settings;
use breakwater::lifecycle::runner::LifecycleRunner;
use breakwater::lifecycle::Lifecycle;
use breakwater::metrics::Metrics;
use breakwater::ready::service::ReadinessService;
use breakwater::ready::Readiness;
use breakwater::registry::Registry;
use breakwater::scan::hooks::ScanHooks;
use breakwater::scan::service::ScanService;
use breakwater::scan::Scanner;
use breakwater::server::RegistryApp;
use clap::Parser;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::process::ExitCode;

use std::sync::Arc;

/// The diagnostic log to stderr: `BREAKWATER_LOG`, else `RUST_LOG`, else `level` (the config's).
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BREAKWATER_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| format!("{level},pingora_core=warn").into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Large buffers (fill and read chunks of 256 KiB) get their own mappings, returned to the
/// system when freed. glibc otherwise raises its mmap threshold after the first such free and
/// keeps the freed chunks in per-thread arenas: measured, a 1 GiB fill left 6 MiB more resident
/// for the rest of the process's life (26.3 vs 21.7 MiB after the fill, 8 warm clients after).
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() -> ExitCode {
    return_large_buffers_to_the_system();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        init_logging("info");
    }
    let result = match cli.command {
        Command::Serve { config } => load_settings(config.as_ref()).and_then(|s| {
            init_logging(&s.log.level);
            serve(s)
        }),
        Command::Scrub { config, json } => {
            return load_settings(config.as_ref())
                .and_then(|s| breakwater::cache::scrub::scrub(&s.storage.root))
                .map(|report| {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                    } else {
                        println!(
                            "checked {} blobs ({} bytes): {} bad, index records dropped {}, added {}, staging files removed {}",
                            report.checked,
                            report.bytes,
                            report.bad.len(),
                            report.index_records_dropped,
                            report.index_records_added,
                            report.temp_files_removed
                        );
                        for d in &report.bad {
                            println!("quarantined {d}");
                        }
                    }
                    if report.bad.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(2)
                    }
                })
                .unwrap_or_else(|e| {
                    eprintln!("breakwater: {e}");
                    ExitCode::FAILURE
                });
        }
        Command::Admin(cmd) => breakwater::admin::cli::run(cmd),
        Command::Scan(cmd) => breakwater::admin::scan_cli::run(cmd),
        Command::Cluster(cmd) => breakwater::admin::cluster::run(cmd),
        Command::Ready(cmd) => {
            return breakwater::admin::ready_cli::run(cmd).unwrap_or_else(|e| {
                eprintln!("breakwater: {e}");
                ExitCode::FAILURE
            })
        }
        Command::ClientConfig {
            client,
            url,
            config,
            out,
        } => load_settings(config.as_ref())
            .and_then(|s| breakwater::clientconfig::run(&s, client, &url, out.as_deref())),
        Command::CheckConfig { config } => load_settings(config.as_ref()).map(|s| {
            for (name, u) in &s.upstreams {
                println!(
                    "{name}: {} aliases={:?} hosts={:?} tag_ttl={:?}",
                    u.url, u.aliases, u.hosts, u.tag_ttl
                );
            }
            println!("default upstream: {}", s.default_upstream);
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("breakwater: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new());
    let quota = settings.storage.quota.as_ref().map_or(0, |q| q.max_bytes);
    metrics.store_quota_bytes.set(quota as i64);
    let registry = Arc::new(Registry::open(&settings, metrics.clone())?);
    let cache = registry.cache_handle();
    // The scanner reads images through the registry and plugs back in as its manifest hooks
    // (scan on cache, pull gate); the lifecycle service gets only the cache handle.
    let scans = cache.index.scans().map_err(|e| {
        let root = settings.storage.root.display();
        format!("cannot open scan tables at {root}: {e}")
    })?;
    let scanner = Arc::new(Scanner::new(
        &settings.scan,
        scans,
        cache.index.clone(),
        registry.image_source(),
        &metrics,
    ));
    registry.set_hooks(Arc::new(ScanHooks(scanner.clone())));
    let conf = ServerConf {
        threads: settings.server.threads,
        pid_file: settings
            .storage
            .root
            .join("breakwater.pid")
            .display()
            .to_string(),
        upgrade_sock: settings
            .storage
            .root
            .join("upgrade.sock")
            .display()
            .to_string(),
        // Running requests and fills get this long after SIGTERM (the drain service exits as
        // soon as none is left).
        grace_period_seconds: Some(settings.server.shutdown_grace.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let access_log = Arc::new(AccessLog::start(&settings.log)?);
    let mut app =
        RegistryApp::new(registry.clone(), &settings.default_upstream).with_access_log(access_log);
    let access = match &settings.access {
        Some(a) => {
            let ac = Arc::new(AccessControl::new(
                a,
                &settings.storage.root,
                &settings.upstreams,
                metrics.clone(),
            )?);
            tracing::info!(
                rules = a.rules.len(),
                challenge = ?a.challenge,
                "access control on: clients authenticate on the registry port"
            );
            app = app.with_access(ac.clone());
            Some(ac)
        }
        None => {
            tracing::warn!(
                "no [access] section: the registry port is open, and anyone who reaches it can \
                 pull (and fill) everything the upstreams' credentials can read"
            );
            None
        }
    };
    let drain = breakwater::server::drain::Drain {
        in_flight: app.in_flight(),
        registry: registry.clone(),
    };
    let limits = &settings.server.clients;
    let limit_metrics = breakwater::server::limits::LimitMetrics::new(&metrics);
    let app = app.with_client_limits(limits, limit_metrics.clone());
    // Plain-TCP connections get a stream that can sendfile warm blobs (server/zerocopy.rs).
    let app = breakwater::server::zerocopy::ZeroCopyApp::new(app);
    let open_files = breakwater::server::limits::raise_open_file_limit();
    let max_connections =
        breakwater::server::limits::effective_max_connections(limits.max_connections, open_files);
    if max_connections < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            max_connections,
            open_file_limit = open_files,
            "server.max_connections lowered to what the open-file limit allows (raise the hard \
             RLIMIT_NOFILE, e.g. LimitNOFILE= in systemd, to allow more)"
        );
    }
    let app = breakwater::server::limits::ConnectionCap::new(app, max_connections, limit_metrics);
    let mut registry_service = Service::new("registry".to_string(), app);
    // Request heads go into Pingora's own 4 KiB buffer; its default 64 KiB read buffer per
    // connection (never needed: breakwater reads no request bodies) is what made idle
    // connections cost ~35 KiB each.
    let l4 = pingora::listeners::L4BufferSettings::default().read(0);
    registry_service.add_listener(
        pingora::listeners::ListenerConfig::tcp(settings.server.listen.to_string()).l4_buffer(l4),
    );
    if let Some(tls) = &settings.server.tls {
        let mut tls_settings = pingora::listeners::tls::TlsSettings::intermediate(
            &tls.cert.display().to_string(),
            &tls.key.display().to_string(),
        )
        .map_err(|e| format!("TLS certificate or key unusable: {e}"))?;
        let client_certs = settings
            .access
            .as_ref()
            .and_then(|a| a.client_certificates.as_ref());
        if let (Some(cc), Some(ids)) = (
            client_certs,
            access.as_ref().and_then(|a| a.client_identities()),
        ) {
            let verifier = RecordingVerifier::new(&cc.ca, cc.required, ids)?;
            tls_settings.set_client_cert_verifier(Arc::new(verifier));
        }
        tls_settings.enable_h2();
        registry_service.add_tls_with_settings(&tls.listen.to_string(), None, tls_settings);
    }
    registry_service.threads = Some(settings.server.threads);

    let readiness = ReadinessService {
        readiness: Readiness::new(cache.clone(), registry.image_source()),
    };
    let lifecycle = Arc::new(Lifecycle::new(
        cache.clone(),
        settings.lifecycle.clone(),
        settings.storage.quota.clone(),
    ));
    let mut admin_service = Service::new(
        "admin".to_string(),
        HttpServer::new_app(
            AdminApp::new(
                metrics.clone(),
                lifecycle.clone(),
                scanner.clone(),
                settings.server.admin_token.clone(),
            )
            .with_cluster(registry.cluster().cloned()),
        ),
    );
    admin_service.add_tcp(&settings.server.admin_listen.to_string());
    admin_service.threads = Some(1);

    server.add_service(registry_service);
    server.add_service(admin_service);
    if let Some(cluster) = registry.cluster() {
        let mut peer_service = Service::new(
            "peer".to_string(),
            breakwater::server::peer::PeerApp::new(
                registry.clone(),
                cluster.settings.secret.clone(),
            ),
        );
        peer_service.add_tcp(&cluster.settings.peer_listen.to_string());
        peer_service.threads = Some(settings.server.threads);
        server.add_service(peer_service);
        server.add_service(background_service(
            "cluster-heartbeat",
            breakwater::cluster::members::Heartbeat {
                cluster: cluster.clone(),
            },
        ));
        tracing::info!(
            node = %cluster.node(),
            peer_listen = %cluster.settings.peer_listen,
            peer_url = %cluster.settings.peer_url,
            "cluster mode: fills are leased in PostgreSQL"
        );
    }
    server.add_service(background_service("pull-stats", PullStatsFlusher { cache }));
    server.add_service(background_service("drain", drain));
    server.add_service(background_service(
        "scan",
        ScanService {
            scanner,
            cluster: registry.cluster().cloned(),
        },
    ));
    server.add_service(background_service("readiness", readiness));
    server.add_service(background_service(
        "lifecycle",
        LifecycleRunner {
            lifecycle,
            cluster: registry.cluster().cloned(),
        },
    ));
    if settings.server.admin_token.is_none() && !settings.server.admin_listen.ip().is_loopback() {
        tracing::warn!(
            admin = %settings.server.admin_listen,
            "the admin API listens beyond loopback without a token: anyone who reaches it can \
             delete images and change policies (set server.admin_token_file)"
        );
    }
    tracing::info!(
        listen = %settings.server.listen,
        admin = %settings.server.admin_listen,
        store = %settings.storage.root.display(),
        default_upstream = %settings.default_upstream,
        "breakwater serving"
    );
    server.run_forever()
}
