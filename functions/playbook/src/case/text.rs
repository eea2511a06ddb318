//! Text from a finding, a tag, a volume or a host, made safe for where it is
//! shown. All of it is attacker-influenced: a title can carry Markdown that
//! rewrites a report, a file name can carry a terminal escape or a bidi
//! override that shows one thing and means another.

/// `value` with every byte but ASCII letters, digits, `.`, `_`, `-` and the
/// bytes of `keep` written as `%XX` (upper-case hex).
pub fn percent_encoded(value: &str, keep: &[u8]) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) || keep.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `value` with every `%XX` turned back into its byte; `None` when that is
/// not UTF-8 or a `%` is not followed by two hex digits.
pub fn percent_decoded(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `c` changes how text around it is displayed without being seen:
/// bidirectional embeddings, overrides and isolates, marks, and zero-width
/// characters.
pub fn is_invisible_control(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}

/// `text` for a terminal, an e-mail or a log line: every control character
/// (newlines included) and every invisible or bidi character shown as a
/// visible `\u{..}` escape; everything else kept.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || is_invisible_control(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` for Markdown, inline: [`plain`] (so no newline can start a heading,
/// a list or a table row), then every character that could open inline
/// syntax escaped with a backslash, so it renders as the characters it is and
/// never as a link, an image, code, emphasis, a table cell, an entity or a tag.
pub fn markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in plain(text).chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Serialised JSON for a terminal: invisible and bidi characters inside
/// strings become `\uXXXX` escapes (still the same JSON); serde already
/// escapes the control characters.
pub fn json_for_terminal(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if is_invisible_control(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines of text for a terminal: each line through [`plain`], the line
/// breaks kept.
pub fn lines_for_terminal(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| match line.strip_suffix('\n') {
            Some(line) => format!("{}\n", plain(line)),
            None => plain(line),
        })
        .collect()
}

/// How text a source reported is labelled wherever it is shown: it is the
/// source's word, not something the responder checked.
pub fn as_reported(source: &str, text: &str) -> String {
    format!("{} (as reported by {source}, not verified)", plain(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_undoes_percent_encoding_and_refuses_a_broken_escape() {
        let value = "3/L4kqtJl40Nr8X8gdRQBpUMLUo+ü~";
        assert_eq!(
            percent_decoded(&percent_encoded(value, b"~")).as_deref(),
            Some(value)
        );
        assert_eq!(percent_decoded("a%2"), None);
        assert_eq!(percent_decoded("a%zz"), None);
        assert_eq!(percent_decoded("%FF"), None, "not UTF-8");
    }

    #[test]
    fn control_and_bidi_characters_become_visible() {
        assert_eq!(plain("a\nb\u{1b}[31m"), "a\\u{a}b\\u{1b}[31m");
        let spoof = "invoice\u{202E}fdp.exe";
        assert_eq!(plain(spoof), "invoice\\u{202e}fdp.exe");
        assert_eq!(plain("zero\u{200B}width"), "zero\\u{200b}width");
        assert_eq!(plain("日本語 ok"), "日本語 ok");
    }

    #[test]
    fn markdown_syntax_renders_as_text() {
        let title = "[click](https://evil.example) ![x](y) <script> | # h `c` *b*";
        let escaped = markdown(title);
        for raw in ["[click](", "![", "<script>", " | ", "`c`", "*b*"] {
            assert!(!escaped.contains(raw), "{raw} survives in {escaped}");
        }
        assert!(escaped.contains("\\[click\\]"));
        assert_eq!(markdown("line\nbreak"), "line\\\\u{a}break");
        assert_eq!(markdown("capture-memory.sh"), "capture-memory.sh");
    }

    #[test]
    fn terminal_output_stays_json_and_shows_what_hides() {
        let value = serde_json::json!({"path": "/tmp/\u{202E}gpj.sh", "line": "a\u{1b}[2J"});
        let text = json_for_terminal(&serde_json::to_string(&value).unwrap());
        assert!(!text.contains('\u{202E}') && !text.contains('\u{1b}'));
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value, "the same JSON");
        assert_eq!(lines_for_terminal("ok\nx\u{202E}y\n"), "ok\nx\\u{202e}y\n");
    }

    #[test]
    fn reported_text_is_labelled() {
        assert_eq!(
            as_reported("GuardDuty", "x\u{202E}y"),
            "x\\u{202e}y (as reported by GuardDuty, not verified)"
        );
    }
}
