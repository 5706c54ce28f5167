//! Integration tests: the real breakwater binary between real clients (skopeo, reqwest speaking
//! as containerd) and a real upstream (Debian's docker-registry, plain and token-auth), plus a
//! small fake upstream for faults a real registry cannot produce.

mod access;
mod access_log;
mod bw;
mod chain;
mod client_config;
mod clients;
mod cluster;
mod cluster_peer;
mod cluster_three;
mod cold_fill;
mod dashboards;
mod deploy;
mod deploy_replicas;
mod docker;
mod faults;
mod hostile_clients;
mod hostile_upstream;
mod hostile_upstream_blob;
mod lifecycle;
mod object_store;
mod pg_index;
mod pg_restart;
mod pg_tls;
mod pull_path;
mod readiness;
mod referrers;
mod resilience;
mod scan;
mod scan_update;
mod support;
mod support_selftest;
mod warm_zerocopy;
