//! Who is asking: the role a login proved and the person's name, as every page and action of
//! the console reads them. Sessions, logins and the checks of an action are in `auth`, which
//! makes these; the page shell (`html`) only reads them.

use std::fmt;

/// What a role may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads every page; the server refuses its actions.
    Viewer,
    /// Reads, retries and cancels.
    Operator,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        })
    }
}

/// A logged-in person: the role their password proved, the name they gave, and their
/// session's CSRF token; and, read for each request, the pauses of paying in force, which
/// every page shows (rule S4).
#[derive(Clone)]
pub struct Who {
    pub role: Role,
    pub name: String,
    pub csrf: String,
    /// The pauses in force when this request came; `None` when they could not be read.
    pub paused: Option<Vec<crate::jobs::Pause>>,
    /// The session's key in `auth::Sessions` (the SHA-256 of its id, never the id), for the
    /// server's own flash messages.
    pub(super) session: [u8; 32],
    /// A named account's session (rule L2): the SHA-256 of the account's password hash when
    /// it logged in. The account is read again on every request, so that disabling it,
    /// changing its role or resetting its password ends its sessions at once on every replica.
    pub(super) account: Option<[u8; 32]>,
}

impl fmt::Debug for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.by())
    }
}

impl Who {
    /// How events and logs name this person: `console:operator:alice`.
    pub fn by(&self) -> String {
        format!("console:{}:{}", self.role, self.name)
    }
}
