//! The commands the programs suggest (end-of-run summaries, warnings), so
//! that each can be pasted into a shell and run as written: a path is
//! quoted when the shell would split or expand it.

use std::borrow::Cow;
use std::path::Path;

/// `word` as one shell word: as it is when it holds nothing a shell treats
/// specially, else in single quotes (a quote inside written `'\''`).
pub fn shell_word(word: &str) -> Cow<'_, str> {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b));
    if plain {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
    }
}

/// `reporter --spool ROOT ARGS`, ready to paste.
pub fn reporter_on(root: &Path, args: &str) -> String {
    format!(
        "reporter --spool {} {args}",
        shell_word(&root.to_string_lossy())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_is_quoted_only_when_a_shell_would_change_it() {
        assert_eq!(shell_word("/var/spool/spoolpost"), "/var/spool/spoolpost");
        assert_eq!(shell_word("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_word("/tmp/it's"), r"'/tmp/it'\''s'");
        assert_eq!(shell_word("/tmp/$HOME*"), "'/tmp/$HOME*'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(
            reporter_on(Path::new("/s p"), "list --state error"),
            "reporter --spool '/s p' list --state error"
        );
    }
}
