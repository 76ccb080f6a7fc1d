//! The span that ties a job's log lines to the job: an operator runs many jobs at once, and a
//! line nobody can attribute to one of them helps nobody.

use kube::ResourceExt;
use siren_crds::TrainingJob;
use tracing::Span;

/// `job{namespace, job}`: opened by whoever drives the job (the `siren` CLI, the operator's run
/// task) around the driver, which opens an `epoch{epoch}` span inside it for every epoch. So every
/// line logged for the job names it, and every line logged while an epoch is decided or runs
/// names the epoch too, on any thread the span is carried to. The job's name is the field `job`,
/// not `name`, which JSON logs use for the span's own name.
pub fn job_span(job: &TrainingJob) -> Span {
    tracing::info_span!(
        "job",
        namespace = job.namespace().as_deref().unwrap_or("default"),
        job = %job.name_any(),
    )
}
