//! What the command line reads from files and stdin (card data, a whole row, a password), each
//! read no further than a bound named here: an endless stream (`yes |`, a FIFO, `/dev/zero`) or
//! a huge file ends with an error naming the flag and the bound, after at most bound + 1 bytes,
//! instead of taking the machine's memory before any check runs.

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// The most `--card-file` reads: ATRIP's `creditCard` object is under 1 KB, sealed card data
/// about as much; anything near this is not a card.
pub const MAX_CARD_JSON_BYTES: u64 = 64 * 1024;

/// The most `enqueue --from-json` reads: a row's few fields and a card at its own bound.
pub const MAX_ORDER_JSON_BYTES: u64 = 2 * MAX_CARD_JSON_BYTES;

/// Reads `reader` to its end, taking at most `bound + 1` bytes: `None` when it holds more than
/// `bound` (what is past the bound is never read).
pub fn read_at_most(reader: impl Read, bound: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader
        .take(bound.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= bound).then_some(bytes))
}

/// Reads the JSON that `flag` names: a file, or stdin for "-", at most `bound` bytes. Card
/// data never comes from argv, where any user of the machine could read it in the process
/// list.
pub fn read_json(path: &Path, flag: &str, what: &str, bound: u64) -> anyhow::Result<Value> {
    let stdin = path == Path::new("-");
    let shown = if stdin {
        "- (stdin)".to_owned()
    } else {
        path.display().to_string()
    };
    let read = if stdin {
        read_at_most(std::io::stdin().lock(), bound)
    } else {
        std::fs::File::open(path).and_then(|file| read_at_most(file, bound))
    }
    .with_context(|| format!("{flag} {shown}: reading {what}"))?;
    let Some(bytes) = read else {
        anyhow::bail!(
            "{flag} {shown}: {what} is longer than {bound} bytes ({} KiB), the most {flag} reads; nothing past that was read",
            bound / 1024
        );
    };
    // serde's message can quote the text; say only where it broke.
    serde_json::from_slice(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{what} is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

/// Reads one line of at most `bound` bytes (its `\n` or `\r\n` not counted) and returns it
/// without its line ending; reads at most `bound + 2` bytes, so a line with no end ends too.
/// `what` names it in the error.
pub fn read_line(reader: impl BufRead, bound: usize, what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    let most = u64::try_from(bound).unwrap_or(u64::MAX).saturating_add(2);
    reader
        .take(most)
        .read_line(&mut line)
        .with_context(|| format!("{what} cannot be read"))?;
    let text = line.strip_suffix('\n').unwrap_or(&line);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.len() > bound {
        anyhow::bail!("{what} is longer than {bound} bytes; nothing past that was read");
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_past_its_bound_is_read_no_further_than_one_byte_past_it() {
        let mut endless = std::io::repeat(b'y');
        assert_eq!(read_at_most(&mut endless, 10).unwrap(), None);
        let mut source: &[u8] = &[7u8; 20];
        assert_eq!(read_at_most(&mut source, 10).unwrap(), None);
        assert_eq!(source.len(), 9, "11 bytes taken, no more");
        assert_eq!(
            read_at_most(&b"0123456789"[..], 10).unwrap(),
            Some(b"0123456789".to_vec())
        );
        assert_eq!(read_at_most(&b""[..], 10).unwrap(), Some(Vec::new()));
    }

    #[test]
    fn a_line_is_taken_up_to_its_bound_with_either_ending_and_refused_past_it() {
        let what = "the password on stdin";
        assert_eq!(read_line(&b"abc\nrest"[..], 3, what).unwrap(), "abc");
        assert_eq!(read_line(&b"abc\r\n"[..], 3, what).unwrap(), "abc");
        assert_eq!(read_line(&b"abc"[..], 3, what).unwrap(), "abc");
        let e = read_line(&b"abcd\n"[..], 3, what).unwrap_err().to_string();
        assert!(
            e.contains("the password on stdin is longer than 3 bytes"),
            "{e}"
        );
        // An endless line with no end: stopped at the bound.
        let endless = std::io::BufReader::new(std::io::repeat(b'a'));
        assert!(read_line(endless, 1024, what).is_err());
    }
}
