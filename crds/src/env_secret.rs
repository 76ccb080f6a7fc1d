//! Secrets a process takes from its environment: a variable holding the value, or the same name
//! with `_FILE` naming a file that holds it (how a mounted Kubernetes or OpenFaaS Secret arrives).

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvSecretError {
    #[error("{variable} names {path}, which cannot be read: {reason}")]
    Unreadable {
        variable: String,
        path: String,
        reason: String,
    },
    #[error("{0} is set but not valid UTF-8")]
    NotText(String),
}

/// The secret `name` from the process environment: `$name` itself, else the contents of the file
/// `$name_FILE` names (without its trailing newline); `None` when neither is set.
pub fn secret_from_env(name: &str) -> Result<Option<String>, EnvSecretError> {
    secret_from(name, |variable| std::env::var_os(variable))
}

/// [`secret_from_env`] over any lookup, so tests need not change the process environment.
pub fn secret_from(
    name: &str,
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Option<String>, EnvSecretError> {
    if let Some(value) = lookup(name) {
        return value
            .into_string()
            .map(Some)
            .map_err(|_| EnvSecretError::NotText(name.to_string()));
    }
    let variable = format!("{name}_FILE");
    let Some(path) = lookup(&variable) else {
        return Ok(None);
    };
    let path = path.to_string_lossy().into_owned();
    // The error names the file and the I/O problem, never what the file holds.
    let bytes = std::fs::read(&path).map_err(|e| EnvSecretError::Unreadable {
        variable: variable.clone(),
        path: path.clone(),
        reason: e.kind().to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| EnvSecretError::NotText(variable))?;
    Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::ffi::OsString;

    use super::*;

    fn lookup(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_variable_wins_over_its_file() {
        let found = secret_from(
            "SECRET",
            lookup(&[
                ("SECRET", "direct".into()),
                ("SECRET_FILE", "/nowhere".into()),
            ]),
        );
        assert_eq!(found, Ok(Some("direct".into())));
    }

    #[test]
    fn a_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\n").expect("write");
        let found = secret_from(
            "SECRET",
            lookup(&[("SECRET_FILE", path.display().to_string())]),
        );
        assert_eq!(found, Ok(Some("from-file".into())));
        assert_eq!(secret_from("SECRET", lookup(&[])), Ok(None));
    }

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let error = secret_from(
            "SECRET",
            lookup(&[("SECRET_FILE", "/no/such/secret".into())]),
        )
        .expect_err("missing file");
        assert!(
            error
                .to_string()
                .contains("SECRET_FILE names /no/such/secret")
        );
    }
}
