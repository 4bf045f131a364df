//! `keygen`: a key pair for sealed cards (rule P9a), written to files; the secret never
//! printed.

use crate::cli::KeygenArgs;

pub(super) fn command(args: &KeygenArgs) -> anyhow::Result<()> {
    let key = crate::sealed::write_key_pair(&args.out)?;
    println!(
        "wrote {0}/card_key.secret (keep it secret: give it to the workers as APP_CARD__SECRET_KEY) and {0}/card_key.pub\npublic key (enqueuers seal cards to it): {1}\nrotating a key: give the workers this secret as APP_CARD__SECRET_KEY and the one it replaces as APP_CARD__PREVIOUS_SECRET_KEY, then this public key to the enqueuers; once no unfinished row holds a card sealed to the old key, remove APP_CARD__PREVIOUS_SECRET_KEY and destroy the old secret (every copy of a card sealed to it is unreadable from then on)",
        args.out.display(),
        key.public_base64()
    );
    Ok(())
}
