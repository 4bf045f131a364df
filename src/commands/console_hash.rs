//! `console-hash`: the hash the console's settings take for a password.

/// `console-hash`: a password from stdin (its first line; not echoed on a terminal) to the hash
/// the console's settings take.
pub(super) fn command(iterations: u32) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("password (not shown): ");
    }
    let password = {
        let _quiet = terminal.then(crate::console::EchoOff::new);
        crate::input::read_line(
            stdin.lock(),
            crate::console::MAX_PASSWORD_BYTES,
            "console-hash: the password on stdin",
        )?
    };
    if terminal {
        eprintln!();
    }
    if password.chars().count() < 12 {
        anyhow::bail!("the password must have at least 12 characters");
    }
    println!(
        "{}",
        crate::console::PasswordHash::create(&password, iterations)
    );
    Ok(())
}
