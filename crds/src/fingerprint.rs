//! Which parts of a started job may change. Budget, `training.maxEpochs`, `suspend`,
//! `activeDeadlineSeconds` and `ttlSecondsAfterFinished` steer a run and may change at any time;
//! everything else defines what the run computes, and its checkpoints belong to it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::spec::TrainingJobSpec;

/// The fields that may change once a job started, as a person reads them.
pub const MUTABLE_FIELDS: &str = "spec.budget, spec.training.maxEpochs, spec.suspend, spec.activeDeadlineSeconds and spec.ttlSecondsAfterFinished";

fn fingerprint_of(section: &impl Serialize) -> String {
    // Serialising a spec section cannot fail: it holds no maps with non-string keys.
    let json = serde_json::to_string(section).unwrap_or_default();
    format!("{:08x}", crc32fast::hash(json.as_bytes()))
}

impl TrainingJobSpec {
    /// A fingerprint per section that cannot change once the job started.
    pub fn fingerprint(&self) -> BTreeMap<String, String> {
        let mut training = self.training.clone();
        training.max_epochs = 0;
        [
            ("model", fingerprint_of(&self.model)),
            ("dataset", fingerprint_of(&self.dataset)),
            ("training", fingerprint_of(&training)),
            ("scheduler", fingerprint_of(&self.scheduler)),
            ("backend", fingerprint_of(&self.backend)),
            ("store", fingerprint_of(&self.store)),
        ]
        .into_iter()
        .map(|(section, fingerprint)| (section.to_string(), fingerprint))
        .collect()
    }

    /// The sections (as `spec.<section>`) whose fingerprint differs from `recorded`.
    pub fn changed_since(&self, recorded: &BTreeMap<String, String>) -> Vec<String> {
        self.fingerprint()
            .into_iter()
            .filter(|(section, fingerprint)| {
                recorded.get(section).is_some_and(|old| old != fingerprint)
            })
            .map(|(section, _)| format!("spec.{section}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::parse_manifest;

    const JOB: &str = "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: fp
spec:
  model:
    kind: mlp
  dataset:
    builtin: fashion-mnist
  training:
    maxEpochs: 5
";

    fn spec(text: &str) -> crate::TrainingJobSpec {
        parse_manifest(text, "job.yaml").expect("valid").spec
    }

    #[test]
    fn steering_fields_may_change_and_the_rest_may_not() {
        let recorded = spec(JOB).fingerprint();
        let steered = spec(&format!(
            "{}  budget:\n    maxCostUsd: 2\n  suspend: true\n  activeDeadlineSeconds: 60\n",
            JOB.replace("maxEpochs: 5", "maxEpochs: 9")
        ));
        assert!(steered.changed_since(&recorded).is_empty());
        let edited = spec(
            &JOB.replace("kind: mlp", "kind: lenet5")
                .replace("maxEpochs: 5", "maxEpochs: 5\n    learningRate: 0.5"),
        );
        assert_eq!(
            edited.changed_since(&recorded),
            vec!["spec.model".to_string(), "spec.training".to_string()]
        );
    }

    #[test]
    fn the_same_manifest_always_has_the_same_fingerprint() {
        // The fingerprint is kept in status across operator versions and restarts.
        let fingerprint = spec(JOB).fingerprint();
        assert_eq!(fingerprint, spec(JOB).fingerprint());
        assert_eq!(fingerprint.len(), 6);
        assert!(fingerprint.values().all(|f| f.len() == 8));
    }
}
