//! What the replicas of an endpoint's deployed models printed, as Cloud Run's `services logs
//! read` and `logs tail` show a service's: the last lines, or followed as they come.

use api::{EndpointName, Role};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{EndpointError, Endpoints, Result};
use crate::auth::Caller;
use crate::backend::{BackendError, LogRequest};
use crate::manifests;
use crate::store::{DesiredState, EndpointKey};

/// Most lines one request may ask for.
pub const MAX_TAIL: usize = 10_000;

/// Which lines of an endpoint's logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// One deployed model's replicas only.
    pub deployed_model_id: Option<String>,
    /// One replica only.
    pub replica: Option<String>,
    /// How many of the last lines.
    pub tail: usize,
    /// Keep going with new lines.
    pub follow: bool,
}

impl Endpoints {
    /// The log lines of the endpoint's deployed models (viewers may read them): the last
    /// `query.tail` of them by time, then, when following, new ones until the stream is dropped.
    pub async fn logs(
        &self,
        caller: &Caller,
        name: &EndpointName,
        query: &LogQuery,
    ) -> Result<BoxStream<'static, api::LogEntry>> {
        caller.require(Role::Viewer, &name.parent.project)?;
        if query.tail > MAX_TAIL {
            return Err(EndpointError::Invalid(format!(
                "tail is {}; ask for at most {MAX_TAIL} lines",
                query.tail
            )));
        }
        let key = EndpointKey::of(name);
        self.store.get_endpoint(&key).await?;
        let mut deployed: Vec<(String, bool)> = self
            .store
            .list_deployed_models(&key)
            .await?
            .into_iter()
            .filter(|d| d.desired_state != DesiredState::Undeploying)
            .map(|d| (d.deployed_model_id, d.spec.disable_container_logging))
            .collect();
        if let Some(id) = &query.deployed_model_id {
            if !deployed.iter().any(|(d, _)| d == id) {
                return Err(EndpointError::NotFound(format!(
                    "endpoint {} has no deployed model {id}",
                    name.endpoint_id
                )));
            }
            deployed.retain(|(d, _)| d == id);
        }
        let request = LogRequest { replica: query.replica.clone(), tail: query.tail, follow: query.follow };
        let mut streams = Vec::new();
        let mut notices = Vec::new();
        for (id, output_disabled) in deployed {
            if output_disabled {
                notices.push(output_not_kept(&id));
            }
            let deployment = manifests::deployment_name(&key.endpoint_id, &id);
            match self.backend.logs(&deployment, &request).await {
                Ok(stream) => streams.push(
                    stream
                        // Where the backend still holds the output (the kubelet keeps it on
                        // Kubernetes), only the platform's notes are shown.
                        .filter(move |e| std::future::ready(!output_disabled || e.stream == "platform"))
                        .map(move |e| api::LogEntry {
                            time: e.time,
                            deployed_model_id: id.clone(),
                            replica: e.replica,
                            stream: e.stream,
                            text: e.text,
                        })
                        .boxed(),
                ),
                // Not started yet, or gone already: nothing to show.
                Err(BackendError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if query.follow {
            let notices = futures_util::stream::iter(notices);
            return Ok(notices.chain(futures_util::stream::select_all(streams)).boxed());
        }
        let mut all: Vec<api::LogEntry> = futures_util::stream::iter(streams).flatten().collect().await;
        all.sort_by(|a, b| a.time.cmp(&b.time));
        let mut last = all.split_off(all.len().saturating_sub(query.tail));
        last.extend(notices);
        Ok(futures_util::stream::iter(last).boxed())
    }
}

/// What the logs say of a deployed model with `disableContainerLogging`.
fn output_not_kept(deployed_model_id: &str) -> api::LogEntry {
    api::LogEntry {
        time: crate::store::Timestamp::now().to_string(),
        deployed_model_id: deployed_model_id.to_string(),
        replica: String::new(),
        stream: "platform".into(),
        text: format!(
            "container logging is disabled for deployed model {deployed_model_id} (disableContainerLogging): \
             its replicas' stdout and stderr are not kept; only the platform's notes are shown"
        ),
    }
}
