//! Unknown settings refused: every key of the overrides file and of the `APP_` variables must
//! be one the embedded default file has, and a typo is named with the known key nearest to it.

use super::{ConfigError, DEFAULT, PRODUCTION};

/// Every key the settings have, as `section.key`: those of the embedded default file, which
/// holds every key with its default.
pub(super) fn known_keys() -> Vec<String> {
    let default = config::Config::builder()
        .add_source(config::File::from_str(DEFAULT, config::FileFormat::Toml))
        .build()
        .expect("the embedded config/default.toml is valid");
    flat_keys(&default)
}

/// The `section.key` names a source defines.
fn flat_keys(c: &config::Config) -> Vec<String> {
    let mut keys = Vec::new();
    let Ok(top) = c
        .clone()
        .try_deserialize::<std::collections::HashMap<String, config::Value>>()
    else {
        return keys;
    };
    for (section, value) in top {
        match value.into_table() {
            Ok(table) => keys.extend(table.into_keys().map(|k| format!("{section}.{k}"))),
            Err(_) => keys.push(section),
        }
    }
    keys
}

/// Refuses keys no setting has, in the overrides file and in `APP_` variables, naming the key
/// and the known one it is closest to.
pub(super) fn refuse_unknown_keys(env: &str, dir: &str) -> Result<(), ConfigError> {
    let known = known_keys();
    let unknown = |source_name: String, key: String, shown: &dyn Fn(&str) -> String| {
        let suggestion = closest(&key, &known).map(shown);
        Err(ConfigError::Unknown {
            source_name,
            key,
            suggestion,
        })
    };
    let mut files: Vec<(String, config::Config)> = Vec::new();
    if env == "production" {
        let embedded = config::Config::builder()
            .add_source(config::File::from_str(PRODUCTION, config::FileFormat::Toml))
            .build()?;
        files.push(("the embedded config/production.toml".into(), embedded));
    }
    let path = format!("{dir}/{env}");
    let file = config::Config::builder()
        .add_source(config::File::with_name(&path).required(false))
        .build()?;
    files.push((format!("{path}.toml"), file));
    for (name, file) in files {
        for key in flat_keys(&file) {
            if !known.contains(&key) {
                return unknown(name, key, &|k| k.to_owned());
            }
        }
    }
    let mut vars: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("APP_") && k.contains("__"))
        .collect();
    vars.sort();
    for var in vars {
        let key = var["APP_".len()..].to_lowercase().replacen("__", ".", 1);
        if !known.contains(&key) {
            let as_var = |k: &str| format!("APP_{}", k.to_uppercase().replacen('.', "__", 1));
            return unknown(format!("environment variable {var}"), key, &as_var);
        }
    }
    Ok(())
}

/// The known key nearest to `key` by edit distance, when it is near enough to be a typo.
pub(super) fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance, by characters.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}
