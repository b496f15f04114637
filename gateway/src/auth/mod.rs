//! Checking a user name and password: providers behind one trait, chosen in config, and the
//! failed-login limits in front of them. Providers also change passwords (a login with
//! `newPassword`), each through its own store: the users file, or z/OSMF.

mod ratelimit;
mod users_file;
mod zosmf;

use async_trait::async_trait;

pub use ratelimit::LoginLimiter;
pub use users_file::UsersFileProvider;
pub use zosmf::ZosmfProvider;

/// Why a password check did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// Wrong user or password (the two are never told apart).
    BadCredentials,
    /// The checker is unreachable or broken: not the user's fault.
    Unavailable(String),
}

/// Why a password change did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeFailure {
    /// The old password did not check out, or the checker is unavailable.
    Auth(AuthFailure),
    /// The new password is not acceptable (empty, the old one, too long, or refused by the
    /// provider's rules). The reason is for logs: it never contains a password.
    Refused(String),
}

impl From<AuthFailure> for ChangeFailure {
    fn from(f: AuthFailure) -> ChangeFailure {
        ChangeFailure::Auth(f)
    }
}

/// A password checker.
#[async_trait]
pub trait AuthProvider: Send + Sync + 'static {
    /// Checks `password` of `user`.
    async fn authenticate(&self, user: &str, password: &str) -> Result<(), AuthFailure>;
    /// Replaces `old`, the current password of `user`, by `new`. `Ok` means the change is
    /// done and `user` is authenticated: later checks accept `new` and refuse `old`. A wrong
    /// `old` is [`AuthFailure::BadCredentials`] inside [`ChangeFailure::Auth`]; a provider
    /// that cannot be reached is [`AuthFailure::Unavailable`], never a refusal.
    async fn change_password(&self, user: &str, old: &str, new: &str) -> Result<(), ChangeFailure>;
    /// Whether `user` is an admin by this provider's own records.
    fn is_admin(&self, user: &str) -> bool;
    /// A name for logs.
    fn name(&self) -> &'static str;
}

/// The rules every new password meets whatever the provider: those of `plexgate users add`
/// ([`plexgate_config::users::password_problem`]), and not the old password again.
pub fn check_new_password(old: &str, new: &str) -> Result<(), ChangeFailure> {
    if let Some(problem) = plexgate_config::users::password_problem(new) {
        return Err(ChangeFailure::Refused(format!("new password: {problem}")));
    }
    if new == old {
        return Err(ChangeFailure::Refused("the new password is the old one".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_passwords_must_be_new_non_empty_and_bounded() {
        assert_eq!(check_new_password("Old-S3cret", "New-S3cret"), Ok(()));
        let long = "L0ng-S3cret".repeat(plexgate_config::users::MAX_PASSWORD_BYTES / 10);
        for (old, new) in [("Old-S3cret", ""), ("Same-S3cret", "Same-S3cret"), ("Old-S3cret", long.as_str())] {
            let Err(ChangeFailure::Refused(why)) = check_new_password(old, new) else { panic!("{old:?} -> {new:?} accepted") };
            assert!(!why.contains(old) && (new.is_empty() || !why.contains(new)), "the reason shows no password: {why}");
        }
    }
}
