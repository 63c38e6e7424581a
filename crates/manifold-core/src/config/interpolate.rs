//! `${ENV_VAR}`, `${ENV_VAR:-default}` and `${file:/path}` in string values.

/// Replace every reference in `s`. Returns the missing variable (or unreadable file) on error.
pub fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated `${{` in `{s}`: write `${{NAME}}`"));
        };
        let expr = &after[..end];
        if let Some(path) = expr.strip_prefix("file:") {
            match std::fs::read_to_string(path) {
                Ok(v) => out.push_str(v.trim_end_matches(['\n', '\r'])),
                Err(e) => return Err(format!("cannot read secret file `{path}`: {e}")),
            }
        } else {
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{expr}}}` is not a valid environment variable reference"
                ));
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!("environment variable `{name}` is not set"));
                }
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "s3cret".to_string())
    }

    #[test]
    fn replaces_variables_and_defaults() {
        assert_eq!(interpolate("a ${KEY} b", &env).unwrap(), "a s3cret b");
        assert_eq!(interpolate("${NOPE:-x}", &env).unwrap(), "x");
        assert_eq!(interpolate("plain", &env).unwrap(), "plain");
    }

    #[test]
    fn names_the_missing_variable() {
        let err = interpolate("${MISSING_ONE}", &env).unwrap_err();
        assert!(err.contains("`MISSING_ONE` is not set"), "{err}");
    }

    #[test]
    fn reads_secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "from-file\n").unwrap();
        let got = interpolate(&format!("${{file:{}}}", p.display()), &env).unwrap();
        assert_eq!(got, "from-file");
    }
}
