//! From the file as written to a checked [`Config`]: every rule, every default, once.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::checked::*;
use crate::document::Document;
use crate::error::{Problem, Warning};
use crate::model::{self, ZoweYaml};
use crate::unknown::nearest;

pub(crate) mod certs;
mod distributor;
mod gateway;
mod storage;
mod virtual_address;

/// Collects problems and warnings while one view is checked.
pub(crate) struct Ctx<'a> {
    pub doc: &'a Document,
    pub instance: Option<&'a str>,
    pub base_dir: &'a Path,
    pub problems: Vec<Problem>,
    pub warnings: Vec<Warning>,
}

impl Ctx<'_> {
    pub fn problem(&mut self, path: &str, message: impl Into<String>) {
        let p = self.doc.problem(path, self.instance, message.into());
        self.problems.push(p);
    }

    pub fn warn(&mut self, path: &str, message: impl Into<String>) {
        let p = self.doc.problem(path, self.instance, message.into());
        self.warnings.push(Warning(p));
    }

    /// A TCP port, 1 to 65535.
    pub fn port(&mut self, path: &str, v: i64) -> u16 {
        match u16::try_from(v) {
            Ok(p) if p > 0 => p,
            _ => {
                self.problem(path, format!("found {v}, allowed a port number from 1 to 65535"));
                1
            }
        }
    }

    /// A whole number at least `min`.
    pub fn at_least(&mut self, path: &str, v: i64, min: u32) -> u32 {
        match u32::try_from(v) {
            Ok(n) if n >= min => n,
            _ => {
                self.problem(path, format!("found {v}, allowed a whole number from {min} to {}", u32::MAX));
                min
            }
        }
    }

    /// One of `allowed` (case-insensitive); its index.
    pub fn choice(&mut self, path: &str, v: &str, allowed: &[&str]) -> Option<usize> {
        if let Some(i) = allowed.iter().position(|a| a.eq_ignore_ascii_case(v.trim())) {
            return Some(i);
        }
        let known: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        let hint = nearest(v, &known).map(|n| format!("; did you mean `{n}`?")).unwrap_or_default();
        self.problem(path, format!("found `{v}`, allowed one of: {}{hint}", allowed.join(", ")));
        None
    }

    /// A path from the file, absolute (relative ones are relative to the current directory).
    pub fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() { p.to_path_buf() } else { self.base_dir.join(p) }
    }
}

/// Checks the view of `instance` (or the base view) into a [`Config`].
pub(crate) fn check(doc: &Document, instance: Option<&str>, base_dir: &Path) -> (Option<Config>, Vec<Problem>, Vec<Warning>) {
    let ids = doc.instance_ids();
    let mut ctx = Ctx { doc, instance, base_dir, problems: doc.env_problems().to_vec(), warnings: Vec::new() };
    if let Some(id) = instance
        && !ids.iter().any(|i| i == id)
    {
        let defined = if ids.is_empty() { "none".to_owned() } else { ids.join(", ") };
        ctx.problem("haInstances", format!("no haInstance `{id}` in the file; defined: {defined}"));
        return (None, ctx.problems, ctx.warnings);
    }
    let y = match doc.typed(instance) {
        Ok(y) => y,
        Err(p) => {
            ctx.problems.push(p);
            return (None, ctx.problems, ctx.warnings);
        }
    };
    let config = build(&mut ctx, &y, &ids);
    (Some(config), ctx.problems, ctx.warnings)
}

fn build<'a>(ctx: &mut Ctx<'a>, y: &ZoweYaml, ids: &'a [String]) -> Config {
    let z = &y.zowe;
    if z.external_domains.is_empty() {
        ctx.problem("zowe.externalDomains", "found an empty list, allowed at least one host name (the virtual address)");
    }
    let first_domain = z.external_domains.first().cloned().unwrap_or_else(|| "localhost".to_owned());
    let external_port = ctx.port("zowe.externalPort", z.external_port);
    let workspace_directory = ctx.path(&z.workspace_directory);
    let verify_certificates = match ctx.choice("zowe.verifyCertificates", &z.verify_certificates, &["STRICT", "NONSTRICT", "DISABLED"]) {
        Some(1) => VerifyCertificates::Nonstrict,
        Some(2) => VerifyCertificates::Disabled,
        _ => VerifyCertificates::Strict,
    };
    let tls = tls_versions(ctx, &z.network.server.tls);
    let certificates = certs::resolve(ctx, "zowe.certificate", &z.certificate, None, &workspace_directory);

    let instances = instances(ctx, ids);
    let this = ctx.instance.and_then(|id| instances.iter().find(|i| i.id == id));
    let host = this.map(|i| i.hostname.clone()).unwrap_or_else(|| first_domain.clone());

    let g = &y.components.gateway;
    let gateway = GatewayConfig {
        enabled: g.enabled,
        host: host.clone(),
        port: ctx.port("components.gateway.port", g.port),
        auth_provider: match ctx.choice(
            "components.gateway.apiml.security.auth.provider",
            &g.apiml.security.auth.provider,
            &["zosmf", "users-file"],
        ) {
            Some(1) => AuthProvider::UsersFile,
            _ => AuthProvider::Zosmf,
        },
        users_file: g.users_file.as_deref().map(|p| ctx.path(p)).unwrap_or_else(|| workspace_directory.join("users.yaml")),
        certificates: certs::resolve(ctx, "components.gateway.certificate", &z.certificate, g.certificate.as_ref(), &workspace_directory),
        admin_users: g.admin_users.clone(),
        jwt: JwtConfig {
            lifetime: g.jwt.lifetime.0,
            leeway: g.jwt.leeway.0,
            domain: g.jwt.domain.clone(),
            signing_key: PathBuf::new(),
            signing_certificate: PathBuf::new(),
            verification_certificates: g.jwt.verification_certificates.iter().map(|p| ctx.path(p)).collect(),
        },
        login_rate_limit: RateLimitConfig {
            max_failures_per_user_and_address: ctx.at_least(
                "components.gateway.loginRateLimit.maxFailuresPerUserAndAddress",
                g.login_rate_limit.max_failures_per_user_and_address,
                1,
            ),
            max_failures_per_user: ctx.at_least(
                "components.gateway.loginRateLimit.maxFailuresPerUser",
                g.login_rate_limit.max_failures_per_user,
                1,
            ),
            max_failures_per_address: ctx.at_least(
                "components.gateway.loginRateLimit.maxFailuresPerAddress",
                g.login_rate_limit.max_failures_per_address,
                1,
            ),
            window: g.login_rate_limit.window.0,
        },
        staleness_bound: g.revocation.staleness_bound.0,
        evict_interval: g.revocation.evict_interval.0,
        shutdown_grace: g.shutdown.grace.0,
        shutdown_timeout: g.shutdown.timeout.0,
        token_cache_size: ctx.at_least("components.gateway.tokenCacheSize", g.token_cache_size, 0) as usize,
        static_definitions: match &g.static_definitions_directories {
            Some(dirs) => dirs.iter().map(|d| ctx.path(d)).collect(),
            None => vec![workspace_directory.join("api-mediation").join("api-defs")],
        },
        routing: RoutingConfig {
            connect_timeout: g.routing.connect_timeout.0,
            response_timeout: g.routing.response_timeout.0,
            idle_timeout: g.routing.idle_timeout.0,
            http2: g.routing.http2,
            retries: ctx.at_least("components.gateway.routing.retries", g.routing.retries, 0),
            health_check_interval: g.routing.health_check_interval.0,
            ejection: g.routing.ejection.0,
            sticky_idle_timeout: g.routing.sticky_idle_timeout.0,
        },
        proxy_protocol: g.proxy_protocol,
        admin: None,
        proxy_protocol_trusted_sources: gateway::proxy_sources(
            ctx,
            g,
            y.components.distributor.address.as_deref().unwrap_or(&first_domain),
        ),
    };
    let mut gateway = gateway;
    gateway.admin = gateway::admin(ctx, g, gateway.port);
    gateway.jwt.signing_key = g.jwt.signing_key.as_deref().map(|p| ctx.path(p)).unwrap_or_else(|| gateway.certificates.key.clone());
    gateway.jwt.signing_certificate =
        g.jwt.signing_certificate.as_deref().map(|p| ctx.path(p)).unwrap_or_else(|| gateway.certificates.certificate.clone());
    for (key, d) in [
        ("routing.connectTimeout", g.routing.connect_timeout),
        ("routing.responseTimeout", g.routing.response_timeout),
        ("routing.idleTimeout", g.routing.idle_timeout),
        ("routing.stickyIdleTimeout", g.routing.sticky_idle_timeout),
        ("revocation.evictInterval", g.revocation.evict_interval),
    ] {
        if d.0.is_zero() {
            ctx.problem(&format!("components.gateway.{key}"), "found 0, allowed a duration above 0 such as 5s");
        }
    }
    if g.jwt.lifetime.0.is_zero() {
        ctx.problem("components.gateway.jwt.lifetime", "found 0, allowed a duration above 0 such as 8h");
    }
    if g.jwt.signing_key.is_some() != g.jwt.signing_certificate.is_some() {
        ctx.problem("components.gateway.jwt.signingKey", "signingKey and signingCertificate go together: set both or neither");
    }
    let cs = &y.components.caching_service;
    let caching_service = CachingServiceConfig {
        enabled: cs.enabled,
        host: host.clone(),
        port: ctx.port("components.caching-service.port", cs.port),
        storage: storage::check(ctx, &cs.storage, &workspace_directory, &format!("plexgate-{first_domain}-{external_port}")),
        max_request_size: ctx.at_least("components.caching-service.maxRequestSize", cs.max_request_size, 1024) as usize,
        trusted_gateways: trusted_gateways(ctx, &cs.trusted_gateways),
        feed_retention: u64::from(ctx.at_least("components.caching-service.changeFeed.retention", cs.change_feed.retention, 1)),
        feed_heartbeat: cs.change_feed.heartbeat.0,
        certificates: certs::resolve(
            ctx,
            "components.caching-service.certificate",
            &z.certificate,
            cs.certificate.as_ref(),
            &workspace_directory,
        ),
    };
    let caching_service_urls = if instances.is_empty() {
        if cs.enabled { vec![format!("https://{host}:{}", caching_service.port)] } else { Vec::new() }
    } else {
        instances.iter().filter_map(|i| i.caching_service_port.map(|p| format!("https://{}:{p}", i.hostname))).collect()
    };
    let mut distributor = distributor::check(ctx, &y.components.distributor, &instances, &first_domain, external_port);
    distributor.virtual_address = virtual_address::check(ctx, &y.components.distributor.virtual_address, &instances);
    if let Some(vip) = &distributor.virtual_address {
        // The distributor listens on the virtual address itself unless told otherwise.
        if y.components.distributor.address.is_none() {
            distributor.address = vip.address.to_string();
        }
        if distributor.admin.is_none() {
            ctx.problem(
                "components.distributor.admin.enabled",
                "found false, but keepalived checks the distributor through its admin listener (components.distributor.virtualAddress); enable it",
            );
        }
    }
    let d = &y.components.discovery;
    let discovery = DiscoveryConfig {
        enabled: d.enabled,
        host: host.clone(),
        port: ctx.port("components.discovery.port", d.port),
        max_instances: ctx.at_least("components.discovery.maxInstances", d.max_instances, 1) as usize,
        certificates: certs::resolve(ctx, "components.discovery.certificate", &z.certificate, d.certificate.as_ref(), &workspace_directory),
    };
    let zosmf = zosmf(ctx, y.zosmf.as_ref(), gateway.auth_provider, gateway.enabled);
    let sample = &y.components.sample_service;
    let sample_service_ports = if sample.enabled {
        sample.ports.iter().enumerate().map(|(i, p)| ctx.port(&format!("components.sample-service.ports.{i}"), *p)).collect()
    } else {
        Vec::new()
    };

    Config {
        source: ctx.doc.name().to_owned(),
        ha_instance: ctx.instance.map(str::to_owned),
        external_domains: z.external_domains.clone(),
        external_port,
        workspace_directory,
        verify_certificates,
        tls,
        certificates,
        instances,
        gateway,
        caching_service,
        caching_service_urls,
        distributor,
        discovery,
        zosmf,
        sample_service_ports,
    }
}

/// `trustedGateways`, each checked to be an RFC 4514 DN (a string that is not would never
/// match, or match what it was not meant to).
fn trusted_gateways(ctx: &mut Ctx<'_>, dns: &[String]) -> Vec<String> {
    for (i, dn) in dns.iter().enumerate() {
        if let Err(e) = crate::dn::Dn::parse(dn) {
            ctx.problem(
                &format!("components.caching-service.trustedGateways.{i}"),
                format!("`{dn}` is {e}; escape `,` `+` `\\` and the like in values with `\\`"),
            );
        }
    }
    dns.to_vec()
}

fn tls_versions(ctx: &mut Ctx<'_>, t: &model::Tls) -> TlsVersions {
    const ALLOWED: &[&str] = &["TLSv1.2", "TLSv1.3"];
    let mut pick = |path: &str, v: &Option<String>, default: TlsVersion| match v {
        None => default,
        Some(v) => match ctx.choice(path, v, ALLOWED) {
            Some(1) => TlsVersion::Tls13,
            Some(_) => TlsVersion::Tls12,
            None => default,
        },
    };
    let min = pick("zowe.network.server.tls.minTls", &t.min_tls, TlsVersion::Tls12);
    let max = pick("zowe.network.server.tls.maxTls", &t.max_tls, TlsVersion::Tls13);
    if min > max {
        ctx.problem("zowe.network.server.tls.minTls", "minTls is above maxTls; allowed: minTls TLSv1.2 or TLSv1.3, not above maxTls");
    }
    TlsVersions { min, max }
}

/// Every haInstance, each seen through its own merged view.
fn instances<'a>(ctx: &mut Ctx<'a>, ids: &'a [String]) -> Vec<Instance> {
    let mut out = Vec::new();
    let mut embedded_stores: Vec<&str> = Vec::new();
    let mut replicas = 0;
    for id in ids {
        let y = match ctx.doc.typed(Some(id)) {
            Ok(y) => y,
            Err(p) => {
                ctx.problems.push(p);
                continue;
            }
        };
        let Some(inst) = y.ha_instances.get(id) else { continue };
        let hostname = match inst.hostname.as_deref().map(str::trim) {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => {
                ctx.problem(
                    &format!("haInstances.{id}.hostname"),
                    "missing; every haInstance needs the host name its components are reached at",
                );
                "localhost".to_owned()
            }
        };
        let save = ctx.instance;
        ctx.instance = Some(id);
        let g = &y.components.gateway;
        let gateway_port = g.enabled.then(|| ctx.port("components.gateway.port", g.port));
        let c = &y.components.caching_service;
        let caching_service_port = c.enabled.then(|| ctx.port("components.caching-service.port", c.port));
        let d = &y.components.discovery;
        let discovery_port = d.enabled.then(|| ctx.port("components.discovery.port", d.port));
        let shared = ["redis", "replicated"].iter().any(|m| c.storage.mode.eq_ignore_ascii_case(m));
        let embedded = c.enabled && !shared;
        ctx.instance = save;
        if embedded {
            embedded_stores.push(id.as_str());
        }
        if c.enabled && c.storage.mode.eq_ignore_ascii_case("replicated") {
            replicas += 1;
        }
        let distributor = y.components.distributor.enabled == Some(true);
        out.push(Instance {
            id: id.clone(),
            hostname,
            sysname: inst.sysname.clone(),
            gateway_port,
            caching_service_port,
            discovery_port,
            distributor,
        });
    }
    if replicas == 2 {
        ctx.warn(
            "components.caching-service.storage.mode",
            "2 replicas tolerate no failure (a majority of 2 is 2); add a third haInstance running only a caching service (a witness)",
        );
    }
    if embedded_stores.len() > 1 {
        // Each would hold a store of its own; the gateways' client fails over between them, so
        // a revocation written to one would be missing from the view followed on another.
        ctx.problem(
            "components.caching-service.storage.mode",
            format!(
                "haInstances {} each run a caching service with its own embedded store; revocations written through one would be missing on the others. Enable the caching service on one haInstance only, or use storage mode `redis` shared by all",
                embedded_stores.join(", ")
            ),
        );
    }
    out
}

fn zosmf(ctx: &mut Ctx<'_>, z: Option<&model::Zosmf>, provider: AuthProvider, gateway_enabled: bool) -> Option<ZosmfConfig> {
    let host = z.and_then(|z| z.host.clone()).filter(|h| !h.trim().is_empty());
    let Some(host) = host else {
        if provider == AuthProvider::Zosmf && gateway_enabled {
            ctx.problem(
                "zOSMF.host",
                "missing; components.gateway.apiml.security.auth.provider is `zosmf`, which checks passwords with z/OSMF (or set the provider to `users-file`)",
            );
        }
        return None;
    };
    let z = z?;
    let path = z.auth_path.clone().unwrap_or_else(|| model::DEFAULT_ZOSMF_AUTH_PATH.to_owned());
    if !path.starts_with('/') {
        ctx.problem("zOSMF.authPath", format!("found `{path}`, allowed a path starting with /"));
    }
    Some(ZosmfConfig {
        host,
        port: ctx.port("zOSMF.port", z.port.unwrap_or(model::DEFAULT_ZOSMF_PORT)),
        appl_id: z.appl_id.clone(),
        auth_path: path,
        timeout: z.timeout.unwrap_or(model::DEFAULT_ZOSMF_TIMEOUT).0,
    })
}

/// Reads a certificate-authorities value: a list, or a comma-separated string as Zowe writes it.
pub(crate) fn string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()),
        Value::Array(items) => items.iter().map(|i| i.as_str().map(str::to_owned)).collect(),
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}
