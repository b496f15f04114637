//! The command line: every subcommand and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// plexgate: a high-availability API gateway for the Zowe world.
///
/// One zowe.yaml describes the whole topology: a distributor on the virtual address, several
/// stateless gateways (haInstances) and a caching service holding the shared state.
#[derive(Debug, Parser)]
#[command(name = "plexgate", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check or print the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create things a fresh installation needs.
    #[command(subcommand)]
    Init(InitCommand),
    /// Manage the users file of the `users-file` authentication provider.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Run the caching service of an instance (Zowe's caching-service REST API over mutual TLS),
    /// or show its replicated group (`members`).
    CachingService(CachingServiceArgs),
    /// Run the gateway of an instance (login, tokens, revocation honoured by every gateway).
    Gateway(InstanceArgs),
    /// Run the discovery endpoint of an instance: Eureka's REST API (components.discovery.port,
    /// Zowe's 7553) for Zowe's onboarding enablers; registrations live in the caching service,
    /// so every gateway routes what any discovery instance took.
    Discovery(InstanceArgs),
    /// Run the distributor: the virtual address, spreading TCP connections over the gateways;
    /// or write a distributor host's keepalived.conf (`keepalived-config`).
    ///
    /// Uses components.distributor of the base configuration, or of the haInstance named
    /// (a distributor host sharing components.distributor.virtualAddress): method, targets,
    /// health checks, limits and the admin listener (JSON status, Prometheus metrics).
    Distributor(DistributorArgs),
    /// Show the distributor's targets (as NETSTAT VDPT does): role, state, connections, bytes;
    /// and, with a virtual address, which host holds it.
    ///
    /// Asks the running distributor's admin listener (components.distributor.admin) and reads
    /// the VRRP state files keepalived's notify command writes under <workspace>/keepalived/.
    Status(StatusArgs),
    /// Run the built-in sample API service (an upstream for demos, tests and benchmarks).
    SampleService(SampleArgs),
    /// Run the whole system from one zowe.yaml: caching service, gateways, sample service and
    /// distributor as supervised child processes (default: the embedded examples/zowe.yaml).
    ///
    /// With --ha-instance, only that haInstance's components (one host of a multi-host
    /// set-up), and keepalived beside its distributor when it shares a virtual address.
    Up {
        /// The configuration.
        #[command(flatten)]
        config: ConfigArg,
        /// Run only this haInstance's components.
        #[arg(long, value_name = "ID")]
        ha_instance: Option<String>,
    },
}

/// `plexgate distributor`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DistributorArgs {
    /// Without one: run the distributor.
    #[command(subcommand)]
    pub action: Option<DistributorAction>,
    /// Which view to run.
    #[command(flatten)]
    pub run: InstanceArgs,
}

/// What `plexgate distributor` does besides running.
#[derive(Debug, Subcommand)]
pub enum DistributorAction {
    /// Print (or write) the keepalived.conf of one distributor host of the virtual address
    /// (components.distributor.virtualAddress): its VRRP instance, the check of the local
    /// distributor and the notify command recording its state.
    KeepalivedConfig(KeepalivedConfigArgs),
    /// Exit 0 only if the local distributor serves (its admin listener's /health is UP: not
    /// draining, some target not down); keepalived's check of the distributor.
    Check(CheckArgs),
    /// Record a VRRP state change in the state file (keepalived's notify command; keepalived
    /// appends the type, name, state and priority).
    KeepalivedNotify(NotifyArgs),
}

/// `plexgate distributor keepalived-config`.
#[derive(Debug, Args)]
pub struct KeepalivedConfigArgs {
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArg,
    /// The distributor host (haInstance) to write the file for.
    #[arg(long, value_name = "ID")]
    pub ha_instance: String,
    /// Write the file here (mode 0600: it may hold the VRRP password) instead of printing it.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

/// `plexgate distributor check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration (names the admin listener), unless --admin is given.
    #[command(flatten)]
    pub config: ConfigArg,
    /// The haInstance whose distributor to check.
    #[arg(long, value_name = "ID")]
    pub ha_instance: Option<String>,
    /// The admin listener, host:port (instead of reading the configuration).
    #[arg(long, value_name = "HOST:PORT")]
    pub admin: Option<String>,
    /// Longest wait for the answer.
    #[arg(long, value_name = "DURATION", default_value = "800ms", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

/// `plexgate distributor keepalived-notify`.
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The distributor host (haInstance) notified about.
    #[arg(long, value_name = "ID")]
    pub ha_instance: String,
    /// The state file to write.
    #[arg(long, value_name = "PATH")]
    pub state_file: PathBuf,
    /// What keepalived appends: `INSTANCE|GROUP`, the name, `MASTER|BACKUP|FAULT|STOP` and the priority.
    #[arg(num_args = 3..=4, value_name = "KEEPALIVED_ARGS", allow_hyphen_values = true)]
    pub keepalived: Vec<String>,
}

/// A command that only needs the configuration.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArg,
}

/// `plexgate status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The configuration (names the admin listener).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the status document as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Ask this haInstance's distributor (a distributor host).
    #[arg(long, value_name = "ID")]
    pub ha_instance: Option<String>,
}

/// `plexgate sample-service`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// The configuration (for its certificates).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Port to listen on (127.0.0.1).
    #[arg(long)]
    pub port: u16,
    /// Instance id it reports in every answer.
    #[arg(long, default_value = "sample-1")]
    pub id: String,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    pub plain: bool,
}

/// A process that runs as one haInstance.
#[derive(Debug, Args)]
pub struct InstanceArgs {
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArg,
    /// The haInstance to run as (its overrides are merged over components.*).
    #[arg(long, value_name = "ID", env = "PLEXGATE_HA_INSTANCE")]
    pub ha_instance: Option<String>,
}

/// `plexgate caching-service`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CachingServiceArgs {
    /// Without one: run the caching service.
    #[command(subcommand)]
    pub action: Option<CachingServiceAction>,
    /// Which instance to run.
    #[command(flatten)]
    pub run: InstanceArgs,
}

/// What `plexgate caching-service` does besides running.
#[derive(Debug, Subcommand)]
pub enum CachingServiceAction {
    /// Show the replicated group (`storage.mode: replicated`): every replica's id, address,
    /// role, term, log and applied index, contact with a leader, and its lag behind the leader.
    Members(ConfigArgs),
}

/// Where the configuration comes from.
#[derive(Debug, Args, Clone)]
pub struct ConfigArg {
    /// The zowe.yaml to use [default: the embedded examples/zowe.yaml].
    #[arg(short = 'c', long = "config", env = "PLEXGATE_CONFIG", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// `plexgate config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration of every haInstance; exit 0 with a summary, or 2 with the errors.
    Validate {
        /// The configuration.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the merged, checked configuration as YAML (secrets masked).
    Show {
        /// The configuration.
        #[command(flatten)]
        config: ConfigArg,
        /// Show the view of this haInstance (its overrides merged over components.*).
        #[arg(long, value_name = "ID")]
        ha_instance: Option<String>,
    },
}

/// `plexgate init ...`.
#[derive(Debug, Subcommand)]
pub enum InitCommand {
    /// Create a development CA, a server certificate and a client certificate in the workspace.
    ///
    /// The server certificate covers localhost, 127.0.0.1, ::1, every zowe.externalDomains entry
    /// and every haInstance hostname. Existing files are kept unless --force is given.
    Certificate {
        /// The configuration.
        #[command(flatten)]
        config: ConfigArg,
        /// Replace existing certificates and keys.
        #[arg(long)]
        force: bool,
    },
}

/// `plexgate users ...`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user (or replace its password); the password is read from standard input or
    /// prompted for without echo, and only its Argon2id hash is stored.
    Add {
        /// The configuration (names the users file: components.gateway.usersFile).
        #[command(flatten)]
        config: ConfigArg,
        /// The user name.
        name: String,
        /// Allow this user to revoke other users' tokens and to evict.
        #[arg(long)]
        admin: bool,
    },
}
