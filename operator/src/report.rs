//! How the operator tells the API server what a job is doing: its status, by server-side apply,
//! and Kubernetes events for decisions and phase changes.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde_json::json;
use siren_crds::{TrainingJob, TrainingJobStatus};

/// The field manager of everything the operator writes.
pub const MANAGER: &str = "siren-operator";

/// Talks to the API server about one job.
#[derive(Clone)]
pub struct JobReporter {
    api: Api<TrainingJob>,
    recorder: Recorder,
    name: String,
    reference: k8s_openapi::api::core::v1::ObjectReference,
}

impl JobReporter {
    pub fn new(api: Api<TrainingJob>, recorder: Recorder, job: &TrainingJob) -> Self {
        Self {
            api,
            recorder,
            name: job.name_any(),
            reference: job.object_ref(&()),
        }
    }

    /// Applies the whole status as the operator's: it owns every status field.
    pub async fn status(&self, status: &TrainingJobStatus) -> Result<(), kube::Error> {
        let patch = json!({
            "apiVersion": TrainingJob::api_version(&()),
            "kind": TrainingJob::kind(&()),
            "status": status,
        });
        self.api
            .patch_status(
                &self.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map(|_| ())
    }

    /// Events are a record for people; one that cannot be written is logged, not fatal.
    pub async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &self.reference).await {
            tracing::warn!(job = %self.name, %error, reason, "cannot record an event");
        }
    }
}
