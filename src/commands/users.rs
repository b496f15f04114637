//! `plexgate users add`: an Argon2id hash into the users file, never the password.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
use plexgate_config::users::{User, UsersFile, password_problem};

use super::load;
use crate::cli::ConfigArg;

/// Adds or replaces `name` in the configured users file.
pub fn add(arg: &ConfigArg, name: &str, admin: bool) -> anyhow::Result<ExitCode> {
    let name = name.trim();
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == ':' || c.is_whitespace()) {
        bail!("user name must be non-empty, without spaces, colons or control characters");
    }
    let loaded = load(arg, None)?;
    let path = &loaded.config.gateway.users_file;
    let password = read_password(name)?;
    let hash = hash_password(&password)?;
    // Under the file's lock, as gateways changing passwords at login write it too.
    let replaced = UsersFile::update(path, |file| {
        let replaced = file.find(name).is_some();
        file.upsert(User { name: name.to_owned(), hash, admin });
        Some(replaced)
    })?
    .unwrap_or_default();
    println!("{} user {name}{} in {}", if replaced { "updated" } else { "added" }, if admin { " (admin)" } else { "" }, path.display());
    Ok(ExitCode::SUCCESS)
}

/// Hashes with Argon2id and the crate's recommended parameters, as a PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// From a terminal: prompt twice without echo. Otherwise: the first line of standard input.
fn read_password(name: &str) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: ")).context("cannot read the password")?;
        let second = rpassword::prompt_password("Again: ").context("cannot read the password")?;
        if first != second {
            bail!("the two passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if let Some(problem) = password_problem(&password) {
        bail!("{problem}");
    }
    Ok(password)
}
