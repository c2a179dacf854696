//! The cloud-controller-manager `kate server` runs in-process: the service and node controllers
//! of `kate-cloud` with the provider `--cloud-provider` names.

/// The provider `kate server` uses unless told otherwise.
pub const DEFAULT_PROVIDER: &str = kate_cloud::local::NAME;
/// The `--cloud-provider` value that runs no cloud controllers.
pub const NONE: &str = "none";
/// The values `--cloud-provider` accepts.
pub const PROVIDERS: [&str; 2] = [DEFAULT_PROVIDER, NONE];

/// Starts the cloud controllers with the built-in provider `provider_name` on the runtime's
/// tasks, under the `kube-system/cloud-controller-manager` lease held as `identity`; `none`
/// starts nothing.
pub fn start(client: kube::Client, provider_name: &str, identity: String) {
    if provider_name == NONE {
        return;
    }
    let Some(provider) = kate_cloud::builtin(provider_name, &client) else {
        eprintln!("kate: unknown cloud provider {provider_name:?}, so no cloud controllers run");
        return;
    };
    let config = kate_cloud::Config {
        identity,
        ..Default::default()
    };
    tokio::spawn(async move {
        if let Err(e) = kate_cloud::run(client, provider, config).await {
            tracing::error!(error = %e, "the cloud controllers stopped");
            eprintln!("kate: the cloud controllers stopped: {e}");
        }
    });
}
