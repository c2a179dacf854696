//! `kate agent` (a node that joins a cluster) and `kate token create` (the tokens it joins with).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use kate_apiserver::join::{JoinRequest, JoinTokens};

use crate::agent::AgentArgs;

/// Options of `kate agent`.
#[derive(Args)]
pub struct JoinArgs {
    /// The server's URL, e.g. https://10.0.0.1:6443.
    #[arg(long, env = "KATE_URL")]
    server: String,
    /// A join token from `kate token create` on the server.
    #[arg(long, env = "KATE_TOKEN")]
    token: String,
    /// Directory for the node's state (certificates, images, containers).
    #[arg(long, env = "KATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The cluster's pod network (as `kate server --cluster-cidr`), for the service proxy.
    #[arg(long, default_value = "10.42.0.0/16", value_name = "CIDR")]
    cluster_cidr: String,
    #[command(flatten)]
    agent: AgentArgs,
}

/// `kate token …`.
#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a join token and print it (for `kate agent --token`).
    Create {
        /// The server's data directory.
        #[arg(long, env = "KATE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// Prints a new join token.
pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create { data_dir } => {
            let pki = data_dir.unwrap_or_else(crate::default_data_dir).join("pki");
            let ca_path = pki.join("ca.crt");
            let ca = std::fs::read_to_string(&ca_path).with_context(|| {
                format!(
                    "reading {} (has `kate server` run with this data dir?)",
                    ca_path.display()
                )
            })?;
            let token = JoinTokens::new(&pki).create(&ca).context("writing the join token")?;
            println!("{token}");
            Ok(())
        }
    }
}

/// Joins the cluster and runs this machine's node until interrupted.
pub fn agent(args: JoinArgs) -> anyhow::Result<()> {
    crate::init_logging();
    let data_dir = crate::data_dir_or_default(args.data_dir.clone())?;
    let runtime = crate::async_runtime()?;
    runtime.block_on(async move {
        let request = JoinRequest {
            secret: String::new(),
            node_name: args.agent.node_name(),
            node_ip: kate_kubelet::sysinfo::primary_ip(),
        };
        eprintln!("kate: joining {} as node {}...", args.server, request.node_name);
        let creds = crate::join::credentials(&args.server, &args.token, &request, &data_dir).await?;
        let client =
            crate::join::client(&args.server, &creds.ca, Some((&creds.client_cert, &creds.client_key))).await?;
        let tls = kate_kubelet::ServingTls {
            ca_pem: creds.ca.clone(),
            cert_pem: creds.serving_cert.clone(),
            key_pem: creds.serving_key.clone(),
        };
        crate::agent::start_kubelet(client.clone(), &args.agent, &data_dir, Some(tls), false)?;
        crate::proxy::start(client, &args.agent, &args.cluster_cidr, false);
        eprintln!("kate: node {} started", request.node_name);
        crate::stop_requested().await;
        eprintln!("kate: stopping");
        crate::proxy::stop(&args.agent);
        Ok(())
    })
}
